-- Approval feedback: the text that came with a claimed decision (revise: the feedback for the
-- writer; reject: the reason). Recovery re-delivers a claimed decision whose resume never ran;
-- without the text a lost revise could only be asked again. NULL on rows claimed before this
-- migration (and for approve), which recovery still treats as "ask again".
-- One file for both dialects: PostgreSQL adds a nullable column without a default as a catalog
-- change only; CockroachDB runs ADD COLUMN IF NOT EXISTS as an online schema change in its own
-- implicit transaction (the migrator runs CockroachDB statements one by one), and a nullable
-- column without a default needs no backfill there either.
ALTER TABLE approval_gates ADD COLUMN IF NOT EXISTS feedback TEXT;
