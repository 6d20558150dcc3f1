-- The members (see migrations/0008_members.sql). Every change raises members_version first, in its transaction.

-- name: members_version
SELECT value FROM log_meta WHERE key = 'members_version'

-- name: raise_members_version
UPDATE log_meta SET value = value + 1 WHERE key = 'members_version'

-- name: members
SELECT url, state, changed_at FROM members ORDER BY position

-- name: insert_member
INSERT INTO members (url, state, position, changed_at)
SELECT ?, ?, coalesce(max(position), 0) + 1, ? FROM members WHERE true
ON CONFLICT (url) DO NOTHING

-- name: set_member_state
UPDATE members SET state = ?, changed_at = ? WHERE url = ? AND state = ?

-- name: delete_member
DELETE FROM members WHERE url = ?

-- name: forget_cursor
DELETE FROM cursors WHERE instance = ?

-- name: forget_lease
DELETE FROM leases WHERE instance = ?
