-- Full-text search over the chunk's heading path (which starts with the note's title) and its text:
-- a post request phrased like a headline matches titles and headings more than body text
-- (issue 14: topic-style queries). The content-only tsv stays for compatibility.
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS ctx_tsv tsvector
    GENERATED ALWAYS AS (to_tsvector('english', heading_path || ' ' || content)) STORED;
CREATE INDEX IF NOT EXISTS chunks_ctx_tsv_idx ON chunks USING gin (ctx_tsv);
