-- What `open()` needs to migrate the schema (the steps are in migrations/). Each step runs in its own
-- BEGIN IMMEDIATE transaction that reads the version first, so two processes opening one file never apply a step
-- twice.

-- name: log_meta_exists
SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'log_meta'

-- name: schema_version
SELECT value FROM log_meta WHERE key = 'schema_version'

-- name: set_schema_version
INSERT INTO log_meta (key, value) VALUES ('schema_version', ?)
ON CONFLICT (key) DO UPDATE SET value = excluded.value
