package postgres

import (
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Pool returns the store's connection pool, for tests that run their own
// SQL on the store's connections (to see its session settings, or to make
// the server report an error).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// MapErr is mapErr, for tests of real server errors.
var MapErr = mapErr

// ListQuery is listQuery, for tests of the query plans.
var ListQuery = listQuery

// Migrations returns how many migrations this build embeds and the newest
// one's version.
func Migrations() (n int, latest int64) {
	ms, err := migrations()
	if err != nil || len(ms) == 0 {
		panic("postgres: no migrations embedded")
	}
	return len(ms), ms[len(ms)-1].version
}

// SetProbeChannel sends the change feed's probes to channel instead of its
// own, so that none comes back. Call it before WatchChanges.
func (s *Store) SetProbeChannel(channel string) { s.probeTo = channel }

// SetFeedTimings shortens the change feed's intervals of s, for a test.
// Call it before WatchChanges.
func (s *Store) SetFeedTimings(idle, check, backoff time.Duration) {
	s.feed = feedTimings{idle: idle, check: check, backoffMin: backoff}
}
