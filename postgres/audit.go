package postgres

import (
	"context"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tokenkeeper/tokenkeeper"
)

// auditColumns are the columns ListAudit reads, in its order.
const auditColumns = `id, time, actor, action, connection_id, detail`

// AppendAudit stores e and sets e.ID to the entry's new id, which is
// higher than that of every entry appended before, and never reused (an
// identity column). An ID already in e is ignored. It returns CodeInvalid
// if e is nil, its Actor or Action is empty, or a text field (Actor,
// Action, ConnectionID, Detail) is not valid UTF-8 or holds a NUL byte
// (the error names the field); e is then unchanged. It modifies only e.ID.
//
// Ids come from a sequence, in the order entries are appended, not the
// order their statements commit: a listing made while two appends are in
// flight may see the later one before the earlier one commits.
func (s *Store) AppendAudit(ctx context.Context, e *tokenkeeper.AuditEntry) error {
	if e == nil {
		return fmt.Errorf("postgres: append audit: %w", errInvalid("the audit entry is nil"))
	}
	if err := checkAudit(e); err != nil {
		return fmt.Errorf("postgres: append audit: %w", err)
	}
	var id int64
	err := retry(ctx, func() error {
		return s.pool.QueryRow(ctx, appendAuditSQL,
			ts(e.Time), e.Actor, e.Action, string(e.ConnectionID), e.Detail).Scan(&id)
	})
	if err != nil {
		return fmt.Errorf("postgres: append audit: %w", mapErr(err))
	}
	e.ID = id
	return nil
}

// checkAudit returns a CodeInvalid error if e cannot be stored.
func checkAudit(e *tokenkeeper.AuditEntry) error { return e.Validate() }

// ListAudit returns up to f.Limit entries that pass f, newest (highest ID)
// first. A zero or negative Limit means [DefaultLimit]; a Limit over
// [MaxLimit] means MaxLimit. A negative Before selects nothing (ids are
// positive), and so does a ConnectionID that is not storable text (no
// entry has it). Both listings are served by an index: the primary key
// for all entries, audit_connection_id for one connection's. It returns an
// empty slice, not an error, when nothing matches.
func (s *Store) ListAudit(ctx context.Context, f tokenkeeper.AuditFilter) ([]*tokenkeeper.AuditEntry, error) {
	entries := []*tokenkeeper.AuditEntry{}
	if f.ConnectionID != "" && !storable(string(f.ConnectionID)) {
		return entries, nil
	}
	query, args := auditQuery(f)
	err := retry(ctx, func() error {
		entries = entries[:0]
		rows, err := s.pool.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var e tokenkeeper.AuditEntry
			var at pgtype.Timestamptz
			if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.ConnectionID, &e.Detail); err != nil {
				return err
			}
			e.Time = fromTS(at)
			entries = append(entries, &e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list audit: %w", mapErr(err))
	}
	return entries, nil
}

// auditQuery returns the statement for f and its arguments.
func auditQuery(f tokenkeeper.AuditFilter) (string, []any) {
	// The statements take the highest id to return ("id <= $n"), which,
	// unlike "id < $n", has a value for "no bound" that selects every id.
	highest := int64(math.MaxInt64)
	switch {
	case f.Before > 0:
		highest = f.Before - 1
	case f.Before < 0:
		highest = 0
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	if f.ConnectionID != "" {
		return listAuditByConnectionSQL, []any{string(f.ConnectionID), highest, limit}
	}
	return listAuditSQL, []any{highest, limit}
}
