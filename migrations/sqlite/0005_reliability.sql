-- Reliability: a subscription whose billing fails is set aside with the reason (never looks
-- healthy, never rolls back its neighbours' batch) until someone retries it.
ALTER TABLE subscriptions ADD COLUMN billing_error TEXT;

-- Idempotency keys: which process runs the request (a key whose holder is gone can be
-- recovered), and which request wrote an event (so a failed request that changed something
-- never frees its key).
ALTER TABLE idempotency_keys ADD COLUMN holder TEXT;
ALTER TABLE events ADD COLUMN request_key TEXT;
CREATE INDEX events_request_key ON events (tenant_id, request_key) WHERE request_key IS NOT NULL;
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- The customer credit balance, per currency (negative: credit the customer holds), and its
-- ledger: every change is a transaction row with the balance it left.
ALTER TABLE invoices ADD COLUMN starting_balance BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD COLUMN ending_balance BIGINT NOT NULL DEFAULT 0;
CREATE TABLE customer_balances (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    customer_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    balance BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, customer_id, currency)
);
CREATE TABLE customer_balance_transactions (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount BIGINT NOT NULL,
    ending_balance BIGINT NOT NULL,
    type TEXT NOT NULL,
    invoice_id TEXT,
    credit_note_id TEXT,
    description TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX customer_balance_transactions_customer ON customer_balance_transactions (tenant_id, customer_id, id);
-- What a credit note put on the customer's balance (paid invoices, credit_to_balance).
ALTER TABLE credit_notes ADD COLUMN credit_amount BIGINT NOT NULL DEFAULT 0;
-- A credit note's tax per rate (JSON, as on the API object).
ALTER TABLE credit_notes ADD COLUMN tax_amounts TEXT NOT NULL DEFAULT '[]';
