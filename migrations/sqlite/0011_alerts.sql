-- Alerts: a condition crossing its threshold (firing until it clears, then resolved) or a
-- happening that needs a person (fired). At most one firing alert per kind and subject, so
-- each fires once while its condition holds.
CREATE TABLE alerts (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL,
    fired_at TEXT NOT NULL,
    resolved_at TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX alerts_firing ON alerts (tenant_id, kind, subject) WHERE status = 'firing';
CREATE INDEX alerts_recent ON alerts (tenant_id, id);
