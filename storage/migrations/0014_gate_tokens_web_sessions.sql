-- Gate tokens: the approvals ledger issues one random token when a decision is claimed; the
-- graph's approval interrupt accepts only a resume that carries the token of the gate it waits at,
-- and applies the decision recorded with the claim (so a raw resume from any channel, Studio
-- included, is refused and recorded as invalid). draft_hash is the hash of the draft the gate
-- showed: the Publisher publishes a human-approved draft only if it is that exact text.
-- resumed_at / resumed_checkpoint: when the interrupt consumed the token, and at which checkpoint.
ALTER TABLE approval_gates ADD COLUMN IF NOT EXISTS resume_token TEXT;
ALTER TABLE approval_gates ADD COLUMN IF NOT EXISTS draft_hash TEXT;
ALTER TABLE approval_gates ADD COLUMN IF NOT EXISTS resumed_at TIMESTAMPTZ;
ALTER TABLE approval_gates ADD COLUMN IF NOT EXISTS resumed_checkpoint TEXT;

-- Web page sessions: the signed cookie carries only the session id; logging out revokes the row,
-- so a copied cookie stops working at logout, not only at its expiry.
CREATE TABLE IF NOT EXISTS web_sessions (
    session_id  TEXT PRIMARY KEY,
    identity    TEXT NOT NULL,
    role        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ
);
