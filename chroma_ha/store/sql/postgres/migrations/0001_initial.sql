-- Schema version 1, as every gateway before numbered migrations created it: do not change a shipped migration.
CREATE TABLE IF NOT EXISTS log_meta (key text PRIMARY KEY, value bigint NOT NULL);
INSERT INTO log_meta (key, value) VALUES ('schema_version', 1) ON CONFLICT (key) DO NOTHING;
-- The one counter row: `append` updates it in its transaction, so the row lock orders commits by seq.
CREATE TABLE IF NOT EXISTS log_head (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq bigint NOT NULL
);
INSERT INTO log_head (id, seq) VALUES (true, 0) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS entries (
    seq bigint PRIMARY KEY,
    created_at double precision NOT NULL,
    op text NOT NULL,
    method text NOT NULL,
    path text NOT NULL,
    query text NOT NULL,
    headers json NOT NULL,
    body bytea NOT NULL,
    collection_id text,
    scope text NOT NULL,
    extra json NOT NULL,
    outcome_status integer,
    outcome_body bytea,
    outcome_instance text
);
CREATE INDEX IF NOT EXISTS entries_by_created_at ON entries (created_at);
CREATE TABLE IF NOT EXISTS cursors (
    instance text PRIMARY KEY,
    seq bigint NOT NULL,
    incarnation text NOT NULL,
    updated_at double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS collection_ids (
    instance text NOT NULL,
    canonical_id text NOT NULL,
    instance_id text NOT NULL,
    PRIMARY KEY (instance, canonical_id)
);
CREATE INDEX IF NOT EXISTS collection_ids_by_instance_id ON collection_ids (instance, instance_id);
CREATE TABLE IF NOT EXISTS intents (instance text NOT NULL, seq bigint NOT NULL, PRIMARY KEY (instance, seq));
CREATE TABLE IF NOT EXISTS divergences (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq bigint NOT NULL,
    instance text NOT NULL,
    status integer NOT NULL,
    body bytea NOT NULL,
    expected_status integer NOT NULL,
    created_at double precision NOT NULL,
    resolved_at double precision
);
-- tenants and tenant/databases named by pruned entries: tools that walk every scope still find them
CREATE TABLE IF NOT EXISTS known_scopes (scope text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS leases (
    instance text PRIMARY KEY,
    owner text NOT NULL,
    expires_at double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS recommendations (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at double precision NOT NULL,
    kind text NOT NULL,
    reason text NOT NULL,
    details json NOT NULL
);
