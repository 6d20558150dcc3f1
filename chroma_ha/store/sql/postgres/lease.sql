-- The writer lease (migrations/0006_writer_lease.sql). Times are seconds since the epoch from the database clock,
-- so that every gateway agrees on when the lease expires.

-- name: listen_lease
LISTEN chroma_ha_lease

-- name: note_appender
-- In the append transaction, after the head row (the lock order): a row back unless another store holds the lease
-- unexpired, in which case the transaction is rolled back and the lease revoked first. The row lock orders this
-- against every renewal: a lease renewed before it is seen renewed, one that expired before it cannot be renewed.
UPDATE writer_lease SET
    sole_since = CASE WHEN appender = %(me)s THEN sole_since ELSE extract(epoch FROM clock_timestamp())::float8 END,
    appender = %(me)s,
    appended_at = extract(epoch FROM clock_timestamp())::float8
WHERE owner IS NULL OR owner = %(me)s OR expires_at <= extract(epoch FROM clock_timestamp())::float8
RETURNING 1

-- name: renew_writer_lease
-- Kept only while ours, unexpired and not revoked: a row back means nobody appended beside us since we took it.
UPDATE writer_lease SET expires_at = extract(epoch FROM clock_timestamp())::float8 + %(ttl)s
WHERE owner = %(me)s AND NOT revoked AND expires_at > extract(epoch FROM clock_timestamp())::float8
RETURNING 1

-- name: take_writer_lease
-- Taken when free (or expired) by the store that appended last, once it has appended alone for `quiet` seconds.
UPDATE writer_lease SET owner = %(me)s, revoked = false,
    expires_at = extract(epoch FROM clock_timestamp())::float8 + %(ttl)s
WHERE (owner IS NULL OR expires_at <= extract(epoch FROM clock_timestamp())::float8)
  AND appender = %(me)s AND sole_since < extract(epoch FROM clock_timestamp())::float8 - %(quiet)s
RETURNING 1

-- name: release_writer_lease
UPDATE writer_lease SET owner = NULL, revoked = false, expires_at = 0 WHERE owner = %(me)s

-- name: revoke_writer_lease
-- Asked by a store that must append while another holds the lease; the holder hears it (NOTIFY) and releases.
-- The revoking store counts as appending from now on, so the holder cannot take the lease straight back (the
-- quiet time starts again) before the append it made way for is in.
UPDATE writer_lease SET revoked = true,
    sole_since = extract(epoch FROM clock_timestamp())::float8,
    appender = %(me)s,
    appended_at = extract(epoch FROM clock_timestamp())::float8
WHERE owner <> %(me)s AND expires_at > extract(epoch FROM clock_timestamp())::float8
RETURNING owner

-- name: notify_lease
SELECT pg_notify('chroma_ha_lease', %s)

-- name: writer_lease_holder
SELECT owner, revoked FROM writer_lease
WHERE owner IS NOT NULL AND expires_at > extract(epoch FROM clock_timestamp())::float8
