-- Keeping in sync with payment providers: the provider customer of a payment method (Stripe
-- charges need `cus_…` with `pm_…`), refunds and credit notes, inbound provider events
-- deduplicated by id, and per-tenant dunning settings.

ALTER TABLE customers ADD COLUMN pm_customer TEXT;
ALTER TABLE payment_attempts ADD COLUMN provider_customer TEXT;
ALTER TABLE payment_attempts ADD COLUMN amount_refunded BIGINT NOT NULL DEFAULT 0;
-- Wall-clock time the attempt was first sent (test clocks move faster than providers forget
-- idempotency keys).
ALTER TABLE payment_attempts ADD COLUMN sent_at TEXT;
CREATE INDEX payment_attempts_provider_ref ON payment_attempts (tenant_id, provider_ref);
CREATE INDEX payment_attempts_created ON payment_attempts (tenant_id, created_at, id);

-- Credit notes lower what is due (open invoices) or give money back (paid ones).
ALTER TABLE invoices ADD COLUMN amount_credited BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD COLUMN amount_refunded BIGINT NOT NULL DEFAULT 0;

-- NULL: the installation's [dunning] config applies.
ALTER TABLE tenants ADD COLUMN dunning_retry_days TEXT;
ALTER TABLE tenants ADD COLUMN dunning_final_action TEXT;

CREATE TABLE credit_notes (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    number TEXT NOT NULL,
    invoice_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount BIGINT NOT NULL,
    refund_amount BIGINT NOT NULL,
    out_of_band_amount BIGINT NOT NULL,
    reason TEXT NOT NULL,
    memo TEXT,
    lines TEXT NOT NULL,
    payment_id TEXT,
    refund_key TEXT,
    refund_status TEXT NOT NULL,
    refund_ref TEXT,
    refund_failure TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX credit_notes_number ON credit_notes (tenant_id, number);
CREATE INDEX credit_notes_invoice ON credit_notes (tenant_id, invoice_id);
CREATE INDEX credit_notes_refunding ON credit_notes (tenant_id, refund_status, id);

-- Inbound provider events, by the provider's id: a redelivery finds its row and changes nothing.
CREATE TABLE provider_events (
    provider TEXT NOT NULL,
    event_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    tenant_id TEXT,
    outcome TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (provider, event_id)
);
