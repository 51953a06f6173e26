package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

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
		return fmt.Errorf("sqlite: create connection: %w", errInvalid("the record is nil"))
	}
	if rec.Generation != 1 {
		return fmt.Errorf("sqlite: create connection %s: %w", rec.ID,
			errInvalid(fmt.Sprintf("a new connection has generation 1, not %d", rec.Generation)))
	}
	args, err := recordArgs(rec)
	if err != nil {
		return fmt.Errorf("sqlite: create connection %s: %w", rec.ID, err)
	}
	_, err = s.stmts.createConnection.ExecContext(ctx, append([]any{string(rec.ID)}, args...)...)
	if err != nil {
		err = withMessage(mapErr(err), tokenkeeper.CodeConflict, "connection "+string(rec.ID)+" exists")
		return fmt.Errorf("sqlite: create connection %s: %w", rec.ID, err)
	}
	return nil
}

// GetConnection returns the connection id, with its lease as last written.
// It returns CodeNotFound if there is none.
func (s *Store) GetConnection(ctx context.Context, id tokenkeeper.ConnectionID) (*tokenkeeper.Record, error) {
	rec, err := getConnection(ctx, s.stmts.getConnection, id)
	if err != nil {
		return nil, fmt.Errorf("sqlite: get connection %s: %w", id, err)
	}
	return rec, nil
}

// getConnection reads the connection id with get, a statement of
// getConnectionSQL: s.stmts.getConnection, or s.stmts.getConnectionW
// through a transaction.
func getConnection(ctx context.Context, get *sql.Stmt, id tokenkeeper.ConnectionID) (*tokenkeeper.Record, error) {
	rec, err := scanRecord(get.QueryRowContext(ctx, string(id)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound("connection " + string(id))
	}
	return rec, mapErr(err)
}

// UpdateConnection replaces every field of the stored connection rec.ID but
// its lease with rec, if its generation is expect. It stores rec's
// UpdatedAt and Generation as given. CodeInvalid, naming the field, if a
// text field of rec is not valid UTF-8 or holds a NUL byte (as for
// CreateConnection); CodeNotFound if there is no such connection;
// CodeConflict if its generation is not expect.
func (s *Store) UpdateConnection(ctx context.Context, rec *tokenkeeper.Record, expect int64) error {
	if err := s.update(ctx, rec, expect, nil); err != nil {
		return fmt.Errorf("sqlite: update connection %s: %w", recID(rec), err)
	}
	return nil
}

// UpdateLeased is UpdateConnection that also requires lease to be the
// connection's current lease (same non-empty Owner, same Fence) and
// unexpired by the store's clock. CodeNotFound if there is no such
// connection; CodeConflict if the generation or the lease check fails.
func (s *Store) UpdateLeased(ctx context.Context, rec *tokenkeeper.Record, expect int64, lease tokenkeeper.Lease) error {
	if err := s.update(ctx, rec, expect, &lease); err != nil {
		return fmt.Errorf("sqlite: update leased connection %s: %w", recID(rec), err)
	}
	return nil
}

// update is UpdateConnection, fenced by lease if it is not nil. The
// conditional UPDATE is atomic by itself; the transaction makes the
// explanation of a failure (which check failed) read the same state, and
// lets the fenced write read the lease clock once it holds the write lock:
// a time read before waiting for the lock (up to BusyTimeout, or behind
// this process's other writes) could let a lease that expired meanwhile
// pass.
func (s *Store) update(ctx context.Context, rec *tokenkeeper.Record, expect int64, lease *tokenkeeper.Lease) error {
	if rec == nil {
		return errInvalid("the record is nil")
	}
	args, err := recordArgs(rec)
	if err != nil {
		return err
	}
	stmt := s.stmts.updateConnection
	args = append(args, string(rec.ID), expect)
	if lease != nil {
		stmt = s.stmts.updateLeased
		args = append(args, lease.Owner, lease.Fence, nil) // now, below
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if lease != nil {
			args[len(args)-1] = micros(s.now())
		}
		res, err := tx.StmtContext(ctx, stmt).ExecContext(ctx, args...)
		if err != nil {
			return mapErr(err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return mapErr(err)
		}
		cur, err := getConnection(ctx, tx.StmtContext(ctx, s.stmts.getConnectionW), rec.ID)
		if err != nil {
			return err
		}
		if cur.Generation != expect || lease == nil {
			return errConflict(fmt.Sprintf("the generation is %d, not %d", cur.Generation, expect))
		}
		return errConflict(fmt.Sprintf("the lease (fence %d) is no longer held", lease.Fence))
	})
}

// inTx runs fn in a write transaction, which BEGIN IMMEDIATE (the write
// DSN's _txlock) starts by taking the database's write lock, and commits
// if fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return mapErr(err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return mapErr(tx.Commit())
}

// DeleteConnection removes the connection id and its lease. If expect is
// not 0, it removes it only if its generation is expect, and returns
// CodeConflict otherwise. CodeNotFound if there is no such connection.
func (s *Store) DeleteConnection(ctx context.Context, id tokenkeeper.ConnectionID, expect int64) error {
	if err := s.deleteConnection(ctx, id, expect); err != nil {
		return fmt.Errorf("sqlite: delete connection %s: %w", id, err)
	}
	return nil
}

func (s *Store) deleteConnection(ctx context.Context, id tokenkeeper.ConnectionID, expect int64) error {
	if expect == 0 {
		ok, err := affected(s.stmts.deleteConnection.ExecContext(ctx, string(id)))
		if err == nil && !ok {
			err = errNotFound("connection " + string(id))
		}
		return err
	}
	// As in update: the conditional DELETE is atomic by itself; the
	// transaction makes the explanation of a failure read the same state.
	return s.inTx(ctx, func(tx *sql.Tx) error {
		ok, err := affected(tx.StmtContext(ctx, s.stmts.deleteIf).ExecContext(ctx, string(id), expect))
		if err != nil || ok {
			return err
		}
		cur, err := getConnection(ctx, tx.StmtContext(ctx, s.stmts.getConnectionW), id)
		if err != nil {
			return err
		}
		return errConflict(fmt.Sprintf("the generation is %d, not %d", cur.Generation, expect))
	})
}

// affected reports whether the write that returned res and err changed a
// row, with err mapped.
func affected(res sql.Result, err error) (bool, error) {
	if err != nil {
		return false, mapErr(err)
	}
	n, err := res.RowsAffected()
	return n > 0, mapErr(err)
}

// CountConnections returns the number of connections in each state that
// has any; a state with none is absent from the map (which is empty, not
// nil, when there are no connections). It reads an index on state, not the
// table.
func (s *Store) CountConnections(ctx context.Context) (map[tokenkeeper.State]int, error) {
	counts := map[tokenkeeper.State]int{}
	err := func() error {
		rows, err := s.stmts.countConnections.QueryContext(ctx)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var state string
			var n int
			if err := rows.Scan(&state, &n); err != nil {
				return err
			}
			counts[tokenkeeper.State(state)] = n
		}
		return rows.Err()
	}()
	if err != nil {
		return nil, fmt.Errorf("sqlite: count connections: %w", mapErr(err))
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
