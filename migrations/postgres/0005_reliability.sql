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
