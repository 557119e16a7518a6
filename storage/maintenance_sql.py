"""SQL of recovery (run leases, cut-off threads) and checkpoint retention (storage/maintenance.py).

The checkpoint tables (checkpoints, checkpoint_writes, checkpoint_blobs) belong to the saver
(langgraph-checkpoint-postgres); retention reads and deletes their rows with the same layout the
saver's own `aprune` uses, but keeps the last N checkpoints instead of only the latest.
"""

# --- run leases --------------------------------------------------------------------------------
# Taken when free or expired (or already ours); only the winner gets a row back.
ACQUIRE_RUN_LEASE = """
INSERT INTO run_leases (thread_id, holder, purpose, acquired_at, expires_at)
VALUES (%(thread_id)s, %(holder)s, %(purpose)s, now(), now() + %(seconds)s * INTERVAL '1 second')
ON CONFLICT (thread_id) DO UPDATE
   SET holder = excluded.holder, purpose = excluded.purpose, acquired_at = excluded.acquired_at,
       expires_at = excluded.expires_at
 WHERE run_leases.expires_at < now() OR run_leases.holder = excluded.holder
RETURNING thread_id
"""
RENEW_RUN_LEASE = """
UPDATE run_leases SET expires_at = now() + %(seconds)s * INTERVAL '1 second'
 WHERE thread_id = %(thread_id)s AND holder = %(holder)s
RETURNING thread_id
"""
SELECT_RUN_LEASE = "SELECT holder, expires_at FROM run_leases WHERE thread_id = %(thread_id)s"
# Take over a lease whose holder is known dead (a process of this host that no longer exists).
TAKE_OVER_RUN_LEASE = """
UPDATE run_leases
   SET holder = %(holder)s, purpose = %(purpose)s, acquired_at = now(),
       expires_at = now() + %(seconds)s * INTERVAL '1 second'
 WHERE thread_id = %(thread_id)s AND holder = %(dead_holder)s
RETURNING thread_id
"""
RELEASE_RUN_LEASE = "DELETE FROM run_leases WHERE thread_id = %(thread_id)s AND holder = %(holder)s"
SELECT_LIVE_LEASES = """
SELECT thread_id, holder, purpose, acquired_at, expires_at FROM run_leases WHERE expires_at >= now()
"""

# --- threads a crash may have cut off ----------------------------------------------------------
# Posts not finished (waiting ones included: their checkpoint may already be past the gate),
# and finished posts updated lately (the status commits before the node's checkpoint does, so a
# crash in between leaves a finished post whose graph has one step to replay).
SELECT_RECOVERY_POSTS = """
SELECT thread_id, topic, requester, source, status, updated_at, metadata->'run_overrides' AS run_overrides
  FROM posts
 WHERE (status <> ALL(%(terminal)s) OR updated_at >= now() - %(terminal_window_s)s * INTERVAL '1 second')
   AND updated_at <= now() - %(stale_after_s)s * INTERVAL '1 second'
 ORDER BY updated_at
"""
# Threads with a root checkpoint but no post row: cut off before the supervisor created it.
SELECT_THREADS_WITHOUT_POST = """
SELECT DISTINCT c.thread_id FROM checkpoints c
  LEFT JOIN posts p ON p.thread_id = c.thread_id
 WHERE c.checkpoint_ns = '' AND p.thread_id IS NULL
"""
# Approvals a channel claimed for a gate (decided), not superseded: recovery checks whether the
# thread still waits at that gate's interrupt (the resume never ran: a lost approval).
SELECT_DECIDED_GATES = """
SELECT g.gate_id, g.thread_id, g.interrupt_id, g.decision, g.decided_by, g.decided_via, g.decided_at,
       g.feedback, g.resume_token
  FROM approval_gates g JOIN posts p ON p.thread_id = g.thread_id
 WHERE g.decided_at IS NOT NULL AND g.decision IN ('approve', 'revise', 'reject', 'edit', 'approve_with_edits')
   AND p.status IN ('awaiting_approval', 'escalated')
   -- an approval scheduled for later is delivered by the sweep at its time (service/scheduling.py)
   AND NOT EXISTS (SELECT 1 FROM publish_schedules s WHERE s.gate_id = g.gate_id AND s.state = 'scheduled')
 ORDER BY g.decided_at
"""

# --- checkpoint retention ---------------------------------------------------------------------
SELECT_FINISHED_THREADS = """
SELECT thread_id FROM posts
 WHERE status = ANY(%(terminal)s)
   AND updated_at <= now() - %(min_age_s)s * INTERVAL '1 second'
 ORDER BY updated_at
"""
CHECKPOINT_FOOTPRINT = """
SELECT
  (SELECT count(*) FROM checkpoints WHERE thread_id = ANY(%(threads)s)) AS checkpoints,
  (SELECT count(*) FROM checkpoint_writes WHERE thread_id = ANY(%(threads)s)) AS writes,
  (SELECT count(*) FROM checkpoint_blobs WHERE thread_id = ANY(%(threads)s)) AS blobs,
  (SELECT COALESCE(sum(pg_column_size(c.*)), 0) FROM checkpoints c WHERE thread_id = ANY(%(threads)s))
  + (SELECT COALESCE(sum(pg_column_size(w.*)), 0) FROM checkpoint_writes w WHERE thread_id = ANY(%(threads)s))
  + (SELECT COALESCE(sum(pg_column_size(b.*)), 0) FROM checkpoint_blobs b WHERE thread_id = ANY(%(threads)s))
    AS bytes
"""
CHECKPOINT_TABLE_BYTES = """
SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0) AS bytes
  FROM pg_class c
 WHERE c.relname IN ('checkpoints', 'checkpoint_writes', 'checkpoint_blobs') AND c.relkind = 'r'
"""
# The root namespace's checkpoints of a thread, newest first (uuid6 ids sort by time).
SELECT_ROOT_CHECKPOINT_IDS = """
SELECT checkpoint_id FROM checkpoints
 WHERE thread_id = %(thread_id)s AND checkpoint_ns = ''
 ORDER BY checkpoint_id DESC
"""
# Subgraph (desk) namespaces and the root checkpoint each call started from.
SELECT_SUBGRAPH_NAMESPACES = """
SELECT checkpoint_ns, min(metadata -> 'parents' ->> '') AS root
  FROM checkpoints
 WHERE thread_id = %(thread_id)s AND checkpoint_ns <> ''
 GROUP BY checkpoint_ns
"""
DELETE_UNKEPT_ROOT_WRITES = """
DELETE FROM checkpoint_writes
 WHERE thread_id = %(thread_id)s AND checkpoint_ns = '' AND checkpoint_id <> ALL(%(kept)s)
"""
DELETE_UNKEPT_ROOT_CHECKPOINTS = """
DELETE FROM checkpoints
 WHERE thread_id = %(thread_id)s AND checkpoint_ns = '' AND checkpoint_id <> ALL(%(kept)s)
"""
# The oldest kept checkpoint loses its (deleted) parent, as the saver's own prune does.
ORPHAN_KEPT_PARENTS = """
UPDATE checkpoints SET parent_checkpoint_id = NULL
 WHERE thread_id = %(thread_id)s AND checkpoint_ns = '' AND checkpoint_id = ANY(%(kept)s)
   AND parent_checkpoint_id <> ALL(%(kept)s)
"""
DELETE_NAMESPACE_CHECKPOINTS = """
DELETE FROM checkpoints WHERE thread_id = %(thread_id)s AND checkpoint_ns = ANY(%(namespaces)s)
"""
DELETE_NAMESPACE_WRITES = """
DELETE FROM checkpoint_writes WHERE thread_id = %(thread_id)s AND checkpoint_ns = ANY(%(namespaces)s)
"""
DELETE_NAMESPACE_BLOBS = """
DELETE FROM checkpoint_blobs WHERE thread_id = %(thread_id)s AND checkpoint_ns = ANY(%(namespaces)s)
"""
# Root blobs no kept root checkpoint references (a blob is keyed by channel + version).
DELETE_UNREFERENCED_ROOT_BLOBS = """
DELETE FROM checkpoint_blobs b
 WHERE b.thread_id = %(thread_id)s AND b.checkpoint_ns = ''
   AND NOT EXISTS (
       SELECT 1 FROM checkpoints c
        WHERE c.thread_id = b.thread_id AND c.checkpoint_ns = ''
          AND c.checkpoint -> 'channel_versions' ->> b.channel = b.version)
"""
