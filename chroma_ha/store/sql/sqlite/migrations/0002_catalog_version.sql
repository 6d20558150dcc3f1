-- The catalog version: raised by every change to the collection id mappings, in the transaction that makes it,
-- so that a reader of the catalog knows with one indexed row whether what it holds is still current.
-- Bounded reads and key reads need no index of their own: they walk the primary key (seq) like `read` does.
INSERT OR IGNORE INTO log_meta (key, value) VALUES ('catalog_version', 0);
