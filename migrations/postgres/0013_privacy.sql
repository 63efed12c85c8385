-- Erasure (GDPR): an erased customer keeps its row, with its personal data removed, so the
-- invoices and credit notes that tax law keeps still name a customer id.
ALTER TABLE customers ADD COLUMN erased_at TIMESTAMPTZ;
