-- name: append_entry
INSERT INTO entries (seq, created_at, op, method, path, query, headers, body, collection_id, scope, extra, author)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- name: head
SELECT COALESCE(MAX(seq), (SELECT value FROM log_meta WHERE key = 'pruned_upto')) FROM entries

-- name: oldest_seq
SELECT COALESCE(MIN(seq), (SELECT value FROM log_meta WHERE key = 'pruned_upto') + 1) FROM entries

-- name: read_after
SELECT seq, created_at, op, method, path, query, headers, body, collection_id, scope, extra,
       outcome_status, outcome_body, outcome_instance, author
FROM entries WHERE seq > ? ORDER BY seq LIMIT ?

-- name: read_after_bounded
-- Sizes first, bodies only of the entries that fit: length() of a BLOB column reads its size from the record header,
-- never the blob itself. An entry is kept while the running sum stays within the bound, the first one always.
WITH page AS (
    SELECT seq, length(body) AS size FROM entries WHERE seq > ? ORDER BY seq LIMIT ?
), fitting AS (
    SELECT seq FROM (
        SELECT seq, SUM(size) OVER (ORDER BY seq) AS running, ROW_NUMBER() OVER (ORDER BY seq) AS n FROM page
    ) WHERE running <= ? OR n = 1
)
SELECT e.seq, e.created_at, e.op, e.method, e.path, e.query, e.headers, e.body, e.collection_id, e.scope, e.extra,
       e.outcome_status, e.outcome_body, e.outcome_instance, e.author
FROM fitting JOIN entries AS e ON e.seq = fitting.seq ORDER BY e.seq

-- name: read_keys_after
-- `extra` is stored as a BLOB of JSON text (the driver binds bytes): json_extract needs it as TEXT.
SELECT seq, created_at, op, collection_id, scope,
       CASE WHEN op = 'create_collection' THEN json_extract(CAST(extra AS TEXT), '$.canonical_id') END
FROM entries WHERE seq > ? ORDER BY seq LIMIT ?

-- name: outcome
SELECT outcome_status, outcome_body, outcome_instance FROM entries WHERE seq = ?

-- name: set_first_outcome
UPDATE entries SET outcome_status = ?, outcome_body = ?, outcome_instance = ?
WHERE seq = ? AND outcome_status IS NULL

-- name: count_since
SELECT COUNT(*) FROM entries WHERE created_at >= ?

-- name: prune
DELETE FROM entries WHERE seq <= ?

-- name: remember_pruned_scopes
INSERT OR IGNORE INTO known_scopes (scope) SELECT DISTINCT scope FROM entries WHERE seq <= ? AND scope != ''

-- name: scopes
SELECT scope FROM known_scopes UNION SELECT DISTINCT scope FROM entries WHERE scope != '' ORDER BY 1

-- name: set_pruned_upto
UPDATE log_meta SET value = MAX(value, ?) WHERE key = 'pruned_upto'

-- name: cursors
SELECT instance, seq, incarnation, updated_at FROM cursors

-- name: upsert_cursor
INSERT INTO cursors (instance, seq, incarnation, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (instance) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at

-- name: set_cursor
INSERT INTO cursors (instance, seq, incarnation, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (instance) DO UPDATE SET seq = excluded.seq, incarnation = excluded.incarnation,
    updated_at = excluded.updated_at

-- name: insert_intent
INSERT OR IGNORE INTO intents (instance, seq) VALUES (?, ?)

-- name: has_intent
SELECT 1 FROM intents WHERE instance = ? AND seq = ?

-- name: delete_intents_upto
DELETE FROM intents WHERE instance = ? AND seq <= ?

-- name: upsert_mapping
INSERT INTO collection_ids (instance, canonical_id, instance_id) VALUES (?, ?, ?)
ON CONFLICT (instance, canonical_id) DO UPDATE SET instance_id = excluded.instance_id

-- name: all_mappings
SELECT instance, canonical_id, instance_id FROM collection_ids

-- name: instance_mappings
SELECT instance, canonical_id, instance_id FROM collection_ids WHERE instance = ?

-- name: catalog_version
SELECT value FROM log_meta WHERE key = 'catalog_version'

-- name: raise_catalog_version
UPDATE log_meta SET value = value + 1 WHERE key = 'catalog_version'

-- name: forget_mappings
DELETE FROM collection_ids WHERE instance = ?

-- name: forget_intents
DELETE FROM intents WHERE instance = ?

-- name: insert_divergence
INSERT INTO divergences (seq, instance, status, body, expected_status, created_at) VALUES (?, ?, ?, ?, ?, ?)

-- name: divergences_open
SELECT id, seq, instance, status, body, expected_status, created_at, resolved_at
FROM divergences WHERE resolved_at IS NULL ORDER BY id

-- name: divergences_all
SELECT id, seq, instance, status, body, expected_status, created_at, resolved_at FROM divergences ORDER BY id

-- name: resolve_divergences
UPDATE divergences SET resolved_at = ? WHERE instance = ? AND resolved_at IS NULL

-- name: take_lease
INSERT INTO leases (instance, owner, expires_at) VALUES (?, ?, ?)
ON CONFLICT (instance) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
WHERE leases.owner = excluded.owner OR leases.expires_at < ?

-- name: lease_owner
SELECT owner FROM leases WHERE instance = ?

-- name: release_lease
DELETE FROM leases WHERE instance = ? AND owner = ?

-- name: insert_recommendation
INSERT INTO recommendations (created_at, kind, reason, details) VALUES (?, ?, ?, ?)

-- name: recommendations
SELECT id, created_at, kind, reason, details FROM recommendations ORDER BY id DESC LIMIT ?

-- name: reset
DELETE FROM entries;
DELETE FROM collection_ids;
DELETE FROM intents;
DELETE FROM divergences;
DELETE FROM known_scopes;
DELETE FROM bootstrap_pages;

-- name: save_bootstrap_page
INSERT INTO bootstrap_pages (instance, page, body) VALUES (?, ?, ?)
ON CONFLICT (instance, page) DO UPDATE SET body = excluded.body

-- name: bootstrap_pages
SELECT page, body FROM bootstrap_pages WHERE instance = ? AND page >= ? ORDER BY page LIMIT ?

-- name: drop_bootstrap
DELETE FROM bootstrap_pages WHERE instance = ?

-- name: claim_alert_firing
-- Alert claims: each statement returns a row only when this claim made the change (see the PostgreSQL dialect).
INSERT INTO alert_claims (key, firing, sent_at, seen_at, owner) VALUES (:key, 1, :now, :now, :owner)
ON CONFLICT (key) DO UPDATE SET firing = 1, sent_at = excluded.sent_at, seen_at = excluded.seen_at,
    owner = excluded.owner
WHERE NOT alert_claims.firing OR alert_claims.seen_at < excluded.seen_at - :stale
RETURNING key

-- name: claim_alert_reminder
UPDATE alert_claims SET sent_at = :now, seen_at = :now, owner = :owner
WHERE key = :key AND firing AND sent_at <= :now - :window
RETURNING key

-- name: claim_alert_resolved
UPDATE alert_claims SET firing = 0, sent_at = :now, owner = :owner WHERE key = :key AND firing
RETURNING key

-- name: claim_alert_event
INSERT INTO alert_claims (key, firing, sent_at, seen_at, owner) VALUES (:key, 0, :now, :now, :owner)
ON CONFLICT (key) DO UPDATE SET sent_at = excluded.sent_at, seen_at = excluded.seen_at, owner = excluded.owner
WHERE alert_claims.sent_at <= excluded.sent_at - :window
RETURNING key

-- name: touch_alert
UPDATE alert_claims SET seen_at = ? WHERE key = ? AND firing

-- name: publish_gateway_stats
INSERT INTO gateway_stats (gateway, updated_at, stats) VALUES (?, ?, ?)
ON CONFLICT (gateway) DO UPDATE SET updated_at = excluded.updated_at, stats = excluded.stats

-- name: forget_gateway_stats
DELETE FROM gateway_stats WHERE updated_at < ?

-- name: gateway_stats
SELECT gateway, updated_at, ? - updated_at, stats FROM gateway_stats WHERE updated_at >= ? ORDER BY gateway
