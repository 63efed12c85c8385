-- Outbound webhooks. An endpoint subscribes to event types; every event written for its
-- tenant adds a delivery row for each enabled endpoint that wants it, in the event's own
-- transaction, so a crash between the commit and the delivery loses nothing. The relay claims
-- due deliveries by compare-and-set and records every attempt.
CREATE TABLE webhook_endpoints (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    url TEXT NOT NULL,
    description TEXT,
    -- JSON array of event types, or ["*"].
    enabled_events TEXT NOT NULL,
    -- whsec_ + base64 of the signing key.
    secret TEXT NOT NULL,
    status TEXT NOT NULL,
    disabled_reason TEXT,
    -- The first failure since the last success (a day of failures disables the endpoint).
    failing_since TEXT,
    created_at TEXT NOT NULL,
    deleted_at TEXT,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE webhook_deliveries (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    last_status_code BIGINT,
    last_error TEXT,
    created_at TEXT NOT NULL,
    delivered_at TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX webhook_deliveries_event ON webhook_deliveries (tenant_id, endpoint_id, event_id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (tenant_id, endpoint_id, id);

-- Each try of a delivery: when, what came back, how long it took.
CREATE TABLE webhook_attempts (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    delivery_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    attempted_at TEXT NOT NULL,
    status_code BIGINT,
    error TEXT,
    duration_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, delivery_id, attempt)
);
