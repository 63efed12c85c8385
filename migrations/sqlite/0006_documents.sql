-- Documents: the seller on each tenant's documents, and the PDF of every finalized invoice
-- and credit note. A NULL pdf_sha256 is the rendering queue: the worker renders what is
-- finalized and not yet rendered, so a crash between finalizing and rendering loses nothing.
CREATE TABLE invoice_settings (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants (id),
    settings TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

ALTER TABLE invoices ADD COLUMN pdf_sha256 TEXT;
-- The unguessable token of the hosted invoice page (/i/{token}), set with the first render.
ALTER TABLE invoices ADD COLUMN hosted_token TEXT;
CREATE UNIQUE INDEX invoices_hosted_token ON invoices (hosted_token) WHERE hosted_token IS NOT NULL;
CREATE INDEX invoices_pdf_pending ON invoices (tenant_id, id) WHERE number IS NOT NULL AND pdf_sha256 IS NULL;

ALTER TABLE credit_notes ADD COLUMN pdf_sha256 TEXT;
CREATE INDEX credit_notes_pdf_pending ON credit_notes (tenant_id, id) WHERE pdf_sha256 IS NULL;

-- The e-mail outbox: a row is written in the same transaction as what it announces (a
-- rendered invoice, a payment's outcome), so nothing is announced that did not happen and
-- nothing that happened goes unannounced. Recipients and bodies are composed when sending
-- (no copy of an address here). One row per (kind, what it is about).
CREATE TABLE emails (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    object_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT,
    created_at TEXT NOT NULL,
    sent_at TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX emails_dedupe ON emails (tenant_id, kind, dedupe_key);
CREATE INDEX emails_due ON emails (next_attempt_at) WHERE status = 'pending';
