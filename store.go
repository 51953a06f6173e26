package tokenkeeper

import (
	"context"
	"time"
)

// Record is a connection as stored: the [Connection] and its sealed token
// set, the refresh marker and the lease. Stores persist every field and
// return it unchanged, except that times come back in UTC and truncated to
// the microsecond (PostgreSQL's precision; callers truncate before writing
// so that what they hold equals what is stored). A nil and an empty
// Scopes or Metadata come back as nil. Stores apply no policy (the keeper
// does).
type Record struct {
	Connection
	Tokens SealedTokenSet
	// Pending is the outcome-unknown marker: set (durably) before a refresh
	// request is sent, cleared by the write that commits or settles its
	// outcome. A Record read with Pending set, and no live lease, means a
	// refresh was sent and nobody knows what became of it.
	Pending Pending
	// Lease is the refresh lease, as last written. Only [Store.AcquireLease],
	// [Store.RenewLease] and [Store.ReleaseLease] change it; writes of the
	// Record ignore this field.
	Lease Lease
}

// SealedTokenSet is a [TokenSet] at rest. AccessToken and RefreshToken are
// sealed with [AssociatedData] (SealKindConnection, the connection id, and
// FieldAccessToken or FieldRefreshToken); the zero Sealed means "none".
type SealedTokenSet struct {
	AccessToken  Sealed
	RefreshToken Sealed
	Expiry       time.Time
	ExpiresAt    time.Time
	Scope        string
}

// Pending records a refresh whose outcome is not known yet. The zero
// Pending means none.
type Pending struct {
	// Since is when the request was (about to be) sent; zero means no
	// refresh is pending.
	Since time.Time
	// Owner is the lease owner that sent it.
	Owner string
	// Unknown is set once an attempt's outcome is known to be unknown (a
	// lost response, a timeout, a 5xx, or a crash found after the fact). If
	// the next attempt ends in invalid_grant, the reason says so.
	Unknown bool
}

// IsZero reports whether no refresh is pending.
func (p Pending) IsZero() bool { return p.Since.IsZero() }

// Lease grants one owner the right to refresh one connection until
// ExpiresAt. Fence grows with every acquisition of the connection's lease
// (by anyone), so a write carrying an old Fence is recognisably from a
// holder that lost the lease (a fencing token). The zero Lease is held by
// nobody.
type Lease struct {
	Owner     string
	Fence     int64
	ExpiresAt time.Time
}

// HeldBy reports whether owner holds l at now.
func (l Lease) HeldBy(owner string, now time.Time) bool {
	return l.Owner != "" && l.Owner == owner && now.Before(l.ExpiresAt)
}

// ConnectionFilter selects connections for [Store.ListConnections]. The
// zero value selects all of them, in id order.
type ConnectionFilter struct {
	// State, if set, keeps connections in that state.
	State State
	// IDPrefix, if set, keeps ids that start with it.
	IDPrefix string
	// After, if set, starts the listing after this id (keyset pagination).
	After ConnectionID
	// LastRefreshBefore, if set, keeps connections whose last token change
	// (LastRefreshAt, or CreatedAt if never refreshed) is before it: the
	// keep-alive query.
	LastRefreshBefore time.Time
	// NextRefreshBefore, if set, keeps connections with a NextRefreshAt
	// before it.
	NextRefreshBefore time.Time
	// UpdatedBefore, if set, keeps connections whose UpdatedAt (the last
	// write of the record) is before it: the retention query.
	UpdatedBefore time.Time
	// UpdatedAfter, if set, keeps connections whose UpdatedAt is at or
	// after it: the event reconciler's pass over what changed since its
	// last one.
	UpdatedAfter time.Time
	// Limit caps the number returned; 0 means 100. Stores cap it at 1000.
	Limit int
}

// Session is a pending connect flow: the server side of the OAuth state
// (RFC 6749 section 10.12) and the PKCE verifier (RFC 7636).
type Session struct {
	// StateHash is the SHA-256 of the state parameter. The state itself is
	// never stored, so a copy of the database cannot forge a callback.
	StateHash    []byte
	ConnectionID ConnectionID
	ReturnURL    string
	// Verifier is the PKCE code verifier, sealed with [AssociatedData]
	// (SealKindSession, the hex StateHash, FieldCodeVerifier), or, for a
	// flow bound to a browser, FieldCodeVerifier + "/" + the hex SHA-256 of
	// the binding: only that browser's callback can open it.
	Verifier  Sealed
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Store persists connections, refresh leases and connect sessions. It is
// the narrow contract every backend (SQLite, PostgreSQL) implements, and
// storetest.Run checks. A Store holds no policy: it stores what it is
// given, compares and swaps where it says so, and maps its database's
// errors to codes (by result code or SQLSTATE, never by message).
//
// Text fields (ids, provider, subject, scopes, metadata keys and values,
// the last error, key ids, owners, return URLs) must be valid UTF-8
// without NUL bytes (U+0000, which PostgreSQL's text cannot hold; every
// store refuses it alike, so that what one accepts the others do): a write
// with such text fails with [CodeInvalid] naming the field and stores
// nothing, and a lookup by such a key finds nothing. Sealed values and
// hashes are bytes and may hold anything. Time bounds in filters and
// DeleteExpiredSessions are exact to the nanosecond ("before" means
// strictly before the given time). Whether a lease is unexpired is decided
// when the write is made (after any wait for a lock), not when the call
// started.
//
// Every method may also fail with [CodeUnavailable] (the database is busy
// or down; retry) or [CodeInternal]. Implementations are safe for
// concurrent use by many goroutines and, for the same database, by many
// processes.
type Store interface {
	// CreateConnection stores a new record. rec.Generation must be 1
	// (CodeInvalid otherwise). CodeConflict if the id exists.
	CreateConnection(ctx context.Context, rec *Record) error
	// GetConnection returns the record. CodeNotFound if absent.
	GetConnection(ctx context.Context, id ConnectionID) (*Record, error)
	// ListConnections returns up to filter.Limit records in id order (byte
	// order). NextRefreshBefore never selects a zero NextRefreshAt.
	ListConnections(ctx context.Context, filter ConnectionFilter) ([]*Record, error)
	// UpdateConnection replaces every field of the stored record but the
	// lease with rec, if the stored Generation equals expect (compare and
	// swap). CodeNotFound if absent; CodeConflict if the generation moved.
	UpdateConnection(ctx context.Context, rec *Record, expect int64) error
	// UpdateLeased is UpdateConnection that also requires lease to be the
	// current, unexpired lease (same Owner and Fence): the fenced write
	// of a lease holder. CodeConflict if either check fails.
	UpdateLeased(ctx context.Context, rec *Record, expect int64, lease Lease) error
	// DeleteConnection removes the record and its lease. If expect is not
	// 0, only if the stored Generation equals it (CodeConflict otherwise),
	// so a removal decided on an old read cannot remove a connection that
	// was reconnected since. CodeNotFound if absent.
	DeleteConnection(ctx context.Context, id ConnectionID, expect int64) error
	// CountConnections returns how many connections are in each state.
	// States with none may be absent from the map.
	CountConnections(ctx context.Context) (map[State]int, error)

	// AcquireLease gives owner the connection's lease for ttl, if nobody
	// else holds an unexpired one, and returns the lease with the record as
	// it is now (the re-read). Re-acquiring a lease one already holds
	// renews it with a new Fence. CodeUnavailable if another owner holds
	// it; the returned record is then still filled in, so the caller can
	// see who and until when (a busy database is CodeUnavailable with a nil
	// record). CodeNotFound if the connection is absent. Lease times are on
	// the store's clock (the local clock for SQLite; the database server's
	// for a networked store), not the caller's.
	AcquireLease(ctx context.Context, id ConnectionID, owner string, ttl time.Duration) (Lease, *Record, error)
	// RenewLease extends a held lease to ttl from now, keeping its Fence.
	// CodeConflict if lease is no longer the current unexpired lease;
	// CodeNotFound if the connection is absent.
	RenewLease(ctx context.Context, id ConnectionID, lease Lease, ttl time.Duration) (Lease, error)
	// ReleaseLease gives the lease up. Releasing a lease that is no longer
	// held (expired, or taken over) changes nothing and is not an error.
	ReleaseLease(ctx context.Context, id ConnectionID, lease Lease) error

	// CreateSession stores a connect session. CodeConflict if the state
	// hash exists.
	CreateSession(ctx context.Context, s *Session) error
	// TakeSession removes the session and returns it, so that each state is
	// used at most once, even by concurrent callbacks. CodeNotFound if
	// absent (never created, already taken, or deleted as expired).
	TakeSession(ctx context.Context, stateHash []byte) (*Session, error)
	// DeleteExpiredSessions removes sessions that expired before now and
	// returns how many.
	DeleteExpiredSessions(ctx context.Context, now time.Time) (int, error)

	// Close releases the store's resources. It does not wait for leases.
	Close() error
}
