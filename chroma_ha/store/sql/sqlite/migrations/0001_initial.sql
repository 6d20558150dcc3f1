-- Schema version 1, as every gateway before numbered migrations created it: do not change a shipped migration.
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    created_at REAL NOT NULL,
    op TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    query TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    collection_id TEXT,
    scope TEXT NOT NULL,
    extra TEXT NOT NULL,
    outcome_status INTEGER,
    outcome_body BLOB,
    outcome_instance TEXT
);
CREATE TABLE IF NOT EXISTS log_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO log_meta (key, value) VALUES ('schema_version', 1), ('pruned_upto', 0);
CREATE TABLE IF NOT EXISTS cursors (
    instance TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    incarnation TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS collection_ids (
    instance TEXT NOT NULL,
    canonical_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    PRIMARY KEY (instance, canonical_id)
);
CREATE INDEX IF NOT EXISTS collection_ids_by_instance_id ON collection_ids (instance, instance_id);
CREATE TABLE IF NOT EXISTS intents (instance TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (instance, seq));
CREATE TABLE IF NOT EXISTS divergences (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER NOT NULL,
    instance TEXT NOT NULL,
    status INTEGER NOT NULL,
    body BLOB NOT NULL,
    expected_status INTEGER NOT NULL,
    created_at REAL NOT NULL,
    resolved_at REAL
);
-- tenants and tenant/databases named by pruned entries: tools that walk every scope still find them
CREATE TABLE IF NOT EXISTS known_scopes (scope TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS leases (instance TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS recommendations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    details TEXT NOT NULL
);
