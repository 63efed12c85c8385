-- A document is announced by e-mail (invoice finalized, credit note issued) when it is first
-- rendered. Invoices and credit notes that were finalized before the outbox existed and are
-- still unrendered when this migration runs are history, not news: they are rendered without
-- an e-mail, so an upgrade never mails customers every invoice they ever had (paid, void or
-- not). New rows default to being announced.
ALTER TABLE invoices ADD COLUMN announce_pdf BOOLEAN NOT NULL DEFAULT TRUE;
UPDATE invoices SET announce_pdf = FALSE WHERE number IS NOT NULL AND pdf_sha256 IS NULL;
ALTER TABLE credit_notes ADD COLUMN announce_pdf BOOLEAN NOT NULL DEFAULT TRUE;
UPDATE credit_notes SET announce_pdf = FALSE WHERE pdf_sha256 IS NULL;
