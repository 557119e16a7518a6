-- Retrieval indexes (PostgreSQL + pgvector). The chunks.embedding column has no fixed dimension,
-- so the HNSW index is a partial expression index per dimension; this one serves the default
-- embedder (all-MiniLM-L6-v2, 384-d). Other dimensions get theirs on first ingest
-- (storage.corpus.CorpusStore.ensure_vector_index). Queries must use the same expression
-- (embedding::vector(384)) and the predicate dim = 384 for the planner to pick it.
CREATE INDEX IF NOT EXISTS chunks_embedding_384_hnsw ON chunks
    USING hnsw ((embedding::vector(384)) vector_cosine_ops) WITH (m = 16, ef_construction = 64)
    WHERE dim = 384;
CREATE INDEX IF NOT EXISTS chunks_model_idx ON chunks (embed_model, dim);
CREATE INDEX IF NOT EXISTS documents_metadata_idx ON documents USING gin (metadata jsonb_path_ops);
