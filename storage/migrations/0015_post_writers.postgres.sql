-- Writers on different posts must not conflict under SERIALIZABLE (issue 18; evals/chaos/writers.py).
-- PostgreSQL's serializable checks lock B-tree index pages a transaction reads, not keys, and a
-- non-HOT UPDATE inserts a new entry into EVERY index of the table, on the page where the key
-- lives. posts_status_idx indexed the two columns every status move and usage update writes
-- (status, updated_at), so each of them was a non-HOT update: a write into the primary key's
-- page that every other post's transaction on that page had read, and half of all status moves
-- of 4 writers on different posts failed with 40001 (147 of 300; 0 HOT updates of 684). Without
-- an index on a column the writers change, updates are HOT (heap-only: no index entry), and the
-- only index writes left on posts are new posts. The status index served only recovery and
-- list filters, which scan the table (a small one: one row per article) instead; the listing's
-- order gets an index on created_at, which no update touches.
-- fillfactor 70 leaves room on each heap page for the new row versions that a HOT update needs
-- on the same page (a full page forces a non-HOT update).
DROP INDEX IF EXISTS posts_status_idx;
CREATE INDEX IF NOT EXISTS posts_created_idx ON posts (created_at);
ALTER TABLE posts SET (fillfactor = 70);
-- The same for run leases: every renewal rewrites expires_at, which run_leases_expiry_idx indexed.
-- The table holds only live leases (a release deletes its row), so the expiry scan reads a few rows.
DROP INDEX IF EXISTS run_leases_expiry_idx;
ALTER TABLE run_leases SET (fillfactor = 70);
-- And for approval gates: a claim sets decided_at, which approval_gates_open_idx indexed, so every
-- claim wrote into the key pages other gates' claims and registrations read. The deadline sweep
-- (once a minute) scans the table for undecided gates instead.
DROP INDEX IF EXISTS approval_gates_open_idx;
ALTER TABLE approval_gates SET (fillfactor = 80);
-- A human decision is recorded once per checkpoint it answered: this index is the arbiter of the
-- INSERT ... ON CONFLICT that replaced a read of the thread's events (storage/sql.py
-- INSERT_DECISION_EVENT_POSTGRES). Events are never updated, so it costs no HOT update.
CREATE UNIQUE INDEX IF NOT EXISTS events_decision_once
    ON events (thread_id, (detail->>'checkpoint_id')) WHERE kind = 'human_decision';
