-- The members: the instances the gateways serve, recorded here so every gateway on the store agrees on them. A URL
-- is kept bare (never userinfo). `state` is joining (being copied and caught up: no reads), active or draining
-- (no new reads, about to be removed); `position` keeps the order they were added in. `members_version` in log_meta
-- is raised by every change, so a gateway notices one with a single indexed read; 0 means the list was never seeded.
CREATE TABLE members (
    url TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    position INTEGER NOT NULL,
    changed_at REAL NOT NULL
);
INSERT OR IGNORE INTO log_meta (key, value) VALUES ('members_version', 0);
