-- Payments: one row per charge attempt, committed (with its idempotency key) before the
-- provider is called; the invoice fields dunning needs.

CREATE TABLE payment_attempts (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    invoice_id TEXT NOT NULL,
    attempt_number BIGINT NOT NULL,
    idempotency_key TEXT NOT NULL,
    provider TEXT NOT NULL,
    payment_method TEXT,
    status TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    provider_ref TEXT,
    decline_code TEXT,
    failure_message TEXT,
    created_at TEXT NOT NULL,
    completed_at TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX payment_attempts_key ON payment_attempts (tenant_id, idempotency_key);
-- At most one attempt in flight per invoice.
CREATE UNIQUE INDEX payment_attempts_in_flight ON payment_attempts (tenant_id, invoice_id) WHERE status IN ('pending', 'unknown');
CREATE INDEX payment_attempts_invoice ON payment_attempts (tenant_id, invoice_id, attempt_number);

ALTER TABLE invoices ADD COLUMN first_failed_at TEXT;
ALTER TABLE invoices ADD COLUMN awaiting_payment_method BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX invoices_collect ON invoices (tenant_id, next_payment_attempt, id);
