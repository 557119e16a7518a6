-- Corpus for retrieval. CockroachDB (>= 25.2): VECTOR is built in (no extension);
-- vector indexes need `SET CLUSTER SETTING feature.vector_index.enabled = true`
-- (deploy/cockroach/). Not run in CI here: CockroachDB cannot run on this machine.
CREATE TABLE IF NOT EXISTS documents (
    id           UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    source_path  TEXT NOT NULL UNIQUE,
    title        TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    metadata     JSONB NOT NULL DEFAULT '{}'::JSONB,
    ingested_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS chunks (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    document_id   UUID NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    ordinal       INTEGER NOT NULL,
    heading_path  TEXT NOT NULL DEFAULT '',
    content       TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    embed_model   TEXT NOT NULL,
    dim           INTEGER NOT NULL,
    embedding     VECTOR(384) NOT NULL,
    tsv           TSVECTOR AS (to_tsvector('english', content)) STORED,
    UNIQUE (document_id, ordinal)
);
CREATE INDEX IF NOT EXISTS chunks_document_idx ON chunks (document_id);
CREATE INVERTED INDEX IF NOT EXISTS chunks_tsv_idx ON chunks (tsv);
CREATE VECTOR INDEX IF NOT EXISTS chunks_embedding_idx ON chunks (embedding vector_cosine_ops);
