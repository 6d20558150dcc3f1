-- The writer lease: while one store holds it unexpired, no other store appends, so the gateway holding it knows
-- every entry from its own appends and proves a read's freshness without asking the database (see
-- store/postgres_lease.py). One row. `appender` is the store that appended last, `sole_since` the time since which
-- it alone has appended and `appended_at` the time of its last append: a free lease is taken only by the store that
-- appended last, once no other has appended beside it for a while, so gateways that all write leave it free.
CREATE TABLE IF NOT EXISTS writer_lease (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    owner text,
    expires_at double precision NOT NULL DEFAULT 0,
    revoked boolean NOT NULL DEFAULT false,
    appender text,
    sole_since double precision NOT NULL DEFAULT 0,
    appended_at double precision NOT NULL DEFAULT 0
);
INSERT INTO writer_lease (id) VALUES (true) ON CONFLICT (id) DO NOTHING;
