-- Scheduling (issue 16, item 4) and the send intent of a destination without idempotency keys.
-- Plain SQL both dialects accept (one file, like 0016): partial indexes exist on PostgreSQL and on
-- CockroachDB (>= 20.2); JSONB and TIMESTAMPTZ on both. Written to CockroachDB's documentation
-- (CREATE TABLE / CREATE INDEX ... WHERE), not run on it here.

-- A publish approved now and delivered at publish_at. The approval gate is claimed (decision
-- approve, its resume token issued) in the same transaction that inserts the row; the sweep
-- delivers that resume when the row is due. state: scheduled -> fired | canceled. Exactly one
-- sweeper fires a row (a conditional UPDATE); the publish ledger keeps the publish itself once.
CREATE TABLE IF NOT EXISTS publish_schedules (
    schedule_id    TEXT PRIMARY KEY,
    gate_id        TEXT NOT NULL REFERENCES approval_gates (gate_id) ON DELETE CASCADE,
    thread_id      TEXT NOT NULL REFERENCES posts (thread_id) ON DELETE CASCADE,
    publish_at     TIMESTAMPTZ NOT NULL,
    timezone       TEXT NOT NULL DEFAULT 'UTC',
    state          TEXT NOT NULL DEFAULT 'scheduled',
    scheduled_by   TEXT NOT NULL,
    scheduled_via  TEXT NOT NULL,
    chat_id        BIGINT,
    fired_at       TIMESTAMPTZ,
    fired_by       TEXT,
    run_id         TEXT,
    canceled_at    TIMESTAMPTZ,
    canceled_by    TEXT,
    last_error     TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- One live schedule per gate (a canceled one may be followed by a new one).
CREATE UNIQUE INDEX IF NOT EXISTS publish_schedules_live_gate ON publish_schedules (gate_id) WHERE state <> 'canceled';
CREATE INDEX IF NOT EXISTS publish_schedules_due_idx ON publish_schedules (state, publish_at);

-- A chat's time zone (Telegram /timezone), read when a time is typed or shown there.
CREATE TABLE IF NOT EXISTS chat_settings (
    chat_id     BIGINT PRIMARY KEY,
    timezone    TEXT NOT NULL,
    updated_by  TEXT,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A recurring topic list: every `every` (daily | weekly) at at_time (and weekday) in timezone, the
-- sweep starts a post on topics[next_index % len]. An occurrence's thread id is derived from
-- (recurring_id, next_index), so two sweepers or a crash between starting it and advancing the row
-- make one post, not two.
CREATE TABLE IF NOT EXISTS recurring_topics (
    recurring_id    TEXT PRIMARY KEY,
    every           TEXT NOT NULL,
    at_time         TEXT NOT NULL,
    weekday         INTEGER,
    timezone        TEXT NOT NULL,
    topics          JSONB NOT NULL,
    next_index      INTEGER NOT NULL DEFAULT 0,
    next_run_at     TIMESTAMPTZ NOT NULL,
    created_by      TEXT NOT NULL,
    chat_id         BIGINT,
    run_overrides   JSONB NOT NULL DEFAULT '{}'::JSONB,
    last_thread_id  TEXT,
    last_run_at     TIMESTAMPTZ,
    canceled_at     TIMESTAMPTZ,
    canceled_by     TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS recurring_topics_due_idx ON recurring_topics (canceled_at, next_run_at);

-- A send to a destination that cannot be made idempotent (the Telegram Bot API has no
-- idempotency key) is recorded here before it starts; its publications row follows the send. An
-- intent without a publications row on replay means the outcome is unknown (the process may have
-- died after Telegram took the message): the Publisher does not resend it blindly (tools/publish.py).
CREATE TABLE IF NOT EXISTS publish_intents (
    publish_key  TEXT PRIMARY KEY,
    thread_id    TEXT NOT NULL REFERENCES posts (thread_id) ON DELETE CASCADE,
    destination  TEXT NOT NULL,
    draft_hash   TEXT NOT NULL,
    title        TEXT NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS publish_intents_thread_idx ON publish_intents (thread_id);
