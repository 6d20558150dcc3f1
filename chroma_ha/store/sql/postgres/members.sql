-- The members (see migrations/0008_members.sql). Every change raises members_version first, in its transaction:
-- the row lock serialises the changes of every gateway behind it.

-- name: members_version
SELECT value FROM log_meta WHERE key = 'members_version'

-- name: members_version_locked
SELECT value FROM log_meta WHERE key = 'members_version' FOR UPDATE

-- name: raise_members_version
UPDATE log_meta SET value = value + 1 WHERE key = 'members_version' RETURNING value

-- name: members
SELECT url, state, changed_at FROM members ORDER BY position

-- name: insert_member
INSERT INTO members (url, state, position, changed_at)
SELECT %s, %s, coalesce(max(position), 0) + 1, %s FROM members
ON CONFLICT (url) DO NOTHING

-- name: set_member_state
UPDATE members SET state = %s, changed_at = %s WHERE url = %s AND state = %s

-- name: delete_member
DELETE FROM members WHERE url = %s

-- name: forget_cursor
DELETE FROM cursors WHERE instance = %s

-- name: forget_lease
DELETE FROM leases WHERE instance = %s
