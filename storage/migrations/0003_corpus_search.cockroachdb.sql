-- Retrieval indexes (CockroachDB). The vector index was created with the table in 0002
-- (chunks_embedding_idx, C-SPANN, cosine); here the filter columns.
CREATE INDEX IF NOT EXISTS chunks_model_idx ON chunks (embed_model, dim);
CREATE INVERTED INDEX IF NOT EXISTS documents_metadata_idx ON documents (metadata);
