-- Each tenant's own provider account: its keys sealed under the master key (see src/vault.rs),
-- never returned; inbound webhooks for it arrive at /webhooks/stripe/{webhook_id} and are
-- verified with its own signing secret only.
CREATE TABLE provider_accounts (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    provider TEXT NOT NULL CHECK (provider IN ('stripe')),
    mode TEXT NOT NULL CHECK (mode IN ('test', 'live')),
    account_id TEXT,
    secret_key TEXT NOT NULL,
    secret_key_last4 TEXT NOT NULL,
    webhook_secret TEXT,
    webhook_id TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, provider)
);
-- The lookup of an inbound webhook's endpoint: the one query that does not know its tenant.
CREATE UNIQUE INDEX provider_accounts_webhook ON provider_accounts (webhook_id);
