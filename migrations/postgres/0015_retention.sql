-- Retention: an erased customer's issued invoices and credit notes are kept as issued for the
-- tenant's retention period (NULL: 10 years), then their stored PDFs are purged. The rows
-- (numbers, amounts, no personal data of their own) and the documents' hashes stay.
ALTER TABLE tenants ADD COLUMN retention_years BIGINT;
ALTER TABLE invoices ADD COLUMN document_purged_at TIMESTAMPTZ;
ALTER TABLE credit_notes ADD COLUMN document_purged_at TIMESTAMPTZ;
