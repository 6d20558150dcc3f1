-- PostgreSQL's step 6 adds the writer lease, which lets one of several gateways on one database prove a read's
-- freshness without asking the database. A SQLite file has one gateway, whose store is its sole appender by
-- construction: nothing to add here. The step exists so that both dialects number the same steps.
SELECT 1;
