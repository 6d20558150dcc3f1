-- No client secret at rest: entries logged before credentials were kept out of the log lose their client
-- `authorization` and `x-chroma-token` headers (the instance client never sent them again anyway). The old row
-- versions are dead tuples from here on, reclaimed by (auto)vacuum.
UPDATE entries
SET headers = (headers::jsonb - 'authorization' - 'x-chroma-token')::json
WHERE headers::jsonb ?| array['authorization', 'x-chroma-token'];
