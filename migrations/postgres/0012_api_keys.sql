-- API keys: several per tenant, each full or read-only, revocable, and rolled with an overlap
-- (the old key expires at a set time). Only a key's SHA-256 is stored; its id is `key_` and
-- the first 16 hex digits of that hash, the id events have always carried as their audit key.
-- Every tenant's existing key becomes its first row. `tenants.api_key_hash` and
-- `api_key_last4` stay as the record of the key issued at creation (SQLite cannot drop a
-- UNIQUE column); authentication reads this table only.
CREATE TABLE api_keys (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('full', 'read_only')),
    key_hash TEXT NOT NULL,
    prefix TEXT NOT NULL,
    last4 TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, id)
);
-- The lookup of a bearer key: the one query that does not know its tenant yet.
CREATE UNIQUE INDEX api_keys_hash ON api_keys (key_hash);

INSERT INTO api_keys (tenant_id, id, name, scope, key_hash, prefix, last4, created_at)
SELECT id, 'key_' || substr(api_key_hash, 1, 16), 'default', 'full', api_key_hash,
       'sk_' || mode || '_', api_key_last4, created_at
FROM tenants;
