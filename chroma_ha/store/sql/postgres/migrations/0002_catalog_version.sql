-- The catalog version: raised by every change to the collection id mappings, in the transaction that makes it,
-- so that every gateway on this database knows with one indexed row whether the catalog it holds is current.
-- Bounded reads and key reads need no index of their own: they walk the primary key (seq) like `read` does.
INSERT INTO log_meta (key, value) VALUES ('catalog_version', 0) ON CONFLICT (key) DO NOTHING;
