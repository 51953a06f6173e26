-- 0003: the connection event log and the webhook outbox (endpoints and
-- deliveries). Times are unix microseconds UTC, 0 for none, as in 0001.

-- AUTOINCREMENT: a seq is never handed out twice, so it stays a valid
-- cursor after the newest event is pruned.
CREATE TABLE events (
	seq           INTEGER PRIMARY KEY AUTOINCREMENT,
	id            TEXT    NOT NULL UNIQUE, -- evt_...; the webhook-id
	type          TEXT    NOT NULL,
	connection_id TEXT    NOT NULL,        -- '' for none (a test event)
	subject       TEXT    NOT NULL,
	reason        TEXT    NOT NULL,
	time          INTEGER NOT NULL,
	generation    INTEGER NOT NULL
) STRICT;

-- One connection's events by seq (the timeline).
CREATE INDEX events_connection_id ON events (connection_id, seq);
-- The newest event of a type for a connection (LatestEvents, and the
-- newest state event PruneEvents keeps): one index probe each, however
-- many refreshes came after.
CREATE INDEX events_connection_type ON events (connection_id, type, seq);
-- PruneEvents.
CREATE INDEX events_time ON events (time);

CREATE TABLE webhook_endpoints (
	id          TEXT    NOT NULL PRIMARY KEY,
	url         TEXT    NOT NULL,
	secret      BLOB    NOT NULL,        -- sealed whsec_...; never in plaintext
	secret_key  TEXT    NOT NULL,
	created_at  INTEGER NOT NULL,
	disabled_at INTEGER NOT NULL         -- 0 while it receives
) STRICT;

CREATE INDEX webhook_endpoints_created_at ON webhook_endpoints (created_at, id);

CREATE TABLE webhook_deliveries (
	id               INTEGER PRIMARY KEY AUTOINCREMENT,
	event_id         TEXT    NOT NULL REFERENCES events (id) ON DELETE CASCADE,
	endpoint_id      TEXT    NOT NULL REFERENCES webhook_endpoints (id),
	state            TEXT    NOT NULL,   -- pending, delivered, failed
	attempts         INTEGER NOT NULL,
	created_at       INTEGER NOT NULL,
	next_attempt_at  INTEGER NOT NULL,
	last_attempt_at  INTEGER NOT NULL,
	last_status      INTEGER NOT NULL,
	last_error       TEXT    NOT NULL,
	delivered_at     INTEGER NOT NULL,
	-- The claim: written only by ClaimDeliveries and FinishAttempt.
	-- claim_fence only ever grows.
	claim_owner      TEXT    NOT NULL DEFAULT '',
	claim_fence      INTEGER NOT NULL DEFAULT 0,
	claim_expires_at INTEGER NOT NULL DEFAULT 0,
	UNIQUE (event_id, endpoint_id)
) STRICT;

-- ClaimDeliveries: the due pending deliveries, oldest due first.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, id)
	WHERE state = 'pending';
-- ListDeliveries of one endpoint, newest first; DisableWebhookEndpoint.
CREATE INDEX webhook_deliveries_endpoint_id ON webhook_deliveries (endpoint_id, id);

-- The event reconciler's incremental pass lists the connections written since
-- its last pass (ConnectionFilter.UpdatedAfter): a range of this index.
CREATE INDEX connections_updated_at ON connections (updated_at);
