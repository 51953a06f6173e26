-- 0003: the connection event log and the webhook outbox (endpoints and
-- deliveries). Times are timestamptz, '-infinity' for none, as in 0001.

-- seq is an identity: never handed out twice, a valid cursor after the
-- newest event is pruned. Seqs follow the order of appends, not of
-- commits.
CREATE TABLE events (
	seq           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	id            text COLLATE "C" NOT NULL UNIQUE, -- evt_...; the webhook-id
	type          text        NOT NULL,
	connection_id text COLLATE "C" NOT NULL,        -- '' for none (a test event)
	subject       text        NOT NULL,
	reason        text        NOT NULL,
	time          timestamptz NOT NULL,
	generation    bigint      NOT NULL
);

-- One connection's events by seq (the timeline).
CREATE INDEX events_connection_id ON events (connection_id, seq);
-- The newest event of a type for a connection (LatestEvents, and the
-- newest state event PruneEvents keeps): one index probe each, however
-- many refreshes came after.
CREATE INDEX events_connection_type ON events (connection_id, type, seq);
-- PruneEvents.
CREATE INDEX events_time ON events (time);

CREATE TABLE webhook_endpoints (
	id          text COLLATE "C" NOT NULL PRIMARY KEY,
	url         text        NOT NULL,
	secret      bytea       NOT NULL,  -- sealed whsec_...; never in plaintext
	secret_key  text        NOT NULL,
	created_at  timestamptz NOT NULL,
	disabled_at timestamptz NOT NULL   -- '-infinity' while it receives
);

CREATE INDEX webhook_endpoints_created_at ON webhook_endpoints (created_at, id);

CREATE TABLE webhook_deliveries (
	id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	event_id         text COLLATE "C" NOT NULL REFERENCES events (id) ON DELETE CASCADE,
	endpoint_id      text COLLATE "C" NOT NULL REFERENCES webhook_endpoints (id),
	state            text        NOT NULL, -- pending, delivered, failed
	attempts         integer     NOT NULL,
	created_at       timestamptz NOT NULL,
	next_attempt_at  timestamptz NOT NULL,
	last_attempt_at  timestamptz NOT NULL,
	last_status      integer     NOT NULL,
	last_error       text        NOT NULL,
	delivered_at     timestamptz NOT NULL,
	-- The claim: written only by ClaimDeliveries and FinishAttempt.
	-- claim_fence only ever grows.
	claim_owner      text        NOT NULL DEFAULT '',
	claim_fence      bigint      NOT NULL DEFAULT 0,
	claim_expires_at timestamptz NOT NULL DEFAULT '-infinity',
	UNIQUE (event_id, endpoint_id)
);

-- ClaimDeliveries: the due pending deliveries, oldest due first.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, id)
	WHERE state = 'pending';
-- ListDeliveries of one endpoint, newest first; DisableWebhookEndpoint.
CREATE INDEX webhook_deliveries_endpoint_id ON webhook_deliveries (endpoint_id, id);

-- The event reconciler's incremental pass lists the connections written since
-- its last pass (ConnectionFilter.UpdatedAfter): a range of this index.
CREATE INDEX connections_updated_at ON connections (updated_at);
