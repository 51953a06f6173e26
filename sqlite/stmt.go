package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// The statements the store runs, but for ListConnections (whose SELECT
// depends on the filter). Open prepares each once: parsing and planning a
// statement costs SQLite about as much CPU as running one of these, and a
// refresh runs five of them.
var (
	getConnectionSQL = `SELECT ` + connectionColumns + ` FROM connections WHERE id = ?`

	createConnectionSQL = `INSERT INTO connections (id, ` + strings.Join(writeColumns, ", ") +
		`) VALUES (?` + strings.Repeat(", ?", len(writeColumns)) + `)`

	// updateConnectionSQL takes recordArgs, then the id and the expected
	// generation.
	updateConnectionSQL = `UPDATE connections SET ` + strings.Join(writeColumns, " = ?, ") + ` = ?
		WHERE id = ? AND generation = ?`
	// updateLeasedSQL takes updateConnectionSQL's arguments, then the
	// lease's owner and fence, and now.
	updateLeasedSQL = updateConnectionSQL +
		` AND lease_owner <> '' AND lease_owner = ? AND lease_fence = ? AND lease_expires_at > ?`

	deleteConnectionSQL = `DELETE FROM connections WHERE id = ?`
	// deleteConnectionIfSQL takes the id and the expected generation.
	deleteConnectionIfSQL = deleteConnectionSQL + ` AND generation = ?`

	// listAuditSQL takes the highest id to return and the limit;
	// listAuditByConnectionSQL takes the connection id first.
	listAuditSQL = `SELECT ` + auditColumns + ` FROM audit
		WHERE id <= ? ORDER BY id DESC LIMIT ?`
	listAuditByConnectionSQL = `SELECT ` + auditColumns + ` FROM audit
		WHERE connection_id = ? AND id <= ? ORDER BY id DESC LIMIT ?`
)

const (
	acquireLeaseSQL = `UPDATE connections
		SET lease_owner = ?, lease_fence = lease_fence + 1, lease_expires_at = ?
		WHERE id = ? AND (lease_owner = '' OR lease_owner = ? OR lease_expires_at <= ?)
		RETURNING ` + connectionColumns

	renewLeaseSQL = `UPDATE connections SET lease_expires_at = ?
		WHERE id = ? AND lease_owner <> '' AND lease_owner = ? AND lease_fence = ? AND lease_expires_at > ?
		RETURNING lease_owner, lease_fence, lease_expires_at`

	releaseLeaseSQL = `UPDATE connections SET lease_owner = '', lease_expires_at = 0
		WHERE id = ? AND lease_owner <> '' AND lease_owner = ? AND lease_fence = ? AND lease_expires_at > ?`

	createSessionSQL = `INSERT INTO sessions
		(state_hash, connection_id, return_url, verifier, verifier_key, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`

	takeSessionSQL = `DELETE FROM sessions WHERE state_hash = ?
		RETURNING state_hash, connection_id, return_url, verifier, verifier_key, created_at, expires_at`

	deleteExpiredSessionsSQL = `DELETE FROM sessions WHERE expires_at < ?`

	countConnectionsSQL = `SELECT state, count(*) FROM connections GROUP BY state`

	createAPIKeySQL = `INSERT INTO api_keys (id, name, scopes, hash, created_at, revoked_at)
		VALUES (?, ?, ?, ?, ?, ?)`
	getAPIKeySQL   = `SELECT ` + apiKeyColumns + ` FROM api_keys WHERE id = ?`
	listAPIKeysSQL = `SELECT ` + apiKeyColumns + ` FROM api_keys ORDER BY created_at, id`
	// revokeAPIKeySQL matches a revoked key too (keeping its first
	// revocation time), so that "no row" means only "no such key".
	revokeAPIKeySQL = `UPDATE api_keys
		SET revoked_at = CASE WHEN revoked_at = 0 THEN ? ELSE revoked_at END
		WHERE id = ?`

	appendAuditSQL = `INSERT INTO audit (time, actor, action, connection_id, detail)
		VALUES (?, ?, ?, ?, ?) RETURNING id`
)

// stmts are the Store's prepared statements. A *sql.Stmt prepares itself
// again, once, on each connection of its pool that it runs on (the read
// pool's, or a new write connection after a lost one). Inside a
// transaction, use one through tx.StmtContext, which reuses the statement
// already prepared on the transaction's connection: a statement of the
// write pool used directly would wait for the connection the transaction
// holds.
type stmts struct {
	// On the read pool: plain reads.
	getConnection         *sql.Stmt
	countConnections      *sql.Stmt
	getAPIKey             *sql.Stmt
	listAPIKeys           *sql.Stmt
	listAudit             *sql.Stmt
	listAuditByConnection *sql.Stmt

	// On the write connection.
	getConnectionW   *sql.Stmt // a read within a write transaction
	createConnection *sql.Stmt
	updateConnection *sql.Stmt
	updateLeased     *sql.Stmt
	deleteConnection *sql.Stmt
	deleteIf         *sql.Stmt // deleteConnectionIfSQL
	acquireLease     *sql.Stmt
	renewLease       *sql.Stmt
	releaseLease     *sql.Stmt
	createSession    *sql.Stmt
	takeSession      *sql.Stmt
	deleteExpired    *sql.Stmt
	createAPIKey     *sql.Stmt
	revokeAPIKey     *sql.Stmt
	appendAudit      *sql.Stmt

	// all are the statements above that are prepared, for closeStmts.
	all []*sql.Stmt
}

// prepare prepares s's statements, on s.read and s.write. On an error,
// the statements it did prepare are left in s.all for closeStmts.
func (s *Store) prepare(ctx context.Context) error {
	for _, p := range []struct {
		dst   **sql.Stmt
		db    *sql.DB
		query string
	}{
		{&s.stmts.getConnection, s.read, getConnectionSQL},
		{&s.stmts.countConnections, s.read, countConnectionsSQL},
		{&s.stmts.getAPIKey, s.read, getAPIKeySQL},
		{&s.stmts.listAPIKeys, s.read, listAPIKeysSQL},
		{&s.stmts.listAudit, s.read, listAuditSQL},
		{&s.stmts.listAuditByConnection, s.read, listAuditByConnectionSQL},
		{&s.stmts.getConnectionW, s.write, getConnectionSQL},
		{&s.stmts.createConnection, s.write, createConnectionSQL},
		{&s.stmts.updateConnection, s.write, updateConnectionSQL},
		{&s.stmts.updateLeased, s.write, updateLeasedSQL},
		{&s.stmts.deleteConnection, s.write, deleteConnectionSQL},
		{&s.stmts.deleteIf, s.write, deleteConnectionIfSQL},
		{&s.stmts.acquireLease, s.write, acquireLeaseSQL},
		{&s.stmts.renewLease, s.write, renewLeaseSQL},
		{&s.stmts.releaseLease, s.write, releaseLeaseSQL},
		{&s.stmts.createSession, s.write, createSessionSQL},
		{&s.stmts.takeSession, s.write, takeSessionSQL},
		{&s.stmts.deleteExpired, s.write, deleteExpiredSessionsSQL},
		{&s.stmts.createAPIKey, s.write, createAPIKeySQL},
		{&s.stmts.revokeAPIKey, s.write, revokeAPIKeySQL},
		{&s.stmts.appendAudit, s.write, appendAuditSQL},
	} {
		st, err := p.db.PrepareContext(ctx, p.query)
		if err != nil {
			first, _, _ := strings.Cut(p.query, "\n")
			return fmt.Errorf("prepare %q: %w", first, mapErr(err))
		}
		*p.dst = st
		s.stmts.all = append(s.stmts.all, st)
	}
	return nil
}

// closeStmts closes the prepared statements. Closing one twice is a no-op.
func (s *Store) closeStmts() error {
	var errs []error
	for _, st := range s.stmts.all {
		errs = append(errs, st.Close())
	}
	return errors.Join(errs...)
}
