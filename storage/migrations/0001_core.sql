-- Core tables: posts (a persisted state machine), the append-only event log,
-- publications (exactly-once ledger) and LLM call accounting.
-- Plain SQL that PostgreSQL and CockroachDB both accept.
CREATE TABLE IF NOT EXISTS posts (
    thread_id      TEXT PRIMARY KEY,
    topic          TEXT NOT NULL,
    requester      TEXT NOT NULL,
    source         TEXT NOT NULL DEFAULT 'cli',
    status         TEXT NOT NULL DEFAULT 'queued',
    status_reason  TEXT,
    revision       INTEGER NOT NULL DEFAULT 0,
    tokens_in      BIGINT NOT NULL DEFAULT 0,
    tokens_out     BIGINT NOT NULL DEFAULT 0,
    cost_usd       NUMERIC(14, 6) NOT NULL DEFAULT 0,
    llm_calls      INTEGER NOT NULL DEFAULT 0,
    metadata       JSONB NOT NULL DEFAULT '{}'::JSONB,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT posts_status_known CHECK (status IN (
        'queued', 'researching', 'drafting', 'editing', 'awaiting_approval',
        'publishing', 'published', 'rejected', 'escalated', 'failed'))
);
CREATE INDEX IF NOT EXISTS posts_status_idx ON posts (status, updated_at);

CREATE TABLE IF NOT EXISTS events (
    id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    thread_id   TEXT NOT NULL REFERENCES posts (thread_id) ON DELETE CASCADE,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT,
    detail      JSONB NOT NULL DEFAULT '{}'::JSONB
);
CREATE INDEX IF NOT EXISTS events_thread_idx ON events (thread_id, at);

CREATE TABLE IF NOT EXISTS publications (
    publish_key  TEXT PRIMARY KEY,
    thread_id    TEXT NOT NULL REFERENCES posts (thread_id) ON DELETE CASCADE,
    destination  TEXT NOT NULL,
    location     TEXT NOT NULL,
    draft_hash   TEXT NOT NULL,
    title        TEXT NOT NULL,
    published_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS publications_thread_idx ON publications (thread_id);

CREATE TABLE IF NOT EXISTS llm_calls (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    thread_id     TEXT,
    role          TEXT NOT NULL,
    provider      TEXT NOT NULL,
    endpoint      TEXT NOT NULL,
    model         TEXT NOT NULL,
    tokens_in     INTEGER NOT NULL DEFAULT 0,
    tokens_out    INTEGER NOT NULL DEFAULT 0,
    cost_usd      NUMERIC(14, 6) NOT NULL DEFAULT 0,
    latency_ms    INTEGER NOT NULL DEFAULT 0,
    outcome       TEXT NOT NULL,
    error         TEXT,
    at            TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS llm_calls_thread_idx ON llm_calls (thread_id, at);
