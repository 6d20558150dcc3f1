-- No client secret at rest: entries logged before credentials were kept out of the log lose their client
-- `authorization` and `x-chroma-token` headers (the instance client never sent them again anyway).
-- secure_delete zeroes the space the old values leave in their pages, so the bytes do not linger in the file.
PRAGMA secure_delete = ON;
UPDATE entries
SET headers = CAST(json_remove(CAST(headers AS TEXT), '$.authorization', '$."x-chroma-token"') AS BLOB)
WHERE CAST(headers AS TEXT) LIKE '%"authorization"%' OR CAST(headers AS TEXT) LIKE '%"x-chroma-token"%';
PRAGMA secure_delete = OFF;
