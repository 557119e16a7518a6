-- Full-text search over the chunk's heading path (which starts with the note's title) and its text
-- (issue 14: topic-style queries). Written to CockroachDB's documentation (stored computed TSVECTOR
-- columns and inverted indexes, 23.1+); never run here.
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS ctx_tsv TSVECTOR AS (to_tsvector('english', heading_path || ' ' || content)) STORED;
CREATE INVERTED INDEX IF NOT EXISTS chunks_ctx_tsv_idx ON chunks (ctx_tsv);
