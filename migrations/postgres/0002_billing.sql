-- Billing: invoices with their lines, gapless numbering, and what the billing run needs on
-- subscriptions.

ALTER TABLE subscriptions ADD COLUMN next_billing_at TIMESTAMPTZ;
ALTER TABLE subscriptions ADD COLUMN discount_invoices BIGINT NOT NULL DEFAULT 0;
CREATE INDEX subscriptions_due ON subscriptions (tenant_id, next_billing_at, id);

CREATE TABLE invoices (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    number TEXT,
    customer_id TEXT NOT NULL,
    subscription_id TEXT,
    status TEXT NOT NULL,
    billing_reason TEXT NOT NULL,
    collection_method TEXT NOT NULL,
    currency TEXT NOT NULL,
    period_start TIMESTAMPTZ NOT NULL,
    period_end TIMESTAMPTZ NOT NULL,
    subtotal BIGINT NOT NULL,
    discount BIGINT NOT NULL,
    tax BIGINT NOT NULL,
    total BIGINT NOT NULL,
    total_tax_amounts TEXT NOT NULL,
    tax_exempt TEXT NOT NULL,
    amount_paid BIGINT NOT NULL,
    amount_due BIGINT NOT NULL,
    attempt_count BIGINT NOT NULL,
    next_payment_attempt TIMESTAMPTZ,
    due_date TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    finalized_at TIMESTAMPTZ,
    paid_at TIMESTAMPTZ,
    voided_at TIMESTAMPTZ,
    marked_uncollectible_at TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, id)
);
-- Invariant 1: a subscription period is invoiced at most once, whoever runs the cycle.
CREATE UNIQUE INDEX invoices_one_per_period ON invoices (tenant_id, subscription_id, period_start)
    WHERE billing_reason IN ('subscription_create', 'subscription_cycle');
CREATE UNIQUE INDEX invoices_number ON invoices (tenant_id, number);
CREATE INDEX invoices_customer ON invoices (tenant_id, customer_id);
CREATE INDEX invoices_subscription ON invoices (tenant_id, subscription_id);
CREATE INDEX invoices_status ON invoices (tenant_id, status);

CREATE TABLE invoice_lines (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    invoice_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    kind TEXT NOT NULL,
    description TEXT NOT NULL,
    price_id TEXT,
    subscription_item_id TEXT,
    quantity BIGINT NOT NULL,
    unit_amount_decimal TEXT,
    amount BIGINT NOT NULL,
    net_amount BIGINT NOT NULL,
    discount_amount BIGINT NOT NULL,
    period_start TIMESTAMPTZ NOT NULL,
    period_end TIMESTAMPTZ NOT NULL,
    tax_rates TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX invoice_lines_invoice ON invoice_lines (tenant_id, invoice_id, position);

-- One row per tenant, series and year; incremented in the finalizing transaction, so a rolled
-- back batch gives its numbers back and the sequence has no gaps.
CREATE TABLE invoice_sequences (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    prefix TEXT NOT NULL,
    year BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, prefix, year)
);

-- Which scheduler may run: on SQLite one holder at a time.
CREATE TABLE leases (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    holder TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
