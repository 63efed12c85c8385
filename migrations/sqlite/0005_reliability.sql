-- Reliability: a subscription whose billing fails is set aside with the reason (never looks
-- healthy, never rolls back its neighbours' batch) until someone retries it.
ALTER TABLE subscriptions ADD COLUMN billing_error TEXT;
