-- The plan of a bootstrap that is under way, so a gateway that crashes in the middle resumes it at the page it
-- reached: page 0 is the plan (source, start seq, collections), pages 1.. the ids listed at the start seq, and
-- page -1 how many pages the target already holds. Rows of one instance are dropped when its bootstrap ends.
CREATE TABLE bootstrap_pages (
    instance TEXT NOT NULL,
    page BIGINT NOT NULL,
    body BYTEA NOT NULL,
    PRIMARY KEY (instance, page)
);
