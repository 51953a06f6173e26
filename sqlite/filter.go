package sqlite

import (
	"context"
	"fmt"
	"strings"

	"github.com/tokenkeeper/tokenkeeper"
)

// Limits of [Store.ListConnections].
const (
	// DefaultLimit is the number of records a zero (or negative)
	// ConnectionFilter.Limit returns.
	DefaultLimit = 100
	// MaxLimit caps ConnectionFilter.Limit.
	MaxLimit = 1000
)

// ListConnections returns up to filter.Limit connections that pass every
// filter that is set, in id order (byte order). A zero or negative Limit
// means [DefaultLimit]; a Limit over [MaxLimit] means MaxLimit. A
// NextRefreshBefore filter keeps only connections that have a planned
// refresh (a non-zero NextRefreshAt). The keep-alive filters
// (LastRefreshBefore, NextRefreshBefore), State, and the retention query
// (State with UpdatedBefore) are served by indexes; UpdatedBefore without
// State reads the whole table.
// The time bounds are exact, to the nanosecond: a stored time (whole
// microseconds) passes if it is strictly before the bound, which is rounded
// up, not truncated, to the microsecond.
// It returns an empty slice, not an error, when nothing matches.
func (s *Store) ListConnections(ctx context.Context, filter tokenkeeper.ConnectionFilter) ([]*tokenkeeper.Record, error) {
	query, args := listQuery(filter)
	rows, err := s.read.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list connections: %w", mapErr(err))
	}
	defer rows.Close()
	recs := []*tokenkeeper.Record{}
	for rows.Next() {
		rec, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list connections: %w", mapErr(err))
		}
		recs = append(recs, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list connections: %w", mapErr(err))
	}
	return recs, nil
}

// listQuery returns the SELECT for filter and its arguments.
func listQuery(f tokenkeeper.ConnectionFilter) (string, []any) {
	var where []string
	var args []any
	if f.State != "" {
		where = append(where, "state = ?")
		args = append(args, string(f.State))
	}
	if f.IDPrefix != "" {
		// A range, not LIKE or GLOB, so that no character of the prefix is
		// a pattern and the primary key serves it.
		where = append(where, "id >= ?")
		args = append(args, f.IDPrefix)
		if end, ok := prefixEnd(f.IDPrefix); ok {
			where = append(where, "id < ?")
			args = append(args, end)
		}
	}
	if f.After != "" {
		where = append(where, "id > ?")
		args = append(args, string(f.After))
	}
	if !f.LastRefreshBefore.IsZero() {
		// last_change_at is the generated, indexed column
		// CASE WHEN last_refresh_at = 0 THEN created_at ELSE last_refresh_at END.
		where = append(where, "last_change_at < ?")
		args = append(args, microsAfter(f.LastRefreshBefore))
	}
	if !f.NextRefreshBefore.IsZero() {
		// The first term matches the partial index's WHERE clause.
		where = append(where, "next_refresh_at <> 0", "next_refresh_at < ?")
		args = append(args, microsAfter(f.NextRefreshBefore))
	}
	if !f.UpdatedBefore.IsZero() {
		where = append(where, "updated_at < ?")
		args = append(args, microsAfter(f.UpdatedBefore))
	}
	if !f.UpdatedAfter.IsZero() {
		// At or after: a stored whole microsecond m >= t exactly when m >=
		// microsAfter(t).
		where = append(where, "updated_at >= ?")
		args = append(args, microsAfter(f.UpdatedAfter))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)

	query := `SELECT ` + connectionColumns + ` FROM connections`
	switch {
	case !f.NextRefreshBefore.IsZero():
		// The planner picks the partial index by itself.
	case !f.LastRefreshBefore.IsZero():
		// Without statistics, the planner prefers to walk the primary key
		// (no sort for ORDER BY id) through the whole table; the keep-alive
		// query must not.
		query += ` INDEXED BY connections_last_change_at`
	case !f.UpdatedAfter.IsZero() && f.State == "":
		// The reconciler's incremental pass: the range of recent writes.
		query += ` INDEXED BY connections_updated_at`
	case f.State != "" && !f.UpdatedBefore.IsZero():
		// The retention query. With After, the planner prefers to walk
		// connections_state in id order, which reads every connection in
		// the state, pruned or not, on every run; the range reads only
		// those to prune (and sorts them).
		query += ` INDEXED BY connections_state_updated_at`
	}
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY id LIMIT ?`
	return query, append(args, limit)
}

// prefixEnd returns the least string greater than every string that starts
// with prefix, in byte order; ok is false if there is none (the prefix is
// all 0xff bytes).
func prefixEnd(prefix string) (end string, ok bool) {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1]), true
		}
	}
	return "", false
}
