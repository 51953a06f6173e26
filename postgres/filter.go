package postgres

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/tokenkeeper/tokenkeeper"
)

// Limits of [Store.ListConnections] and [Store.ListAudit].
const (
	// DefaultLimit is the number of records a zero (or negative) Limit
	// returns.
	DefaultLimit = 100
	// MaxLimit caps Limit.
	MaxLimit = 1000
)

// ListConnections returns up to filter.Limit connections that pass every
// filter that is set, in id order (byte order: the id column is COLLATE
// "C"). A zero or negative Limit means [DefaultLimit]; a Limit over
// [MaxLimit] means MaxLimit. A NextRefreshBefore filter keeps only
// connections that have a planned refresh (a non-zero NextRefreshAt).
// IDPrefix and After are ranges on the primary key; State, the keep-alive
// filters (LastRefreshBefore, NextRefreshBefore) and the retention query
// (State with UpdatedBefore) each have an index, which the planner picks by
// its statistics; UpdatedBefore without State reads the whole table.
// The time bounds are exact, to the nanosecond: a stored time (whole
// microseconds) passes if it is strictly before the bound, which is rounded
// up, not truncated, to the microsecond.
//
// A State or IDPrefix that is not storable text (not valid UTF-8, or with
// a NUL byte) selects nothing, since no stored state or id can equal or
// start with it; an After that is not storable text is CodeInvalid (it is
// a cursor, the id of a listed connection). It returns an empty slice, not
// an error, when nothing matches.
func (s *Store) ListConnections(ctx context.Context, filter tokenkeeper.ConnectionFilter) ([]*tokenkeeper.Record, error) {
	recs := []*tokenkeeper.Record{}
	if err := checkText("ConnectionFilter.After", string(filter.After)); err != nil {
		return nil, fmt.Errorf("postgres: list connections: %w", err)
	}
	if !storable(string(filter.State)) || !storable(filter.IDPrefix) {
		return recs, nil
	}
	query, args := listQuery(filter)
	err := retry(ctx, func() error {
		recs = recs[:0]
		rows, err := s.pool.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			rec, err := scanRecord(rows)
			if err != nil {
				return err
			}
			recs = append(recs, rec)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list connections: %w", mapErr(err))
	}
	return recs, nil
}

// listQuery returns the SELECT for f and its arguments. Its text depends
// only on which filters are set, so pgx's statement cache holds a few
// dozen variants at most.
func listQuery(f tokenkeeper.ConnectionFilter) (string, []any) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if f.State != "" {
		where = append(where, "state = "+arg(string(f.State)))
	}
	if f.IDPrefix != "" {
		// A range, not LIKE, so that no character of the prefix is a
		// pattern and the primary key serves it.
		where = append(where, "id >= "+arg(f.IDPrefix))
		if end, ok := prefixEnd(f.IDPrefix); ok {
			where = append(where, "id < "+arg(end))
		}
	}
	if f.After != "" {
		where = append(where, "id > "+arg(string(f.After)))
	}
	if !f.LastRefreshBefore.IsZero() {
		// last_change_at is the generated, indexed column
		// CASE WHEN last_refresh_at = '-infinity' THEN created_at ELSE last_refresh_at END.
		where = append(where, "last_change_at < "+arg(tsAfter(f.LastRefreshBefore)))
	}
	if !f.NextRefreshBefore.IsZero() {
		// The first term is the partial index's WHERE clause.
		where = append(where, "next_refresh_at > '-infinity'",
			"next_refresh_at < "+arg(tsAfter(f.NextRefreshBefore)))
	}
	if !f.UpdatedBefore.IsZero() {
		where = append(where, "updated_at < "+arg(tsAfter(f.UpdatedBefore)))
	}
	if !f.UpdatedAfter.IsZero() {
		// At or after: a stored whole microsecond m >= t exactly when m >=
		// tsAfter(t).
		where = append(where, "updated_at >= "+arg(tsAfter(f.UpdatedAfter)))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)

	query := `SELECT ` + connectionColumns + ` FROM connections`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY id LIMIT ` + arg(limit)
	return query, args
}

// prefixEnd returns the least valid UTF-8 string greater than every string
// that starts with prefix, a valid UTF-8 string without NUL: prefix with
// its last rune incremented, dropping trailing runes that have no
// successor. In UTF-8, byte order is code point order, so under COLLATE
// "C" the ids that start with prefix are exactly those from prefix up to
// (not including) prefixEnd. ok is false if there is no such string (the
// prefix is all U+10FFFF).
func prefixEnd(prefix string) (end string, ok bool) {
	for prefix != "" {
		r, size := utf8.DecodeLastRuneInString(prefix)
		prefix = prefix[:len(prefix)-size]
		switch {
		case r == utf8.MaxRune:
			continue
		case r == 0xD7FF: // the next code point, U+D800, is a surrogate
			r = 0xE000
		default:
			r++
		}
		return prefix + string(r), true
	}
	return "", false
}
