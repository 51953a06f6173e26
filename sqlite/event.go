package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

var _ tokenkeeper.EventLog = (*Store)(nil)

// eventColumns are the columns scanEvent reads, in its order.
const eventColumns = `seq, id, type, connection_id, subject, reason, time, generation`

// deliveryInsertSQL enqueues a delivery of the event (its id, then its
// time twice) to one endpoint.
const deliveryInsertSQL = `INSERT INTO webhook_deliveries
	(event_id, endpoint_id, state, attempts, created_at, next_attempt_at,
	 last_attempt_at, last_status, last_error, delivered_at)
	SELECT ?, id, 'pending', 0, ?, ?, 0, 0, '', 0 FROM webhook_endpoints WHERE disabled_at = 0`

// AppendEvent stores e and the deliveries fanout asks for in one BEGIN
// IMMEDIATE transaction, and sets e.Seq. See [tokenkeeper.EventLog].
func (s *Store) AppendEvent(ctx context.Context, e *tokenkeeper.StoredEvent, fanout tokenkeeper.Fanout) error {
	if e == nil {
		return fmt.Errorf("sqlite: append event: %w", errInvalid("the event is nil"))
	}
	if err := e.Validate(); err != nil {
		return fmt.Errorf("sqlite: append event %s: %w", e.ID, err)
	}
	if err := checkText("Fanout.Endpoint", string(fanout.Endpoint)); err != nil {
		return fmt.Errorf("sqlite: append event %s: %w", e.ID, err)
	}
	var seq int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `INSERT INTO events (id, type, connection_id, subject, reason, time, generation)
			VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING seq`,
			string(e.ID), string(e.Type), string(e.ConnectionID), e.Subject, e.Reason, micros(e.Time), e.Generation).Scan(&seq)
		if err != nil {
			return withMessage(mapErr(err), tokenkeeper.CodeConflict, fmt.Sprintf("event %s exists", e.ID))
		}
		at := micros(e.Time)
		if fanout.AllEndpoints {
			if _, err := tx.ExecContext(ctx, deliveryInsertSQL, string(e.ID), at, at); err != nil {
				return mapErr(err)
			}
		}
		if fanout.Endpoint != "" {
			res, err := tx.ExecContext(ctx, deliveryInsertSQL+` AND id = ? ON CONFLICT DO NOTHING`,
				string(e.ID), at, at, string(fanout.Endpoint))
			if err != nil {
				return mapErr(err)
			}
			if n, _ := res.RowsAffected(); n == 0 && !fanout.AllEndpoints {
				return errNotFound(fmt.Sprintf("webhook endpoint %s", fanout.Endpoint))
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: append event %s: %w", e.ID, err)
	}
	e.Seq = seq
	return nil
}

// ListEvents returns the events that pass f, by seq. A zero or negative
// Limit means [DefaultLimit]; one over [MaxLimit] means MaxLimit.
func (s *Store) ListEvents(ctx context.Context, f tokenkeeper.EventFilter) ([]*tokenkeeper.StoredEvent, error) {
	before := int64(math.MaxInt64)
	if f.BeforeSeq > 0 {
		before = f.BeforeSeq
	}
	where, args := eventWhere(f, []string{"seq > ?", "seq < ?"}, []any{f.AfterSeq, before})
	order := "ASC"
	if f.Newest {
		order = "DESC"
	}
	args = append(args, limitOf(f.Limit))
	query := `SELECT ` + eventColumns + ` FROM events WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY seq ` + order + ` LIMIT ?`
	events, err := s.queryEvents(ctx, s.read, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list events: %w", err)
	}
	return events, nil
}

// CountEvents returns how many events pass f. See [tokenkeeper.EventLog].
func (s *Store) CountEvents(ctx context.Context, f tokenkeeper.EventFilter) (int, error) {
	where, args := eventWhere(f, []string{"1"}, nil)
	var n int
	err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM events WHERE `+strings.Join(where, " AND "), args...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("sqlite: count events: %w", mapErr(err))
	}
	return n, nil
}

// eventWhere adds f's conditions but its cursors to where and args.
func eventWhere(f tokenkeeper.EventFilter, where []string, args []any) ([]string, []any) {
	if f.ConnectionID != "" {
		where = append(where, "connection_id = ?")
		args = append(args, string(f.ConnectionID))
	}
	if len(f.Types) > 0 {
		where = append(where, "type IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(f.Types)), ", ")+")")
		for _, t := range f.Types {
			args = append(args, string(t))
		}
	}
	if !f.Since.IsZero() {
		where = append(where, "time >= ?")
		args = append(args, microsAfter(f.Since))
	}
	if !f.Until.IsZero() {
		where = append(where, "time < ?")
		args = append(args, microsAfter(f.Until))
	}
	return where, args
}

// LatestEvents returns each connection's newest event of types. See
// [tokenkeeper.EventLog].
func (s *Store) LatestEvents(ctx context.Context, ids []tokenkeeper.ConnectionID, types []tokenkeeper.EventType) (map[tokenkeeper.ConnectionID]*tokenkeeper.StoredEvent, error) {
	out := map[tokenkeeper.ConnectionID]*tokenkeeper.StoredEvent{}
	if len(ids) > MaxLimit {
		return nil, fmt.Errorf("sqlite: latest events: %w", errInvalid(fmt.Sprintf("%d ids; the limit is %d", len(ids), MaxLimit)))
	}
	if len(ids) == 0 {
		return out, nil
	}
	var args []any
	for _, id := range ids {
		args = append(args, string(id))
	}
	// One index probe (events_connection_type) per connection and type: the
	// newest of each; the newest of those per connection is picked below.
	with := `WITH c(id) AS (VALUES ` + strings.TrimSuffix(strings.Repeat("(?), ", len(ids)), ", ") + `)`
	query := with + ` SELECT ` + eventColumns + ` FROM events WHERE seq IN (
		SELECT (SELECT max(x.seq) FROM events x WHERE x.connection_id = c.id) FROM c)`
	if len(types) > 0 {
		query = with + `, t(type) AS (VALUES ` + strings.TrimSuffix(strings.Repeat("(?), ", len(types)), ", ") + `)
			SELECT ` + eventColumns + ` FROM events WHERE seq IN (
			SELECT (SELECT max(x.seq) FROM events x WHERE x.connection_id = c.id AND x.type = t.type) FROM c, t)`
		for _, t := range types {
			args = append(args, string(t))
		}
	}
	events, err := s.queryEvents(ctx, s.read, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: latest events: %w", err)
	}
	for _, e := range events {
		if cur := out[e.ConnectionID]; cur == nil || e.Seq > cur.Seq {
			out[e.ConnectionID] = e
		}
	}
	return out, nil
}

// pruneBatch bounds the events one transaction of PruneEvents removes, so
// that none holds the write lock for long.
const pruneBatch = 5000

// PruneEvents removes old events and their deliveries, pruneBatch events
// per BEGIN IMMEDIATE transaction until none is left. See
// [tokenkeeper.EventLog].
func (s *Store) PruneEvents(ctx context.Context, before time.Time, keepLatest []tokenkeeper.EventType) (int, error) {
	keep := `0`
	args := []any{microsAfter(before)}
	if len(keepLatest) > 0 {
		// A kept type's event is kept while no newer one of a kept type
		// exists for its connection (index probes, evaluated only for the
		// few events of those types).
		in := `(` + marks(len(keepLatest)) + `)`
		keep = `ev.type IN ` + in + ` AND NOT EXISTS (SELECT 1 FROM events n
			WHERE n.connection_id = ev.connection_id AND n.type IN ` + in + ` AND n.seq > ev.seq)
			AND (ev.connection_id = '' OR EXISTS (SELECT 1 FROM connections c WHERE c.id = ev.connection_id))`
		for range 2 {
			for _, t := range keepLatest {
				args = append(args, string(t))
			}
		}
	}
	args = append(args, pruneBatch)
	total := 0
	for {
		var n int64
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			// The deliveries go with their event (ON DELETE CASCADE).
			res, err := tx.ExecContext(ctx, `DELETE FROM events WHERE seq IN (
				SELECT ev.seq FROM events ev WHERE ev.time < ? AND NOT (`+keep+`)
				AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = ev.id AND d.state = 'pending')
				ORDER BY ev.time LIMIT ?)`, args...)
			if err != nil {
				return mapErr(err)
			}
			n, err = res.RowsAffected()
			return mapErr(err)
		})
		if err != nil {
			return total, fmt.Errorf("sqlite: prune events: %w", err)
		}
		total += int(n)
		if n < pruneBatch {
			return total, nil
		}
	}
}

// queryEvents runs query on db and scans its rows of eventColumns.
func (s *Store) queryEvents(ctx context.Context, db interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, query string, args ...any) ([]*tokenkeeper.StoredEvent, error) {
	events := []*tokenkeeper.StoredEvent{}
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, mapErr(err)
		}
		events = append(events, e)
	}
	return events, mapErr(rows.Err())
}

// scanEvent reads one row of eventColumns.
func scanEvent(row scanner) (*tokenkeeper.StoredEvent, error) {
	var e tokenkeeper.StoredEvent
	var at int64
	if err := row.Scan(&e.Seq, &e.ID, &e.Type, &e.ConnectionID, &e.Subject, &e.Reason, &at, &e.Generation); err != nil {
		return nil, err
	}
	e.Time = fromMicros(at)
	return &e, nil
}

// marks returns n comma-separated placeholders.
func marks(n int) string { return strings.TrimSuffix(strings.Repeat("?, ", n), ", ") }

// limitOf applies DefaultLimit and MaxLimit to a filter's Limit.
func limitOf(limit int) int {
	if limit <= 0 {
		limit = DefaultLimit
	}
	return min(limit, MaxLimit)
}
