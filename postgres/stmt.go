package postgres

import (
	"fmt"
	"strings"
)

// The statements the store runs, but for ListConnections (whose WHERE
// clause depends on the filter). pgx prepares each on first use on a
// connection and reuses it from then on (its statement cache, the default
// query mode), so a refresh's statements are parsed and planned once per
// connection, not once per call.
//
// The lease clock is clock_timestamp(), the server's clock when it is
// called, never now() (the transaction's start). The name is not
// schema-qualified, so that a test can put its own clock first on the
// search_path.
var (
	getConnectionSQL = `SELECT ` + connectionColumns + ` FROM connections WHERE id = $1`
	// getConnectionNowSQL reads the record and the lease clock.
	getConnectionNowSQL = `SELECT ` + connectionColumns + `, clock_timestamp() FROM connections WHERE id = $1`

	createConnectionSQL = `INSERT INTO connections (id, ` + strings.Join(writeColumns, ", ") +
		`) VALUES (` + placeholders(1, 1+len(writeColumns)) + `)`

	// updateConnectionSQL takes recordArgs, then the id and the expected
	// generation.
	updateConnectionSQL = `UPDATE connections SET ` + assignments(writeColumns) +
		fmt.Sprintf(` WHERE id = $%d AND generation = $%d`, len(writeColumns)+1, len(writeColumns)+2)
	// updateLeasedSQL takes updateConnectionSQL's arguments, then the
	// lease's owner and fence.
	updateLeasedSQL = updateConnectionSQL + fmt.Sprintf(
		` AND lease_owner <> '' AND lease_owner = $%d AND lease_fence = $%d AND lease_expires_at > `,
		len(writeColumns)+3, len(writeColumns)+4) + lockedNow(fmt.Sprintf("$%d", len(writeColumns)+1))

	// renewLeaseSQL takes the id, the lease's owner and fence, and the ttl
	// in microseconds.
	renewLeaseSQL = `UPDATE connections
		SET lease_expires_at = clock_timestamp() + $4::bigint * interval '1 microsecond'
		WHERE id = $1 AND lease_owner <> '' AND lease_owner = $2 AND lease_fence = $3
			AND lease_expires_at > ` + lockedNow("$1") + `
		RETURNING lease_owner, lease_fence, lease_expires_at`

	// releaseLeaseSQL takes the id and the lease's owner and fence. It
	// keeps the fence.
	releaseLeaseSQL = `UPDATE connections SET lease_owner = '', lease_expires_at = '-infinity'
		WHERE id = $1 AND lease_owner <> '' AND lease_owner = $2 AND lease_fence = $3
			AND lease_expires_at > ` + lockedNow("$1")
)

// lockedNow returns the lease clock of the statements that write as the
// lease's holder (UpdateLeased, RenewLease, ReleaseLease): clock_timestamp()
// read once the connection whose id is the parameter id is locked.
//
// A plain "lease_expires_at > clock_timestamp()" in an UPDATE's WHERE
// clause is evaluated when the row is first examined, before the UPDATE
// waits for another transaction's lock on it. If that transaction changed
// the row, PostgreSQL evaluates the clause again after the wait
// (EvalPlanQual), but if it only locked the row (SELECT ... FOR UPDATE, or
// a write that rolled back), the UPDATE goes ahead on the verdict from
// before the wait, and a holder whose lease ran out while it queued would
// still write. The subquery takes the row lock itself (an uncorrelated
// subquery runs once, when the clause first needs it) and reads the clock
// after any wait. The subquery is not flattened into its parent (it has
// FOR UPDATE), so the clock is read above the lock, not in the scan below
// it. The UPDATE then finds the row locked by its own transaction.
func lockedNow(id string) string {
	return `(SELECT clock_timestamp() FROM (SELECT 1 FROM connections WHERE id = ` + id + ` FOR UPDATE) AS locked)`
}

const (
	// explainSQL reads what a failed conditional write needs to say why:
	// whether the connection exists, its generation and its lease.
	explainSQL = `SELECT generation, lease_owner, lease_fence, lease_expires_at
		FROM connections WHERE id = $1`

	deleteConnectionSQL = `DELETE FROM connections WHERE id = $1`
	// deleteConnectionIfSQL takes the id and the expected generation.
	deleteConnectionIfSQL = deleteConnectionSQL + ` AND generation = $2`

	countConnectionsSQL = `SELECT state, count(*) FROM connections GROUP BY state`

	// acquireLeaseSQL takes the id, the owner and the ttl in microseconds.
	// The fence grows with every acquisition, a re-acquisition by the holder
	// included.
	acquireLeaseSQL = `UPDATE connections
		SET lease_owner = $2, lease_fence = lease_fence + 1,
			lease_expires_at = clock_timestamp() + $3::bigint * interval '1 microsecond'
		WHERE id = $1 AND (lease_owner = '' OR lease_owner = $2 OR lease_expires_at <= clock_timestamp())
		RETURNING ` + connectionColumns

	createSessionSQL = `INSERT INTO sessions
		(state_hash, connection_id, return_url, verifier, verifier_key, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`

	takeSessionSQL = `DELETE FROM sessions WHERE state_hash = $1
		RETURNING state_hash, connection_id, return_url, verifier, verifier_key, created_at, expires_at`

	deleteExpiredSessionsSQL = `DELETE FROM sessions WHERE expires_at < $1`

	createAPIKeySQL = `INSERT INTO api_keys (id, name, scopes, hash, created_at, revoked_at)
		VALUES ($1, $2, $3, $4, $5, $6)`
	getAPIKeySQL   = `SELECT ` + apiKeyColumns + ` FROM api_keys WHERE id = $1`
	listAPIKeysSQL = `SELECT ` + apiKeyColumns + ` FROM api_keys ORDER BY created_at, id`
	// revokeAPIKeySQL matches a revoked key too (keeping its first
	// revocation time), so that "no row" means only "no such key".
	revokeAPIKeySQL = `UPDATE api_keys
		SET revoked_at = CASE WHEN revoked_at = '-infinity' THEN $2 ELSE revoked_at END
		WHERE id = $1`

	appendAuditSQL = `INSERT INTO audit (time, actor, action, connection_id, detail)
		VALUES ($1, $2, $3, $4, $5) RETURNING id`
	// listAuditSQL takes the highest id to return and the limit;
	// listAuditByConnectionSQL takes the connection id first.
	listAuditSQL = `SELECT ` + auditColumns + ` FROM audit
		WHERE id <= $1 ORDER BY id DESC LIMIT $2`
	listAuditByConnectionSQL = `SELECT ` + auditColumns + ` FROM audit
		WHERE connection_id = $1 AND id <= $2 ORDER BY id DESC LIMIT $3`
)

// placeholders returns "$from, ..., $to".
func placeholders(from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		if i > from {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", i)
	}
	return b.String()
}

// assignments returns "col1 = $1, col2 = $2, ..." for cols.
func assignments(cols []string) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = fmt.Sprintf("%s = $%d", c, i+1)
	}
	return strings.Join(parts, ", ")
}
