package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenkeeper/tokenkeeper"
)

var (
	_ tokenkeeper.ChangeFeed = (*Store)(nil)
	_ tokenkeeper.Pinger     = (*Store)(nil)
)

// Ping checks that the database answers, within ctx.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", mapErr(err))
	}
	return nil
}

// Intervals of the change feed: how long the listening connection may stay
// silent before it is checked with a query, how long that check may take,
// and the bounds of the backoff between attempts to listen again.
var (
	feedIdle       = 15 * time.Second
	feedCheck      = 5 * time.Second
	feedBackoffMin = 100 * time.Millisecond
	feedBackoffMax = 5 * time.Second
)

// WatchChanges implements [tokenkeeper.ChangeFeed] with LISTEN on a
// connection of its own, outside the pool (migration 0002's trigger sends
// the NOTIFY on every commit that changes a connection's generation). The
// connection is checked with a query whenever it has been silent for
// 15 s, so a cut network is found within about 20 s; a broken connection is
// replaced with backoff (100 ms to 5 s), and fn gets the zero Change each
// time listening starts. It returns an error only if the first LISTEN
// fails for a reason other than the database being unreachable (which it
// retries like a break).
func (s *Store) WatchChanges(ctx context.Context, fn func(tokenkeeper.Change)) error {
	backoff := feedBackoffMin
	first := true
	for ctx.Err() == nil {
		conn, channel, err := s.listen(ctx)
		if err != nil {
			if first && tokenkeeper.ErrorCode(err) != tokenkeeper.CodeUnavailable && ctx.Err() == nil {
				return err
			}
			if sleepCtx(ctx, backoff+rand.N(backoff)) != nil {
				break
			}
			backoff = min(2*backoff, feedBackoffMax)
			continue
		}
		first = false
		backoff = feedBackoffMin
		fn(tokenkeeper.Change{})
		// Until the feed breaks (or ctx ends); then listen again, and say so
		// with the zero Change.
		_ = s.follow(ctx, conn, channel, fn)
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = conn.Close(closeCtx)
		cancel()
	}
	return nil
}

// listen opens the feed's connection and listens on the channel of the
// store's schema.
func (s *Store) listen(ctx context.Context) (*pgx.Conn, string, error) {
	cfg := s.pool.Config().ConnConfig.Copy()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, "", fmt.Errorf("postgres: change feed: connect: %w", mapErr(err))
	}
	var channel string
	err = conn.QueryRow(ctx, `SELECT 'tokenkeeper_' || left(md5(current_schema()), 16)`).Scan(&channel)
	if err == nil {
		_, err = conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize())
	}
	if err != nil {
		_ = conn.Close(context.Background())
		return nil, "", fmt.Errorf("postgres: change feed: listen: %w", mapErr(err))
	}
	return conn, channel, nil
}

// follow delivers the notifications of conn until ctx ends or the
// connection breaks.
func (s *Store) follow(ctx context.Context, conn *pgx.Conn, channel string, fn func(tokenkeeper.Change)) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, feedIdle)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			if n.Channel != channel {
				continue
			}
			c, _ := parseChange(n.Payload) // one that cannot be read says "everything may have changed"
			fn(c)
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			// Silent for a while: make sure the connection is still there.
			cctx, cancel := context.WithTimeout(ctx, feedCheck)
			_, err := conn.Exec(cctx, "SELECT 1")
			cancel()
			if err != nil {
				return err
			}
		default:
			return err
		}
	}
}

// parseChange reads a payload of migration 0002's trigger.
func parseChange(p string) (tokenkeeper.Change, bool) {
	f := strings.SplitN(p, " ", 4)
	if len(f) != 4 || (f[0] != "u" && f[0] != "d") || f[3] == "" {
		return tokenkeeper.Change{}, false
	}
	gen, err1 := strconv.ParseInt(f[1], 10, 64)
	us, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		return tokenkeeper.Change{}, false
	}
	return tokenkeeper.Change{
		ID:         tokenkeeper.ConnectionID(f[3]),
		Generation: gen,
		CreatedAt:  time.UnixMicro(us).UTC(),
		Deleted:    f[0] == "d",
	}, true
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
