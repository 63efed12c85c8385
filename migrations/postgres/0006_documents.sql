-- Documents: the seller on each tenant's documents, and the PDF of every finalized invoice
-- and credit note. A NULL pdf_sha256 is the rendering queue: the worker renders what is
-- finalized and not yet rendered, so a crash between finalizing and rendering loses nothing.
CREATE TABLE invoice_settings (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants (id),
    settings TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

ALTER TABLE invoices ADD COLUMN pdf_sha256 TEXT;
-- The unguessable token of the hosted invoice page (/i/{token}), set with the first render.
ALTER TABLE invoices ADD COLUMN hosted_token TEXT;
CREATE UNIQUE INDEX invoices_hosted_token ON invoices (hosted_token) WHERE hosted_token IS NOT NULL;
CREATE INDEX invoices_pdf_pending ON invoices (tenant_id, id) WHERE number IS NOT NULL AND pdf_sha256 IS NULL;

ALTER TABLE credit_notes ADD COLUMN pdf_sha256 TEXT;
CREATE INDEX credit_notes_pdf_pending ON credit_notes (tenant_id, id) WHERE pdf_sha256 IS NULL;
