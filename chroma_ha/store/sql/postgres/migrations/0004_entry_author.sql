-- Who wrote an entry: the name of the token that made the write ('' for entries written with auth off, and for
-- every entry logged before this step). A name, never a credential: the log holds no client secret.
-- Adding a column with a constant default rewrites no rows (PostgreSQL 11 and later).
ALTER TABLE entries ADD COLUMN author text NOT NULL DEFAULT '';
