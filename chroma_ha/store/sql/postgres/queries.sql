-- Times are seconds since the epoch from the database clock, so that every gateway agrees on lease expiry.

-- name: listen
LISTEN chroma_ha_log

-- name: listen_cursors
LISTEN chroma_ha_cursor

-- name: notify_cursors
-- In every transaction that moves a cursor: gateways following appliers that run elsewhere look at once.
SELECT pg_notify('chroma_ha_cursor', '')

-- name: ping
SELECT 1

-- name: advance_head
UPDATE log_head SET seq = seq + %s RETURNING seq

-- name: append_entry_below_head
-- In the append transaction, after `advance_head`: the entry so many below the head this transaction has just set.
INSERT INTO entries (seq, created_at, op, method, path, query, headers, body, collection_id, scope, extra, author)
VALUES ((SELECT seq FROM log_head) - %s, extract(epoch FROM clock_timestamp())::float8,
        %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)

-- name: notify_head
SELECT pg_notify('chroma_ha_log', (SELECT seq FROM log_head)::text)

-- name: head
SELECT seq FROM log_head

-- name: lock_head
SELECT seq FROM log_head FOR UPDATE

-- name: raise_head
UPDATE log_head SET seq = %s WHERE seq < %s

-- name: oldest_seq
SELECT COALESCE((SELECT min(seq) FROM entries), (SELECT seq FROM log_head) + 1)

-- name: read_after
SELECT seq, created_at, op, method, path, query, headers, body, collection_id, scope, extra,
       outcome_status, outcome_body, outcome_instance, author
FROM entries WHERE seq > %s ORDER BY seq LIMIT %s

-- name: read_after_bounded
-- Sizes first, bodies only of the entries that fit: octet_length() of a bytea reads the size from the TOAST pointer,
-- never the value itself. An entry is kept while the running sum stays within the bound, the first one always.
WITH page AS (
    SELECT seq, octet_length(body) AS size FROM entries WHERE seq > %s ORDER BY seq LIMIT %s
), fitting AS (
    SELECT seq FROM (
        SELECT seq, sum(size) OVER (ORDER BY seq) AS running, row_number() OVER (ORDER BY seq) AS n FROM page
    ) AS sized WHERE running <= %s OR n = 1
)
SELECT e.seq, e.created_at, e.op, e.method, e.path, e.query, e.headers, e.body, e.collection_id, e.scope, e.extra,
       e.outcome_status, e.outcome_body, e.outcome_instance, e.author
FROM fitting JOIN entries AS e ON e.seq = fitting.seq ORDER BY e.seq

-- name: read_keys_after
SELECT seq, created_at, op, collection_id, scope,
       CASE WHEN op = 'create_collection' THEN extra ->> 'canonical_id' END
FROM entries WHERE seq > %s ORDER BY seq LIMIT %s

-- name: outcome
SELECT outcome_status, outcome_body, outcome_instance FROM entries WHERE seq = %s

-- name: lock_entries
SELECT seq FROM entries WHERE seq = ANY(%s::bigint[]) ORDER BY seq FOR UPDATE

-- name: set_first_outcomes
UPDATE entries SET outcome_status = a.status, outcome_body = a.body, outcome_instance = %s
FROM unnest(%s::bigint[], %s::integer[], %s::bytea[]) AS a (seq, status, body)
WHERE entries.seq = a.seq AND entries.outcome_status IS NULL

-- name: outcomes_of_others
-- The first outcomes another instance gave: what an instance committing the same entries is compared with.
SELECT seq, outcome_status, outcome_body, outcome_instance FROM entries
WHERE seq = ANY(%s::bigint[]) AND outcome_status IS NOT NULL AND outcome_instance != %s

-- name: count_since
SELECT count(*) FROM entries WHERE created_at >= %s

-- name: prune
DELETE FROM entries WHERE seq <= %s

-- name: remember_pruned_scopes
INSERT INTO known_scopes (scope) SELECT DISTINCT scope FROM entries WHERE seq <= %s AND scope != ''
ON CONFLICT DO NOTHING

-- name: scopes
SELECT scope FROM known_scopes UNION SELECT DISTINCT scope FROM entries WHERE scope != '' ORDER BY 1

-- name: cursors
SELECT instance, seq, incarnation, updated_at FROM cursors ORDER BY instance

-- name: upsert_cursor
INSERT INTO cursors (instance, seq, incarnation, updated_at)
VALUES (%s, %s, '', extract(epoch FROM clock_timestamp())::float8)
ON CONFLICT (instance) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at

-- name: set_cursor
INSERT INTO cursors (instance, seq, incarnation, updated_at)
VALUES (%s, %s, %s, extract(epoch FROM clock_timestamp())::float8)
ON CONFLICT (instance) DO UPDATE SET seq = excluded.seq, incarnation = excluded.incarnation,
    updated_at = excluded.updated_at

-- name: reset_cursors
UPDATE cursors SET seq = %s, updated_at = extract(epoch FROM clock_timestamp())::float8

-- name: insert_intent
INSERT INTO intents (instance, seq) VALUES (%s, %s) ON CONFLICT DO NOTHING

-- name: has_intent
SELECT 1 FROM intents WHERE instance = %s AND seq = %s

-- name: delete_intents_upto
DELETE FROM intents WHERE instance = %s AND seq <= %s

-- name: upsert_mapping
INSERT INTO collection_ids (instance, canonical_id, instance_id) VALUES (%s, %s, %s)
ON CONFLICT (instance, canonical_id) DO UPDATE SET instance_id = excluded.instance_id

-- name: all_mappings
SELECT instance, canonical_id, instance_id FROM collection_ids ORDER BY instance, canonical_id

-- name: instance_mappings
SELECT instance, canonical_id, instance_id FROM collection_ids WHERE instance = %s ORDER BY canonical_id

-- name: catalog_version
SELECT value FROM log_meta WHERE key = 'catalog_version'

-- name: raise_catalog_version
-- The row lock is held until commit: changes to the mappings of every gateway are serialised behind it.
UPDATE log_meta SET value = value + 1 WHERE key = 'catalog_version'

-- name: forget_mappings
DELETE FROM collection_ids WHERE instance = %s

-- name: forget_intents
DELETE FROM intents WHERE instance = %s

-- name: insert_divergence
INSERT INTO divergences (seq, instance, status, body, expected_status, created_at)
VALUES (%s, %s, %s, %s, %s, extract(epoch FROM clock_timestamp())::float8)
RETURNING id, created_at

-- name: divergences_open
SELECT id, seq, instance, status, body, expected_status, created_at, resolved_at
FROM divergences WHERE resolved_at IS NULL ORDER BY id

-- name: divergences_all
SELECT id, seq, instance, status, body, expected_status, created_at, resolved_at FROM divergences ORDER BY id

-- name: resolve_divergences
UPDATE divergences SET resolved_at = extract(epoch FROM clock_timestamp())::float8
WHERE instance = %s AND resolved_at IS NULL

-- name: take_lease
INSERT INTO leases (instance, owner, expires_at)
VALUES (%s, %s, extract(epoch FROM clock_timestamp())::float8 + %s::float8)
ON CONFLICT (instance) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
WHERE leases.owner = excluded.owner OR leases.expires_at < extract(epoch FROM clock_timestamp())::float8
RETURNING owner

-- name: release_lease
DELETE FROM leases WHERE instance = %s AND owner = %s

-- name: insert_recommendation
INSERT INTO recommendations (created_at, kind, reason, details)
VALUES (extract(epoch FROM clock_timestamp())::float8, %s, %s, %s)
RETURNING id, created_at

-- name: recommendations
SELECT id, created_at, kind, reason, details FROM recommendations ORDER BY id DESC LIMIT %s

-- name: reset_log
DELETE FROM entries

-- name: reset_mappings
DELETE FROM collection_ids

-- name: reset_bookkeeping
DELETE FROM intents;
DELETE FROM known_scopes;
DELETE FROM divergences;
DELETE FROM bootstrap_pages

-- name: save_bootstrap_page
INSERT INTO bootstrap_pages (instance, page, body) VALUES (%s, %s, %s)
ON CONFLICT (instance, page) DO UPDATE SET body = excluded.body

-- name: bootstrap_pages
SELECT page, body FROM bootstrap_pages WHERE instance = %s AND page >= %s ORDER BY page LIMIT %s

-- name: drop_bootstrap
DELETE FROM bootstrap_pages WHERE instance = %s

-- name: claim_alert_firing
-- Alert claims: each statement returns a row only when this gateway's claim made the change, so exactly one of
-- the gateways claiming the same change sends its message. Times from the database clock, as for leases.
INSERT INTO alert_claims (key, firing, sent_at, seen_at, owner)
VALUES (%(key)s, TRUE, extract(epoch FROM clock_timestamp())::float8, extract(epoch FROM clock_timestamp())::float8,
        %(owner)s)
ON CONFLICT (key) DO UPDATE SET firing = TRUE, sent_at = excluded.sent_at, seen_at = excluded.seen_at,
    owner = excluded.owner
WHERE NOT alert_claims.firing OR alert_claims.seen_at < excluded.seen_at - %(stale)s
RETURNING key

-- name: claim_alert_reminder
UPDATE alert_claims SET sent_at = extract(epoch FROM clock_timestamp())::float8,
    seen_at = extract(epoch FROM clock_timestamp())::float8, owner = %(owner)s
WHERE key = %(key)s AND firing AND sent_at <= extract(epoch FROM clock_timestamp())::float8 - %(window)s
RETURNING key

-- name: claim_alert_resolved
UPDATE alert_claims SET firing = FALSE, sent_at = extract(epoch FROM clock_timestamp())::float8, owner = %(owner)s
WHERE key = %(key)s AND firing
RETURNING key

-- name: claim_alert_event
INSERT INTO alert_claims (key, firing, sent_at, seen_at, owner)
VALUES (%(key)s, FALSE, extract(epoch FROM clock_timestamp())::float8, extract(epoch FROM clock_timestamp())::float8,
        %(owner)s)
ON CONFLICT (key) DO UPDATE SET sent_at = excluded.sent_at, seen_at = excluded.seen_at, owner = excluded.owner
WHERE alert_claims.sent_at <= excluded.sent_at - %(window)s
RETURNING key

-- name: touch_alerts
UPDATE alert_claims SET seen_at = extract(epoch FROM clock_timestamp())::float8 WHERE key = ANY(%s) AND firing

-- name: publish_gateway_stats
INSERT INTO gateway_stats (gateway, updated_at, stats) VALUES (%s, extract(epoch FROM clock_timestamp())::float8, %s)
ON CONFLICT (gateway) DO UPDATE SET updated_at = excluded.updated_at, stats = excluded.stats

-- name: forget_gateway_stats
DELETE FROM gateway_stats WHERE updated_at < extract(epoch FROM clock_timestamp())::float8 - %s

-- name: gateway_stats
SELECT gateway, updated_at, extract(epoch FROM clock_timestamp())::float8 - updated_at, stats FROM gateway_stats
WHERE updated_at >= extract(epoch FROM clock_timestamp())::float8 - %s
ORDER BY gateway
