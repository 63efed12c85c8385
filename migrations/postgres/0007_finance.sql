-- Finance exports read invoices by finalization time and credit notes by issue time, a batch
-- at a time from a (time, id) cursor: these indexes keep each batch a range read.
CREATE INDEX invoices_finalized ON invoices (tenant_id, finalized_at, id) WHERE finalized_at IS NOT NULL;
CREATE INDEX credit_notes_created ON credit_notes (tenant_id, created_at, id);
