package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tokenkeeper/tokenkeeper"
)

// CreateConnection stores rec as a new connection, without its Lease (a new
// connection's lease is held by nobody, with Fence 0). It returns
// CodeInvalid if rec is nil, rec.Generation is not 1, or a text field of
// rec (the id, Provider, Subject, State, LastError, a scope, a Metadata key
// or value, a key id, Tokens.Scope, Pending.Owner) is not valid UTF-8 or
// holds a NUL byte; the error names the field. It returns CodeConflict if
// the id exists. It does not modify rec.
func (s *Store) CreateConnection(ctx context.Context, rec *tokenkeeper.Record) error {
	if rec == nil {
		return fmt.Errorf("postgres: create connection: %w", errInvalid("the record is nil"))
	}
	if rec.Generation != 1 {
		return fmt.Errorf("postgres: create connection %s: %w", rec.ID,
			errInvalid(fmt.Sprintf("a new connection has generation 1, not %d", rec.Generation)))
	}
	args, err := recordArgs(rec)
	if err != nil {
		return fmt.Errorf("postgres: create connection %s: %w", rec.ID, err)
	}
	args = append([]any{string(rec.ID)}, args...)
	err = retry(ctx, func() error {
		_, err := s.pool.Exec(ctx, createConnectionSQL, args...)
		return err
	})
	if err != nil {
		err = withMessage(mapErr(err), tokenkeeper.CodeConflict, "connection "+string(rec.ID)+" exists")
		return fmt.Errorf("postgres: create connection %s: %w", rec.ID, err)
	}
	return nil
}

// GetConnection returns the connection id, with its lease as last written.
// It returns CodeNotFound if there is none.
func (s *Store) GetConnection(ctx context.Context, id tokenkeeper.ConnectionID) (*tokenkeeper.Record, error) {
	rec, err := s.getConnection(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("postgres: get connection %s: %w", id, err)
	}
	return rec, nil
}

// getConnection reads the connection id; its error is mapped.
func (s *Store) getConnection(ctx context.Context, id tokenkeeper.ConnectionID) (*tokenkeeper.Record, error) {
	if !storable(string(id)) {
		return nil, errNotFound("connection " + string(id))
	}
	var rec *tokenkeeper.Record
	err := retry(ctx, func() error {
		var err error
		rec, err = scanRecord(s.pool.QueryRow(ctx, getConnectionSQL, string(id)))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errNotFound("connection " + string(id))
	}
	return rec, mapErr(err)
}

// UpdateConnection replaces every field of the stored connection rec.ID but
// its lease with rec, if its generation is expect, in one conditional
// UPDATE. It stores rec's UpdatedAt and Generation as given. CodeInvalid,
// naming the field, if a text field of rec cannot be stored (as for
// CreateConnection); CodeNotFound if there is no such connection;
// CodeConflict if its generation is not expect.
func (s *Store) UpdateConnection(ctx context.Context, rec *tokenkeeper.Record, expect int64) error {
	if err := s.update(ctx, rec, expect, nil); err != nil {
		return fmt.Errorf("postgres: update connection %s: %w", recID(rec), err)
	}
	return nil
}

// UpdateLeased is UpdateConnection that also requires lease to be the
// connection's current lease (same non-empty Owner, same Fence) and
// unexpired by the database's clock, all in the one UPDATE's WHERE clause.
// CodeNotFound if there is no such connection; CodeConflict if the
// generation or the lease check fails.
func (s *Store) UpdateLeased(ctx context.Context, rec *tokenkeeper.Record, expect int64, lease tokenkeeper.Lease) error {
	if err := s.update(ctx, rec, expect, &lease); err != nil {
		return fmt.Errorf("postgres: update leased connection %s: %w", recID(rec), err)
	}
	return nil
}

// update is UpdateConnection, fenced by lease if it is not nil. The
// conditional UPDATE decides alone; when it changes nothing, a second
// statement reads why (absent, another generation, or a lease that is not
// held), which may be a later state than the one the UPDATE saw.
func (s *Store) update(ctx context.Context, rec *tokenkeeper.Record, expect int64, lease *tokenkeeper.Lease) error {
	if rec == nil {
		return errInvalid("the record is nil")
	}
	args, err := recordArgs(rec)
	if err != nil {
		return err
	}
	query := updateConnectionSQL
	args = append(args, string(rec.ID), expect)
	if lease != nil {
		query = updateLeasedSQL
		args = append(args, lease.Owner, lease.Fence)
	}
	// An owner that is not storable text holds no lease: nothing to try.
	if lease == nil || storable(lease.Owner) {
		if ok, err := s.exec(ctx, query, args...); err != nil || ok {
			return err
		}
	}
	cur, err := s.explain(ctx, rec.ID)
	if err != nil {
		return err
	}
	if cur.generation != expect || lease == nil {
		return errConflict(fmt.Sprintf("the generation is %d, not %d", cur.generation, expect))
	}
	return errConflict(fmt.Sprintf("the lease (fence %d) is no longer held", lease.Fence))
}

// exec runs a write, retrying it as retry does, and reports whether it
// changed a row; its error is mapped.
func (s *Store) exec(ctx context.Context, query string, args ...any) (bool, error) {
	var n int64
	err := retry(ctx, func() error {
		tag, err := s.pool.Exec(ctx, query, args...)
		n = tag.RowsAffected()
		return err
	})
	return n > 0, mapErr(err)
}

// current is what explainSQL reads: a connection's generation and lease.
type current struct {
	generation int64
	lease      tokenkeeper.Lease
}

// explain reads the generation and lease of the connection id, for the
// error of a conditional write that changed nothing. CodeNotFound if there
// is no such connection; the error is mapped.
func (s *Store) explain(ctx context.Context, id tokenkeeper.ConnectionID) (current, error) {
	var c current
	var expires pgtype.Timestamptz
	err := retry(ctx, func() error {
		return s.pool.QueryRow(ctx, explainSQL, string(id)).Scan(
			&c.generation, &c.lease.Owner, &c.lease.Fence, &expires)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return c, errNotFound("connection " + string(id))
	}
	c.lease.ExpiresAt = fromTS(expires)
	return c, mapErr(err)
}

// DeleteConnection removes the connection id and its lease. If expect is
// not 0, it removes it only if its generation is expect (one conditional
// DELETE), and returns CodeConflict otherwise. CodeNotFound if there is no
// such connection.
func (s *Store) DeleteConnection(ctx context.Context, id tokenkeeper.ConnectionID, expect int64) error {
	if err := s.deleteConnection(ctx, id, expect); err != nil {
		return fmt.Errorf("postgres: delete connection %s: %w", id, err)
	}
	return nil
}

func (s *Store) deleteConnection(ctx context.Context, id tokenkeeper.ConnectionID, expect int64) error {
	if !storable(string(id)) {
		return errNotFound("connection " + string(id))
	}
	query, args := deleteConnectionSQL, []any{string(id)}
	if expect != 0 {
		query, args = deleteConnectionIfSQL, append(args, expect)
	}
	if ok, err := s.exec(ctx, query, args...); err != nil || ok {
		return err
	}
	cur, err := s.explain(ctx, id)
	if err != nil {
		return err
	}
	return errConflict(fmt.Sprintf("the generation is %d, not %d", cur.generation, expect))
}

// CountConnections returns the number of connections in each state that
// has any; a state with none is absent from the map (which is empty, not
// nil, when there are no connections). It reads the index on state, not
// the table, where the visibility map allows.
func (s *Store) CountConnections(ctx context.Context) (map[tokenkeeper.State]int, error) {
	var counts map[tokenkeeper.State]int
	err := retry(ctx, func() error {
		counts = map[tokenkeeper.State]int{}
		rows, err := s.pool.Query(ctx, countConnectionsSQL)
		if err != nil {
			return err
		}
		var state string
		var n int
		_, err = pgx.ForEachRow(rows, []any{&state, &n}, func() error {
			counts[tokenkeeper.State(state)] = n
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: count connections: %w", mapErr(err))
	}
	return counts, nil
}

// recID returns rec's id for an error, or "" for a nil rec.
func recID(rec *tokenkeeper.Record) tokenkeeper.ConnectionID {
	if rec == nil {
		return ""
	}
	return rec.ID
}
