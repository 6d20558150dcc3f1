-- Who wrote an entry: the name of the token that made the write ('' for entries written with auth off, and for
-- every entry logged before this step). A name, never a credential: the log holds no client secret.
ALTER TABLE entries ADD COLUMN author TEXT NOT NULL DEFAULT '';
