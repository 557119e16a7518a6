-- Corpus for retrieval, CockroachDB dialect. Needs CockroachDB >= 25.3: VECTOR is built in (no
-- extension, since 24.2), vector indexes (C-SPANN) since 25.2, and operator classes other than
-- vector_l2_ops (here vector_cosine_ops, to serve the `<=>` cosine queries) since 25.3.
-- Before this runs: SET CLUSTER SETTING feature.vector_index.enabled = true (deploy/cockroach/).
-- Checked against CockroachDB's documentation only: CockroachDB was not run in CI here.
CREATE TABLE IF NOT EXISTS documents (
    id           UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    source_path  TEXT NOT NULL UNIQUE,
    title        TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    metadata     JSONB NOT NULL DEFAULT '{}'::JSONB,
    ingested_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- A vector index needs a fixed dimension: 384 = the default embedder (all-MiniLM-L6-v2).
-- Another embedder dimension on CockroachDB needs a new migration (PostgreSQL's column is
-- dimensionless, with one partial HNSW index per dimension).
CREATE TABLE IF NOT EXISTS chunks (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    document_id   UUID NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    ordinal       INTEGER NOT NULL,
    heading_path  TEXT NOT NULL DEFAULT '',
    content       TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    embed_model   TEXT NOT NULL,
    dim           INTEGER NOT NULL CHECK (dim = 384),
    embedding     VECTOR(384) NOT NULL,
    tsv           TSVECTOR AS (to_tsvector('english', content)) STORED,
    UNIQUE (document_id, ordinal)
);
CREATE INDEX IF NOT EXISTS chunks_document_idx ON chunks (document_id);
-- Full-text search: an inverted (GIN) index on the stored computed tsvector.
CREATE INVERTED INDEX IF NOT EXISTS chunks_tsv_idx ON chunks (tsv);
-- CockroachDB accelerates a filtered vector search only when every filter is an equality on
-- the index's prefix columns: the retrieval query filters on embed_model and dim, so they
-- lead the index (the vector column must come last).
CREATE VECTOR INDEX IF NOT EXISTS chunks_embedding_idx ON chunks (embed_model, dim, embedding vector_cosine_ops);
