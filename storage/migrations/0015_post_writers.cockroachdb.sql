-- CockroachDB's SERIALIZABLE tracks the keys and key spans a transaction reads, not index pages,
-- so its status index does not make writers on different posts conflict (the PostgreSQL variant
-- of this migration drops it: see 0015_post_writers.postgres.sql). Only the listing's index on
-- created_at is added here. Written to CockroachDB's documentation (CREATE INDEX IF NOT EXISTS);
-- not run here.
CREATE INDEX IF NOT EXISTS posts_created_idx ON posts (created_at);
