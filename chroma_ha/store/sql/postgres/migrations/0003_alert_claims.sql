-- Several gateways, one voice: an alert's state as the gateways of this store last sent it (the first gateway to
-- claim a change sends its message, the others' claims of the same change find it made), and each gateway's
-- counters, published so that any gateway can show the whole cluster with each gateway's share.
CREATE TABLE IF NOT EXISTS alert_claims (
    key text PRIMARY KEY,
    firing boolean NOT NULL,
    sent_at double precision NOT NULL,
    seen_at double precision NOT NULL,
    owner text NOT NULL
);
CREATE TABLE IF NOT EXISTS gateway_stats (
    gateway text PRIMARY KEY,
    updated_at double precision NOT NULL,
    stats json NOT NULL
);
