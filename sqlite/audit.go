package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"

	"github.com/tokenkeeper/tokenkeeper"
)

var _ tokenkeeper.AuditLog = (*Store)(nil)

// auditColumns are the columns ListAudit reads, in its order.
const auditColumns = `id, time, actor, action, connection_id, detail`

// AppendAudit stores e and sets e.ID to the entry's new id, which is
// higher than that of every entry appended before, and never reused (the
// table is AUTOINCREMENT). An ID already in e is ignored. It returns
// CodeInvalid if e is nil, its Actor or Action is empty, or a text field
// (Actor, Action, ConnectionID, Detail) is not valid UTF-8 or holds a NUL
// byte (the error names the field); e is then unchanged. It modifies only
// e.ID.
func (s *Store) AppendAudit(ctx context.Context, e *tokenkeeper.AuditEntry) error {
	if e == nil {
		return fmt.Errorf("sqlite: append audit: %w", errInvalid("the audit entry is nil"))
	}
	if err := checkAudit(e); err != nil {
		return fmt.Errorf("sqlite: append audit: %w", err)
	}
	var id int64
	err := s.stmts.appendAudit.QueryRowContext(ctx,
		micros(e.Time), e.Actor, e.Action, string(e.ConnectionID), e.Detail).Scan(&id)
	if err != nil {
		return fmt.Errorf("sqlite: append audit: %w", mapErr(err))
	}
	e.ID = id
	return nil
}

// checkAudit returns a CodeInvalid error if e cannot be stored.
func checkAudit(e *tokenkeeper.AuditEntry) error { return e.Validate() }

// ListAudit returns up to f.Limit entries that pass f, newest (highest ID)
// first. A zero or negative Limit means [DefaultLimit]; a Limit over
// [MaxLimit] means MaxLimit. A negative Before selects nothing (ids are
// positive). Both listings are served by an index: the table's own for
// all entries, audit_connection_id for one connection's. It returns an
// empty slice, not an error, when nothing matches.
func (s *Store) ListAudit(ctx context.Context, f tokenkeeper.AuditFilter) ([]*tokenkeeper.AuditEntry, error) {
	stmt, args := s.auditQuery(f)
	entries := []*tokenkeeper.AuditEntry{}
	err := func() error {
		rows, err := stmt.QueryContext(ctx, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var e tokenkeeper.AuditEntry
			var at int64
			if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.ConnectionID, &e.Detail); err != nil {
				return err
			}
			e.Time = fromMicros(at)
			entries = append(entries, &e)
		}
		return rows.Err()
	}()
	if err != nil {
		return nil, fmt.Errorf("sqlite: list audit: %w", mapErr(err))
	}
	return entries, nil
}

// auditQuery returns the statement for f and its arguments.
func (s *Store) auditQuery(f tokenkeeper.AuditFilter) (*sql.Stmt, []any) {
	// The statements take the highest id to return ("id <= ?"), which,
	// unlike "id < ?", has a value for "no bound" that selects every id.
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
		return s.stmts.listAuditByConnection, []any{string(f.ConnectionID), highest, limit}
	}
	return s.stmts.listAudit, []any{highest, limit}
}
