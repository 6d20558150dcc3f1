-- Several gateways, one voice: an alert's state as the gateways of this store last sent it (the first gateway to
-- claim a change sends its message, the others' claims of the same change find it made), and each gateway's
-- counters, published so that any gateway can show the whole cluster with each gateway's share.
CREATE TABLE IF NOT EXISTS alert_claims (
    key TEXT PRIMARY KEY,
    firing INTEGER NOT NULL,
    sent_at REAL NOT NULL,
    seen_at REAL NOT NULL,
    owner TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS gateway_stats (
    gateway TEXT PRIMARY KEY,
    updated_at REAL NOT NULL,
    stats TEXT NOT NULL
);
