-- The learning loop (issue 13): every draft's text as the Writer (or a human editor) produced it,
-- and the registry of trained writer adapters.
-- drafts: one row per (post, version), written by the Writer desk beside the checkpoint, so the
-- training export reads plain rows (checkpoints are pruned and their format is the library's).
-- A node re-run after a crash rewrites its row: the last write is the draft the graph kept.
-- Plain SQL that PostgreSQL and CockroachDB both accept (partial unique index: CockroachDB >= 20.2).
CREATE TABLE IF NOT EXISTS drafts (
    thread_id     TEXT NOT NULL REFERENCES posts (thread_id) ON DELETE CASCADE,
    version       INTEGER NOT NULL,
    title         TEXT NOT NULL,
    body          TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    model         TEXT NOT NULL,
    prompt        TEXT NOT NULL,
    reason        TEXT NOT NULL,
    author        TEXT NOT NULL DEFAULT 'writer',
    messages      JSONB NOT NULL DEFAULT '[]'::JSONB,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (thread_id, version)
);
CREATE INDEX IF NOT EXISTS drafts_hash_idx ON drafts (thread_id, content_hash);

-- adapters: LoRA adapters trained by `newsroom train-adapter`. A family (the writer's served
-- name, e.g. newsroom-writer) has at most one promoted adapter; the gateway's writer route can
-- follow it (NEWSROOM_WRITER_ADAPTER_REGISTRY=true).
CREATE TABLE IF NOT EXISTS adapters (
    name          TEXT PRIMARY KEY,
    family        TEXT NOT NULL,
    base_model    TEXT NOT NULL,
    path          TEXT NOT NULL,
    data_sha256   TEXT NOT NULL,
    manifest      JSONB NOT NULL DEFAULT '{}'::JSONB,
    status        TEXT NOT NULL DEFAULT 'candidate',
    evaluation    JSONB,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    decided_at    TIMESTAMPTZ,
    CONSTRAINT adapters_status_known CHECK (status IN ('candidate', 'promoted', 'retired', 'refused'))
);
CREATE UNIQUE INDEX IF NOT EXISTS adapters_one_promoted ON adapters (family) WHERE status = 'promoted';
