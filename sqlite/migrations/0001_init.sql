-- 0001: connections (with their sealed token set, pending marker and refresh
-- lease) and connect sessions. Times are unix microseconds UTC, 0 for none.

CREATE TABLE connections (
	id                TEXT    NOT NULL PRIMARY KEY,
	provider          TEXT    NOT NULL,
	subject           TEXT    NOT NULL,
	scopes            TEXT,             -- JSON array; NULL for none
	state             TEXT    NOT NULL,
	degraded_since    INTEGER NOT NULL,
	generation        INTEGER NOT NULL,
	created_at        INTEGER NOT NULL,
	updated_at        INTEGER NOT NULL,
	last_refresh_at   INTEGER NOT NULL,
	next_refresh_at   INTEGER NOT NULL,
	last_error        TEXT    NOT NULL,
	metadata          TEXT,             -- JSON object; NULL for none

	access_token      BLOB,             -- sealed; NULL for none
	access_token_key  TEXT    NOT NULL,
	refresh_token     BLOB,             -- sealed; NULL for none
	refresh_token_key TEXT    NOT NULL,
	token_expiry      INTEGER NOT NULL,
	token_expires_at  INTEGER NOT NULL,
	token_scope       TEXT    NOT NULL,

	pending_since     INTEGER NOT NULL,
	pending_owner     TEXT    NOT NULL,
	pending_unknown   INTEGER NOT NULL,

	-- The lease: written only by AcquireLease, RenewLease and ReleaseLease.
	-- lease_fence only ever grows, even across releases.
	lease_owner       TEXT    NOT NULL DEFAULT '',
	lease_fence       INTEGER NOT NULL DEFAULT 0,
	lease_expires_at  INTEGER NOT NULL DEFAULT 0,

	-- The last token change, for the keep-alive query (LastRefreshBefore).
	last_change_at    INTEGER NOT NULL AS (
		CASE WHEN last_refresh_at = 0 THEN created_at ELSE last_refresh_at END
	) VIRTUAL
) STRICT;

CREATE INDEX connections_state ON connections (state, id);
CREATE INDEX connections_last_change_at ON connections (last_change_at);
CREATE INDEX connections_next_refresh_at ON connections (next_refresh_at)
	WHERE next_refresh_at <> 0;

CREATE TABLE sessions (
	state_hash    BLOB    NOT NULL PRIMARY KEY,
	connection_id TEXT    NOT NULL,
	return_url    TEXT    NOT NULL,
	verifier      BLOB,                 -- sealed; NULL for none
	verifier_key  TEXT    NOT NULL,
	created_at    INTEGER NOT NULL,
	expires_at    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX sessions_expires_at ON sessions (expires_at);
