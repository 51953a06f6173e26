-- 0001: the whole schema of the PostgreSQL store, as the SQLite store's 0001
-- and 0002 together: connections (with their sealed token set, pending marker
-- and refresh lease), connect sessions, API keys (hashed) and the audit log.
--
-- Times are timestamptz, written in whole microseconds (PostgreSQL's own
-- precision). The zero time ("none") is '-infinity', never NULL: like
-- SQLite's 0, it sorts before every time, so "before a bound" needs no
-- special case and every time column can be NOT NULL.
--
-- Ids that are listed in order are COLLATE "C": the Store contract orders
-- them by bytes, whatever the database's default collation is.

CREATE TABLE connections (
	id                text COLLATE "C" NOT NULL PRIMARY KEY,
	provider          text        NOT NULL,
	subject           text        NOT NULL,
	scopes            text[],               -- NULL for none
	state             text        NOT NULL,
	degraded_since    timestamptz NOT NULL,
	generation        bigint      NOT NULL,
	created_at        timestamptz NOT NULL,
	updated_at        timestamptz NOT NULL,
	last_refresh_at   timestamptz NOT NULL,
	next_refresh_at   timestamptz NOT NULL,
	last_error        text        NOT NULL,
	metadata          jsonb,                -- an object of strings; NULL for none

	access_token      bytea,                -- sealed; NULL for none
	access_token_key  text        NOT NULL,
	refresh_token     bytea,                -- sealed; NULL for none
	refresh_token_key text        NOT NULL,
	token_expiry      timestamptz NOT NULL,
	token_expires_at  timestamptz NOT NULL,
	token_scope       text        NOT NULL,

	pending_since     timestamptz NOT NULL,
	pending_owner     text        NOT NULL,
	pending_unknown   boolean     NOT NULL,

	-- The lease: written only by AcquireLease, RenewLease and ReleaseLease,
	-- each one conditional UPDATE that reads the database's clock.
	-- lease_fence only ever grows, even across releases.
	lease_owner       text        NOT NULL DEFAULT '',
	lease_fence       bigint      NOT NULL DEFAULT 0,
	lease_expires_at  timestamptz NOT NULL DEFAULT '-infinity',

	-- The last token change, for the keep-alive query (LastRefreshBefore).
	last_change_at    timestamptz GENERATED ALWAYS AS (
		CASE WHEN last_refresh_at = '-infinity' THEN created_at ELSE last_refresh_at END
	) STORED
) WITH (fillfactor = 80); -- room on the page for the lease's updates (HOT: no index changes)

-- State filters and CountConnections (an index-only scan), in id order.
CREATE INDEX connections_state ON connections (state, id);
-- The keep-alive query.
CREATE INDEX connections_last_change_at ON connections (last_change_at);
-- The refresh schedule: only connections with a planned refresh.
CREATE INDEX connections_next_refresh_at ON connections (next_refresh_at)
	WHERE next_refresh_at > '-infinity';
-- The retention query: a state whose record has not been written since a
-- cutoff (UpdatedBefore).
CREATE INDEX connections_state_updated_at ON connections (state, updated_at);

CREATE TABLE sessions (
	state_hash    bytea       NOT NULL PRIMARY KEY,
	connection_id text        NOT NULL,
	return_url    text        NOT NULL,
	verifier      bytea,                    -- sealed; NULL for none
	verifier_key  text        NOT NULL,
	created_at    timestamptz NOT NULL,
	expires_at    timestamptz NOT NULL
);

CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE api_keys (
	id         text COLLATE "C" NOT NULL PRIMARY KEY,
	name       text        NOT NULL,
	scopes     text[]      NOT NULL,        -- never empty
	hash       bytea       NOT NULL,        -- SHA-256 of the key; never the key
	created_at timestamptz NOT NULL,
	revoked_at timestamptz NOT NULL         -- '-infinity' while the key is valid
);

-- ListAPIKeys: oldest first, ties by id.
CREATE INDEX api_keys_created_at ON api_keys (created_at, id);

-- An identity: an id is never handed out twice, even after the newest entry
-- is deleted, so an audit id names one entry for good and a Before cursor
-- stays valid.
CREATE TABLE audit (
	id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	time          timestamptz NOT NULL,
	actor         text        NOT NULL,
	action        text        NOT NULL,
	connection_id text COLLATE "C" NOT NULL, -- '' for none
	detail        text        NOT NULL
);

-- ListAudit of one connection, newest first.
CREATE INDEX audit_connection_id ON audit (connection_id, id);
