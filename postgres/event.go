package postgres

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tokenkeeper/tokenkeeper"
)

var _ tokenkeeper.EventLog = (*Store)(nil)

// eventColumns are the columns scanEvent reads, in its order.
const eventColumns = `seq, id, type, connection_id, subject, reason, time, generation`

const (
	appendEventSQL = `INSERT INTO events (id, type, connection_id, subject, reason, time, generation)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq`
	// enqueueSQL takes the event's id and time, whether to enqueue to every
	// enabled endpoint, and one endpoint id ('' for none); it returns the
	// number enqueued to that one endpoint.
	enqueueSQL = `WITH d AS (
		INSERT INTO webhook_deliveries (event_id, endpoint_id, state, attempts, created_at, next_attempt_at,
			last_attempt_at, last_status, last_error, delivered_at)
		SELECT $1, e.id, 'pending', 0, $2, $2, '-infinity', 0, '', '-infinity'
		FROM webhook_endpoints e WHERE e.disabled_at = '-infinity' AND ($3::boolean OR e.id = $4)
		ON CONFLICT DO NOTHING RETURNING endpoint_id)
		SELECT count(*) FROM d WHERE endpoint_id = $4`
)

// AppendEvent stores e and the deliveries fanout asks for in one
// transaction, and sets e.Seq. See [tokenkeeper.EventLog].
func (s *Store) AppendEvent(ctx context.Context, e *tokenkeeper.StoredEvent, fanout tokenkeeper.Fanout) error {
	if e == nil {
		return fmt.Errorf("postgres: append event: %w", errInvalid("the event is nil"))
	}
	if err := e.Validate(); err != nil {
		return fmt.Errorf("postgres: append event %s: %w", e.ID, err)
	}
	if err := checkText("Fanout.Endpoint", string(fanout.Endpoint)); err != nil {
		return fmt.Errorf("postgres: append event %s: %w", e.ID, err)
	}
	var seq int64
	err := retry(ctx, func() error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if err := tx.QueryRow(ctx, appendEventSQL, string(e.ID), string(e.Type), string(e.ConnectionID),
				e.Subject, e.Reason, ts(e.Time), e.Generation).Scan(&seq); err != nil {
				return err
			}
			if !fanout.AllEndpoints && fanout.Endpoint == "" {
				return nil
			}
			var n int64
			if err := tx.QueryRow(ctx, enqueueSQL, string(e.ID), ts(e.Time), fanout.AllEndpoints, string(fanout.Endpoint)).Scan(&n); err != nil {
				return err
			}
			if fanout.Endpoint != "" && n == 0 && !fanout.AllEndpoints {
				return errNotFound(fmt.Sprintf("webhook endpoint %s", fanout.Endpoint))
			}
			return nil
		})
	})
	if err != nil {
		err = withMessage(mapErr(err), tokenkeeper.CodeConflict, fmt.Sprintf("event %s exists", e.ID))
		return fmt.Errorf("postgres: append event %s: %w", e.ID, err)
	}
	e.Seq = seq
	return nil
}

// ListEvents returns the events that pass f, by seq. A zero or negative
// Limit means [DefaultLimit]; one over [MaxLimit] means MaxLimit.
func (s *Store) ListEvents(ctx context.Context, f tokenkeeper.EventFilter) ([]*tokenkeeper.StoredEvent, error) {
	if f.ConnectionID != "" && !storable(string(f.ConnectionID)) {
		return []*tokenkeeper.StoredEvent{}, nil
	}
	before := int64(math.MaxInt64)
	if f.BeforeSeq > 0 {
		before = f.BeforeSeq
	}
	where, args := eventWhere(f, []string{"seq > $1", "seq < $2"}, []any{f.AfterSeq, before})
	order := "ASC"
	if f.Newest {
		order = "DESC"
	}
	args = append(args, limitOf(f.Limit))
	query := `SELECT ` + eventColumns + ` FROM events WHERE ` + strings.Join(where, " AND ") +
		fmt.Sprintf(` ORDER BY seq %s LIMIT $%d`, order, len(args))
	events, err := s.queryEvents(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: list events: %w", err)
	}
	return events, nil
}

// CountEvents returns how many events pass f. See [tokenkeeper.EventLog].
func (s *Store) CountEvents(ctx context.Context, f tokenkeeper.EventFilter) (int, error) {
	if f.ConnectionID != "" && !storable(string(f.ConnectionID)) {
		return 0, nil
	}
	where, args := eventWhere(f, []string{"true"}, nil)
	var n int64
	err := retry(ctx, func() error {
		return s.pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE `+strings.Join(where, " AND "), args...).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: count events: %w", mapErr(err))
	}
	return int(n), nil
}

// eventWhere adds f's conditions but its cursors to where and args, whose
// placeholders are numbered on from len(args).
func eventWhere(f tokenkeeper.EventFilter, where []string, args []any) ([]string, []any) {
	if f.ConnectionID != "" {
		args = append(args, string(f.ConnectionID))
		where = append(where, fmt.Sprintf("connection_id = $%d", len(args)))
	}
	if len(f.Types) > 0 {
		args = append(args, typeStrings(f.Types))
		where = append(where, fmt.Sprintf("type = ANY($%d)", len(args)))
	}
	if !f.Since.IsZero() {
		args = append(args, tsAfter(f.Since))
		where = append(where, fmt.Sprintf("time >= $%d", len(args)))
	}
	if !f.Until.IsZero() {
		args = append(args, tsAfter(f.Until))
		where = append(where, fmt.Sprintf("time < $%d", len(args)))
	}
	return where, args
}

// LatestEvents returns each connection's newest event of types. See
// [tokenkeeper.EventLog].
func (s *Store) LatestEvents(ctx context.Context, ids []tokenkeeper.ConnectionID, types []tokenkeeper.EventType) (map[tokenkeeper.ConnectionID]*tokenkeeper.StoredEvent, error) {
	out := map[tokenkeeper.ConnectionID]*tokenkeeper.StoredEvent{}
	if len(ids) > MaxLimit {
		return nil, fmt.Errorf("postgres: latest events: %w", errInvalid(fmt.Sprintf("%d ids; the limit is %d", len(ids), MaxLimit)))
	}
	var keys []string
	for _, id := range ids {
		if storable(string(id)) {
			keys = append(keys, string(id))
		}
	}
	if len(keys) == 0 {
		return out, nil
	}
	// One index probe (events_connection_type) per connection and type: the
	// newest of each; the newest of those per connection is picked below.
	query := `SELECT ` + eventColumns + ` FROM events WHERE seq IN (
		SELECT (SELECT max(x.seq) FROM events x WHERE x.connection_id = c.id AND x.type = t.type)
		FROM unnest($1::text[]) AS c(id), unnest($2::text[]) AS t(type))`
	args := []any{keys, typeStrings(types)}
	if len(types) == 0 {
		query = `SELECT ` + eventColumns + ` FROM events WHERE seq IN (
			SELECT (SELECT max(x.seq) FROM events x WHERE x.connection_id = c.id) FROM unnest($1::text[]) AS c(id))`
		args = args[:1]
	}
	events, err := s.queryEvents(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: latest events: %w", err)
	}
	for _, e := range events {
		if cur := out[e.ConnectionID]; cur == nil || e.Seq > cur.Seq {
			out[e.ConnectionID] = e
		}
	}
	return out, nil
}

// pruneBatch bounds the events one statement of PruneEvents removes, so
// that none runs into the statement timeout or holds locks for long.
const pruneBatch = 5000

// PruneEvents removes old events and their deliveries, pruneBatch events
// per statement (each its own transaction) until none is left. See
// [tokenkeeper.EventLog].
func (s *Store) PruneEvents(ctx context.Context, before time.Time, keepLatest []tokenkeeper.EventType) (int, error) {
	total := 0
	for {
		var n int64
		err := retry(ctx, func() error {
			// The deliveries go with their event (ON DELETE CASCADE).
			// A kept type's event is kept while no newer one of a kept type
			// exists for its connection (index probes, evaluated only for
			// the few events of those types).
			tag, err := s.pool.Exec(ctx, `DELETE FROM events WHERE seq IN (
				SELECT ev.seq FROM events ev WHERE ev.time < $1
				AND NOT (ev.type = ANY($2) AND NOT EXISTS (SELECT 1 FROM events n
					WHERE n.connection_id = ev.connection_id AND n.type = ANY($2) AND n.seq > ev.seq)
					AND (ev.connection_id = '' OR EXISTS (SELECT 1 FROM connections c WHERE c.id = ev.connection_id)))
				AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = ev.id AND d.state = 'pending')
				ORDER BY ev.time LIMIT $3)`,
				tsAfter(before), typeStrings(keepLatest), pruneBatch)
			n = tag.RowsAffected()
			return err
		})
		if err != nil {
			return total, fmt.Errorf("postgres: prune events: %w", mapErr(err))
		}
		total += int(n)
		if n < pruneBatch {
			return total, nil
		}
	}
}

// queryEvents runs query and scans its rows of eventColumns.
func (s *Store) queryEvents(ctx context.Context, query string, args ...any) ([]*tokenkeeper.StoredEvent, error) {
	events := []*tokenkeeper.StoredEvent{}
	err := retry(ctx, func() error {
		events = events[:0]
		rows, err := s.pool.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var e tokenkeeper.StoredEvent
			var at pgtype.Timestamptz
			if err := rows.Scan(&e.Seq, &e.ID, &e.Type, &e.ConnectionID, &e.Subject, &e.Reason, &at, &e.Generation); err != nil {
				return err
			}
			e.Time = fromTS(at)
			events = append(events, &e)
		}
		return rows.Err()
	})
	return events, mapErr(err)
}

// typeStrings returns types as a text array (never nil, so that it is
// '{}', not NULL).
func typeStrings(types []tokenkeeper.EventType) []string {
	out := make([]string, 0, len(types))
	for _, t := range types {
		out = append(out, string(t))
	}
	return out
}

// limitOf applies DefaultLimit and MaxLimit to a filter's Limit.
func limitOf(limit int) int {
	if limit <= 0 {
		limit = DefaultLimit
	}
	return min(limit, MaxLimit)
}
