-- Run leases: which process is driving a thread right now. A runner (or the recovery step)
-- holds the lease while it runs the graph and renews it; recovery resumes a cut-off thread only
-- when nobody holds a live lease on it, so two recoverers, or a recoverer and a live run, never
-- drive the same thread at once. A crashed holder's lease simply expires.
CREATE TABLE IF NOT EXISTS run_leases (
    thread_id    TEXT PRIMARY KEY,
    holder       TEXT NOT NULL,
    purpose      TEXT NOT NULL DEFAULT 'run',
    acquired_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS run_leases_expiry_idx ON run_leases (expires_at);
