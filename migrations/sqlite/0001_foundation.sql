-- Foundation: tenants, catalogue, customers, subscriptions, usage, the event outbox and
-- idempotency keys. Every table carries tenant_id and leads its primary key with it, so the
-- data can later be distributed by tenant.

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('test', 'live')),
    api_key_hash TEXT NOT NULL UNIQUE,
    api_key_last4 TEXT NOT NULL,
    -- Test-mode tenants run on a frozen clock that only moves by /v1/test_clock/advance.
    clock_time TEXT,
    invoice_prefix TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE customers (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    external_id TEXT,
    name TEXT NOT NULL,
    email TEXT,
    currency TEXT,
    locale TEXT,
    address TEXT,
    tax_ids TEXT NOT NULL,
    tax_exempt TEXT NOT NULL,
    pm_provider TEXT,
    pm_token TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX customers_external_id ON customers (tenant_id, external_id);

CREATE TABLE prices (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    product TEXT NOT NULL,
    currency TEXT NOT NULL,
    billing_scheme TEXT NOT NULL,
    unit_amount_decimal TEXT,
    tiers_mode TEXT,
    tiers TEXT,
    interval_unit TEXT,
    interval_count BIGINT,
    usage_type TEXT,
    tax_behavior TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE tax_rates (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    percentage TEXT NOT NULL,
    inclusive BOOLEAN NOT NULL,
    country TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE coupons (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    name TEXT,
    percent_off TEXT,
    amount_off BIGINT,
    currency TEXT,
    duration TEXT NOT NULL,
    duration_in_months BIGINT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE subscriptions (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    status TEXT NOT NULL,
    currency TEXT NOT NULL,
    interval_unit TEXT NOT NULL,
    interval_count BIGINT NOT NULL,
    collection_method TEXT NOT NULL,
    days_until_due BIGINT,
    coupon_id TEXT,
    default_tax_rates TEXT NOT NULL,
    proration_behavior TEXT NOT NULL,
    start_date TEXT NOT NULL,
    trial_end TEXT,
    billing_cycle_anchor TEXT NOT NULL,
    current_period_start TEXT NOT NULL,
    current_period_end TEXT NOT NULL,
    cancel_at_period_end BOOLEAN NOT NULL,
    canceled_at TEXT,
    ended_at TEXT,
    paused_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id)
);
CREATE INDEX subscriptions_customer ON subscriptions (tenant_id, customer_id);
CREATE INDEX subscriptions_status ON subscriptions (tenant_id, status);

CREATE TABLE subscription_items (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    price_id TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity >= 0),
    position BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    deleted_at TEXT,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, subscription_id) REFERENCES subscriptions (tenant_id, id),
    FOREIGN KEY (tenant_id, price_id) REFERENCES prices (tenant_id, id)
);
CREATE INDEX subscription_items_subscription ON subscription_items (tenant_id, subscription_id);

-- A PATCH of items, recorded with the items before and after so billing can prorate it.
CREATE TABLE subscription_changes (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    effective_at TEXT NOT NULL,
    proration_behavior TEXT NOT NULL,
    items_before TEXT NOT NULL,
    items_after TEXT NOT NULL,
    period_start TEXT NOT NULL,
    period_end TEXT NOT NULL,
    invoice_id TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, subscription_id) REFERENCES subscriptions (tenant_id, id)
);
CREATE INDEX subscription_changes_pending ON subscription_changes (tenant_id, subscription_id, invoice_id);

CREATE TABLE usage_records (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    subscription_item_id TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity >= 0),
    action TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, subscription_item_id) REFERENCES subscription_items (tenant_id, id)
);
CREATE INDEX usage_records_item_time ON usage_records (tenant_id, subscription_item_id, recorded_at);

-- The transactional outbox: written in the same transaction as the change it announces.
CREATE TABLE events (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX events_type ON events (tenant_id, type, id);

-- Idempotency-Key records: a row is claimed (status NULL) before the request runs, so a
-- concurrent duplicate finds it and gets 409 instead of doing the work twice.
CREATE TABLE idempotency_keys (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status_code BIGINT,
    response_body TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
