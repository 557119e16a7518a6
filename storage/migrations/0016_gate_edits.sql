-- The human's desk (issue 16): a decision may carry an edit of the draft, or name one section.
-- edited_draft: the full Markdown a human edited the shown draft into (action edit or
-- approve_with_edits), kept with the claim like the feedback is, so the interrupt applies the
-- ledger's text (not whatever a resume carries) and recovery re-delivers exactly this edit.
-- edited_hash: the hash of the draft version the edit becomes (title + body, as
-- agents.models.Draft.content_hash): the Publisher publishes an approve_with_edits only if it is
-- that exact text. section: the one section heading a revise asks the Writer to rewrite.
-- Nullable columns without defaults: a catalog change on PostgreSQL, an online schema change
-- without backfill on CockroachDB (one file for both dialects, like 0013).
ALTER TABLE approval_gates ADD COLUMN IF NOT EXISTS edited_draft TEXT;
ALTER TABLE approval_gates ADD COLUMN IF NOT EXISTS edited_hash TEXT;
ALTER TABLE approval_gates ADD COLUMN IF NOT EXISTS section TEXT;
