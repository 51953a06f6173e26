package postgres

import "github.com/jackc/pgx/v5/pgxpool"

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
