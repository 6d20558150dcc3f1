-- What `open()` needs to migrate the schema (the steps are in migrations/). Each step runs in its own transaction
-- under a transaction-scoped advisory lock and reads the version first, so gateways that start together apply each
-- step once; a store whose schema is current takes no table lock at all.

-- name: schema_lock
SELECT pg_advisory_xact_lock(hashtext('chroma_ha.schema'))

-- name: schema_exists
SELECT to_regclass('log_meta') IS NOT NULL

-- name: schema_version
SELECT value FROM log_meta WHERE key = 'schema_version'

-- name: set_schema_version
INSERT INTO log_meta (key, value) VALUES ('schema_version', %s)
ON CONFLICT (key) DO UPDATE SET value = excluded.value
