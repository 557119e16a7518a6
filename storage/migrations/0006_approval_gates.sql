-- Approval gates: one row per approval interrupt a channel (Telegram, web, sweep) has seen.
-- The decision is claimed here with a conditional UPDATE before anything resumes the run, so two
-- presses, two approvers or two channels racing on the same gate resume it once.
CREATE TABLE IF NOT EXISTS approval_gates (
    gate_id        TEXT PRIMARY KEY,
    thread_id      TEXT NOT NULL REFERENCES posts (thread_id) ON DELETE CASCADE,
    interrupt_id   TEXT NOT NULL,
    draft_version  INTEGER NOT NULL DEFAULT 0,
    chat_id        BIGINT,
    message_ids    JSONB NOT NULL DEFAULT '[]'::JSONB,
    waiting_since  TIMESTAMPTZ NOT NULL DEFAULT now(),
    reminded_at    TIMESTAMPTZ,
    escalated_at   TIMESTAMPTZ,
    decision       TEXT,
    decided_by     TEXT,
    decided_via    TEXT,
    decided_at     TIMESTAMPTZ,
    run_id         TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT approval_gates_interrupt_once UNIQUE (thread_id, interrupt_id)
);
CREATE INDEX IF NOT EXISTS approval_gates_open_idx ON approval_gates (decided_at, waiting_since);

-- A ForceReply question the bot asked (Revise: feedback, Reject: reason); the answer is a reply
-- to that message, so the pair (chat, message) finds the gate again, even after a bot restart.
CREATE TABLE IF NOT EXISTS approval_prompts (
    chat_id     BIGINT NOT NULL,
    message_id  BIGINT NOT NULL,
    gate_id     TEXT NOT NULL REFERENCES approval_gates (gate_id) ON DELETE CASCADE,
    action      TEXT NOT NULL,
    asked_user  BIGINT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (chat_id, message_id)
);
