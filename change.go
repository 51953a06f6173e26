package tokenkeeper

import (
	"context"
	"time"
)

// Change is a committed write of a connection's record, as a [ChangeFeed]
// reports it: the record's version after the write (Generation, and
// CreatedAt, which tells a connection deleted and created again from the
// one before), or Deleted. The zero Change (an empty ID) means that
// changes may have been missed.
type Change struct {
	ID         ConnectionID
	Generation int64
	CreatedAt  time.Time
	Deleted    bool
	// Down, with an empty ID, says that the feed stopped delivering (Err
	// says why): changes are missed until the next zero Change.
	Down bool
	Err  error
}

// ChangeFeed is implemented by stores that can tell every process sharing
// the database about each committed write of a connection as it commits
// (PostgreSQL's LISTEN/NOTIFY). The keeper uses it to stop serving a cached
// access token as soon as another process replaces it. A store without it
// (SQLite, or a database without notifications) leaves each process to find
// out on its own: when its cached token's promise ends, or on a 401.
type ChangeFeed interface {
	// WatchChanges calls fn for the committed writes of connections that
	// change their Generation (or create or delete them), by any process
	// including this one, until ctx ends; then it returns nil. Writes that
	// change only the lease are not reported. Delivery is prompt but may
	// be lost when the feed breaks, and is ordered per connection. Each
	// time the feed starts listening (the first time, and again after it
	// broke and was restored), fn gets the zero Change: whatever the
	// caller learned from reads before that may be stale. When it finds
	// itself broken, fn gets a Change with Down set. fn is called from one
	// goroutine at a time and must return quickly. WatchChanges returns an
	// error only if it cannot start; a feed that breaks later is restored
	// with backoff.
	WatchChanges(ctx context.Context, fn func(Change)) error
}

// Pinger is implemented by stores that can check that their database
// answers. Ping returns nil if it does, within ctx, or the error
// ([CodeUnavailable] when it cannot be reached).
type Pinger interface {
	Ping(ctx context.Context) error
}
