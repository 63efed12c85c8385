-- Every change made through the API is attributable: the request that made it (the
-- `Request-Id` response header) and the API key it came with, on each event it wrote.
ALTER TABLE events ADD COLUMN request_id TEXT;
ALTER TABLE events ADD COLUMN api_key TEXT;
CREATE INDEX events_object ON events (tenant_id, object_id, id);
CREATE INDEX events_created ON events (tenant_id, created_at, id);
