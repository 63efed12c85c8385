-- Usage identifiers: a record sent through POST /v1/usage_records/batch carries the caller's
-- own identifier (an idempotency key per record, like Stripe's meter event identifier or Lago's
-- transaction_id). A resent record with a stored identifier is answered, never counted twice.
ALTER TABLE usage_records ADD COLUMN identifier TEXT;
CREATE UNIQUE INDEX usage_records_identifier ON usage_records (tenant_id, identifier);
