-- 0002: API keys (hashed), the audit log, and the index of the retention
-- query. Times are unix microseconds UTC, 0 for none, as in 0001.

CREATE TABLE api_keys (
	id         TEXT    NOT NULL PRIMARY KEY,
	name       TEXT    NOT NULL,
	scopes     TEXT    NOT NULL,        -- JSON array, never empty
	hash       BLOB    NOT NULL,        -- SHA-256 of the key; never the key
	created_at INTEGER NOT NULL,
	revoked_at INTEGER NOT NULL         -- 0 while the key is valid
) STRICT;

-- ListAPIKeys: oldest first, ties by id.
CREATE INDEX api_keys_created_at ON api_keys (created_at, id);

-- AUTOINCREMENT: an id is never handed out twice, even after the newest
-- entry is deleted, so an audit id names one entry for good and a Before
-- cursor stays valid.
CREATE TABLE audit (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	time          INTEGER NOT NULL,
	actor         TEXT    NOT NULL,
	action        TEXT    NOT NULL,
	connection_id TEXT    NOT NULL,     -- '' for none
	detail        TEXT    NOT NULL
) STRICT;

-- ListAudit of one connection, newest first.
CREATE INDEX audit_connection_id ON audit (connection_id, id);

-- The retention query: a state (disconnected, reconnect_required) whose
-- record has not been written since a cutoff (UpdatedBefore).
CREATE INDEX connections_state_updated_at ON connections (state, updated_at);
