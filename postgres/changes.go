package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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
// silent before it is checked with a probe, how long the probe may take,
// and the bounds of the backoff between attempts to listen again.
const (
	feedIdle       = 15 * time.Second
	feedCheck      = 5 * time.Second
	feedBackoffMin = 100 * time.Millisecond
	feedBackoffMax = 30 * time.Second
)

// feedTimings are the change feed's intervals; tests shorten them per store.
type feedTimings struct{ idle, check, backoffMin time.Duration }

func (s *Store) feedTimings() feedTimings {
	if s.feed != (feedTimings{}) {
		return s.feed
	}
	return feedTimings{idle: feedIdle, check: feedCheck, backoffMin: feedBackoffMin}
}

// WatchChanges implements [tokenkeeper.ChangeFeed] with LISTEN on a
// connection of its own, outside the pool (migration 0002's trigger sends
// the NOTIFY on every commit that changes a connection's generation).
//
// The feed proves itself: right after LISTEN, and whenever it has been
// silent for 15 s, it sends a probe notification through the pool and
// expects it on the listening connection within 5 s. A connection that
// broke, a network cut, and a listening connection that can never receive
// (one made through a transaction-mode pooler such as PgBouncer's, where
// LISTEN lands on a server connection other clients then use) all fail
// the probe (a probe that cannot be sent, through a busy pool, says
// nothing and is tried again later). fn then gets a Change with Down set,
// and the feed listens again after a backoff (100 ms doubling to 30 s while
// the feed keeps failing within a minute of starting); fn gets the zero
// Change each time listening starts and the first probe passed (or could
// not be sent). It returns an error only if
// the first LISTEN fails for a reason other than the database being
// unreachable (which it retries like a break).
func (s *Store) WatchChanges(ctx context.Context, fn func(tokenkeeper.Change)) error {
	ft := s.feedTimings()
	backoff := ft.backoffMin
	first := true
	for ctx.Err() == nil {
		conn, channel, err := s.listen(ctx)
		if err == nil {
			first = false
			started := time.Now()
			// Until the feed breaks (or ctx ends).
			err = s.follow(ctx, conn, channel, fn)
			closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = conn.Close(closeCtx)
			cancel()
			if ctx.Err() != nil {
				break
			}
			fn(tokenkeeper.Change{Down: true, Err: err})
			if time.Since(started) > time.Minute {
				backoff = ft.backoffMin // it worked for a while: a fresh break
			}
		} else if first && tokenkeeper.ErrorCode(err) != tokenkeeper.CodeUnavailable && ctx.Err() == nil {
			return err
		}
		if sleepCtx(ctx, backoff+mrand.N(backoff)) != nil {
			break
		}
		backoff = min(2*backoff, feedBackoffMax)
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

// follow checks the feed with a probe, reports that it started (the zero
// Change), and delivers the notifications of conn until ctx ends, the
// connection breaks, or a probe does not come back.
func (s *Store) follow(ctx context.Context, conn *pgx.Conn, channel string, fn func(tokenkeeper.Change)) error {
	if err := s.probe(ctx, conn, channel, fn); err != nil && !errors.Is(err, errProbeNotSent) {
		return err
	}
	fn(tokenkeeper.Change{})
	for {
		wctx, cancel := context.WithTimeout(ctx, s.feedTimings().idle)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			deliver(n, channel, "", fn)
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			if err := s.probe(ctx, conn, channel, fn); err != nil && !errors.Is(err, errProbeNotSent) {
				return err
			}
		default:
			return err
		}
	}
}

// probe sends a notification of its own through the pool and waits up to
// feedCheck for it on conn, delivering whatever else arrives meanwhile.
func (s *Store) probe(ctx context.Context, conn *pgx.Conn, channel string, fn func(tokenkeeper.Change)) error {
	payload := "p " + rand.Text()
	to := channel
	if s.probeTo != "" {
		to = s.probeTo
	}
	check := s.feedTimings().check
	pctx, cancel := context.WithTimeout(ctx, check)
	defer cancel()
	if _, err := s.pool.Exec(pctx, `SELECT pg_notify($1, $2)`, to, payload); err != nil {
		// The pool is busy (or the database away, which the listening
		// connection finds out by itself): that says nothing about the feed.
		return fmt.Errorf("%w: %w", errProbeNotSent, mapErr(err))
	}
	for {
		n, err := conn.WaitForNotification(pctx)
		if err != nil {
			if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				return tokenkeeper.Errorf(tokenkeeper.CodeUnavailable,
					"postgres: change feed: a probe notification did not come back within %s; the listening connection receives nothing (through a transaction-mode pooler, give the store a URL with a direct or session-mode connection)", check)
			}
			return fmt.Errorf("postgres: change feed: wait for the probe: %w", mapErr(err))
		}
		if deliver(n, channel, payload, fn) {
			return nil
		}
	}
}

// errProbeNotSent is probe's error when the probe could not be sent
// through the pool: the feed is not known to be broken, and keeps
// listening.
var errProbeNotSent = errors.New("postgres: change feed: the probe could not be sent")

// deliver passes n to fn if it is a change on channel; it reports whether
// n is the probe with payload probe instead. Other probes are ignored.
func deliver(n *pgconn.Notification, channel, probe string, fn func(tokenkeeper.Change)) bool {
	if n.Channel != channel {
		return false
	}
	if strings.HasPrefix(n.Payload, "p ") {
		return probe != "" && n.Payload == probe
	}
	c, _ := parseChange(n.Payload) // one that cannot be read says "everything may have changed"
	fn(c)
	return false
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

// NotifyQueueUsage returns how full PostgreSQL's notification queue is, from
// 0 to 1 (pg_notification_queue_usage()). A listener that stops reading
// pins the queue; when it is full, every commit that notifies fails, so
// this is worth an alert long before 1.
func (s *Store) NotifyQueueUsage(ctx context.Context) (float64, error) {
	var u float64
	if err := s.pool.QueryRow(ctx, `SELECT pg_notification_queue_usage()`).Scan(&u); err != nil {
		return 0, fmt.Errorf("postgres: notification queue usage: %w", mapErr(err))
	}
	return u, nil
}
