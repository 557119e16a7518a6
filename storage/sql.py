"""Every SQL statement of the project, as named constants (the checkpointer's own SQL aside).

Statements use psycopg named placeholders. Where PostgreSQL and CockroachDB differ, the
constant carries a dialect suffix and the caller picks by Database.dialect.
"""

SELECT_VERSION = "SELECT version() AS version"
# Per pooled connection: statements sent without BEGIN are serializable too (both dialects).
SET_SESSION_SERIALIZABLE = "SET default_transaction_isolation = 'serializable'"
# Database.pipelined: the transaction around statements sent in one round trip (PostgreSQL).
BEGIN_READ_ONLY = "BEGIN READ ONLY"
COMMIT = "COMMIT"

# --- migrations -------------------------------------------------------------------------
# A lease row instead of advisory locks (CockroachDB has none): a process owns the migration
# step while its lease is fresh; a crashed holder's lease expires. `n * INTERVAL '1 second'`
# is documented on both dialects (make_interval's named-argument call is not, for CockroachDB).
CREATE_MIGRATION_TABLES = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     TEXT PRIMARY KEY,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_by  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS schema_migration_lease (
    id          INTEGER PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
)
"""
ACQUIRE_MIGRATION_LEASE = """
INSERT INTO schema_migration_lease (id, holder, expires_at)
VALUES (1, %(holder)s, now() + %(seconds)s * INTERVAL '1 second')
ON CONFLICT (id) DO UPDATE
   SET holder = excluded.holder, expires_at = excluded.expires_at
 WHERE schema_migration_lease.expires_at < now()
    OR schema_migration_lease.holder = excluded.holder
RETURNING holder
"""
RELEASE_MIGRATION_LEASE = "DELETE FROM schema_migration_lease WHERE id = 1 AND holder = %(holder)s"
SELECT_APPLIED_MIGRATIONS = "SELECT version FROM schema_migrations ORDER BY version"
INSERT_MIGRATION = "INSERT INTO schema_migrations (version, applied_by) VALUES (%(version)s, %(holder)s)"
# The checkpoint saver's own migration table (both savers keep one: v = index in saver.MIGRATIONS).
SELECT_SAVER_MIGRATION_VERSION = "SELECT max(v) AS v FROM checkpoint_migrations"

# --- posts: a persisted state machine ----------------------------------------------------
INSERT_POST = """
INSERT INTO posts (thread_id, topic, requester, source, metadata)
VALUES (%(thread_id)s, %(topic)s, %(requester)s, %(source)s, %(metadata)s)
ON CONFLICT (thread_id) DO NOTHING
RETURNING thread_id
"""
# A run's per-run setting overrides, kept once (by the first run on the thread): later runs on the
# thread (resumes, recovery) must not replace them. updated_at is left alone on purpose (it is
# the post's progress clock that recovery's --stale-after reads).
PIN_POST_RUN_OVERRIDES = """
UPDATE posts SET metadata = metadata || %(pinned)s
 WHERE thread_id = %(thread_id)s AND metadata->'run_overrides' IS NULL
"""
SELECT_POST = "SELECT * FROM posts WHERE thread_id = %(thread_id)s"
# A status move as ONE statement (PostgreSQL): the post as it was, the move if its status is one
# of `movable` (the statuses from which the move is legal), and its event if it moved. Sent on its
# own it is its own implicit transaction: one round trip instead of five (BEGIN, SELECT ... FOR
# UPDATE, UPDATE, INSERT, COMMIT). All parts read the same snapshot, so `cur` is the status before
# the move; a concurrent move of the same post makes the UPDATE fail with 40001 (retried).
# CockroachDB runs the same steps as separate statements in a transaction (posts.py).
TRANSITION_POSTGRES = """
WITH cur AS (
    SELECT * FROM posts WHERE thread_id = %(thread_id)s
), moved AS (
    UPDATE posts
       SET status = %(to_status)s, status_reason = %(reason)s,
           revision = COALESCE(%(revision)s, revision), updated_at = now()
     WHERE thread_id = %(thread_id)s AND status = ANY(%(movable)s)
    RETURNING thread_id
), logged AS (
    INSERT INTO events (thread_id, actor, kind, from_status, to_status, detail)
    SELECT cur.thread_id, %(actor)s, 'transition', cur.status, %(to_status)s, %(detail)s
      FROM cur JOIN moved ON moved.thread_id = cur.thread_id
    RETURNING id
)
SELECT cur.*, (SELECT count(*) FROM logged) AS moved FROM cur
"""
SELECT_POST_RUN_OVERRIDES = """
SELECT metadata->'run_overrides' AS run_overrides FROM posts WHERE thread_id = %(thread_id)s
"""
SELECT_POST_FOR_UPDATE = "SELECT * FROM posts WHERE thread_id = %(thread_id)s FOR UPDATE"
UPDATE_POST_STATUS = """
UPDATE posts
   SET status = %(to_status)s, status_reason = %(reason)s,
       revision = COALESCE(%(revision)s, revision), updated_at = now()
 WHERE thread_id = %(thread_id)s AND status = %(from_status)s
RETURNING thread_id
"""
LIST_POSTS = """
SELECT thread_id, topic, requester, source, status, status_reason, revision,
       tokens_in, tokens_out, cost_usd, llm_calls, created_at, updated_at
  FROM posts
 WHERE (%(status)s::TEXT IS NULL OR status = %(status)s::TEXT)
 ORDER BY created_at DESC
 LIMIT %(limit)s
"""
SELECT_POSTS_IN_STATUS = """
SELECT thread_id, status, updated_at FROM posts
 WHERE status = ANY(%(statuses)s) ORDER BY updated_at
"""
# One call's usage added to the post's running totals, in place: a single statement, no read of
# the totals into the client (under SERIALIZABLE two writers on one post still conflict on its row
# and one retries; under READ COMMITTED the increment cannot lose an update either).
ADD_POST_USAGE = """
UPDATE posts SET tokens_in = tokens_in + %(tokens_in)s, tokens_out = tokens_out + %(tokens_out)s,
       cost_usd = cost_usd + %(cost_usd)s, llm_calls = llm_calls + 1, updated_at = now()
 WHERE thread_id = %(thread_id)s
"""

# --- events: append-only audit --------------------------------------------------------------
INSERT_EVENT = """
INSERT INTO events (thread_id, actor, kind, from_status, to_status, detail)
VALUES (%(thread_id)s, %(actor)s, %(kind)s, %(from_status)s, %(to_status)s, %(detail)s)
RETURNING id, at
"""
SELECT_STATUS_BEFORE_FAILURE = """
SELECT from_status FROM events
 WHERE thread_id = %(thread_id)s AND kind = 'transition' AND to_status = 'failed'
 ORDER BY at DESC, id DESC
 LIMIT 1
"""
SELECT_LAST_EVENT = """
SELECT kind, from_status, to_status FROM events
 WHERE thread_id = %(thread_id)s
 ORDER BY at DESC, id DESC
 LIMIT 1
"""
LIST_EVENTS = """
SELECT id, thread_id, at, actor, kind, from_status, to_status, detail
  FROM events WHERE thread_id = %(thread_id)s ORDER BY at, id
"""
# A human decision, once per checkpoint it answered. PostgreSQL: one INSERT whose arbiter is the
# unique partial index events_decision_once (migration 0015), so nothing is read first: the read
# of the thread's events (an index range) made decisions on different posts conflict whenever
# their events shared an index page. CockroachDB (which checks key spans, not pages, so reading
# one thread's events does not conflict with another thread's writes) reads, then inserts.
INSERT_DECISION_EVENT_POSTGRES = """
INSERT INTO events (thread_id, actor, kind, from_status, to_status, detail)
VALUES (%(thread_id)s, %(actor)s, 'human_decision', NULL, NULL, %(detail)s)
ON CONFLICT (thread_id, (detail->>'checkpoint_id')) WHERE kind = 'human_decision' DO NOTHING
RETURNING id
"""
SELECT_DECISION_EVENT = """
SELECT id, detail FROM events
 WHERE thread_id = %(thread_id)s AND kind = 'human_decision'
   AND detail->>'checkpoint_id' = %(checkpoint_id)s
 LIMIT 1
"""

# --- publications: the exactly-once ledger -------------------------------------------------------
SELECT_PUBLICATION = "SELECT * FROM publications WHERE publish_key = %(publish_key)s"
SELECT_PUBLICATIONS_FOR_THREAD = """
SELECT * FROM publications WHERE thread_id = %(thread_id)s ORDER BY published_at
"""
INSERT_PUBLICATION = """
INSERT INTO publications (publish_key, thread_id, destination, location, draft_hash, title)
VALUES (%(publish_key)s, %(thread_id)s, %(destination)s, %(location)s, %(draft_hash)s, %(title)s)
ON CONFLICT (publish_key) DO NOTHING
RETURNING *
"""
COUNT_PUBLICATIONS = "SELECT count(*) AS n FROM publications"

# --- llm_calls -----------------------------------------------------------------------------------
# The id is chosen by the caller once per call: a transaction re-run after an ambiguous commit
# (40003, or the connection lost during COMMIT) then finds its row and adds no usage twice.
INSERT_LLM_CALL = """
INSERT INTO llm_calls (id, thread_id, role, provider, endpoint, model, tokens_in, tokens_out,
                       cost_usd, latency_ms, outcome, error)
VALUES (%(id)s, %(thread_id)s, %(role)s, %(provider)s, %(endpoint)s, %(model)s, %(tokens_in)s,
        %(tokens_out)s, %(cost_usd)s, %(latency_ms)s, %(outcome)s, %(error)s)
ON CONFLICT (id) DO NOTHING
RETURNING id
"""
# One LLM call's row and, only if the row is new, its usage added to the post: one statement
# (PostgreSQL; see TRANSITION_POSTGRES). CockroachDB runs INSERT_LLM_CALL + ADD_POST_USAGE in a
# transaction.
RECORD_LLM_CALL_POSTGRES = """
WITH call AS (
    INSERT INTO llm_calls (id, thread_id, role, provider, endpoint, model, tokens_in, tokens_out,
                           cost_usd, latency_ms, outcome, error)
    VALUES (%(id)s, %(thread_id)s, %(role)s, %(provider)s, %(endpoint)s, %(model)s, %(tokens_in)s,
            %(tokens_out)s, %(cost_usd)s, %(latency_ms)s, %(outcome)s, %(error)s)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), usage AS (
    UPDATE posts SET tokens_in = tokens_in + %(tokens_in)s, tokens_out = tokens_out + %(tokens_out)s,
           cost_usd = cost_usd + %(cost_usd)s, llm_calls = llm_calls + 1, updated_at = now()
     WHERE thread_id = %(thread_id)s AND EXISTS (SELECT 1 FROM call)
    RETURNING thread_id
)
SELECT (SELECT count(*) FROM call) AS inserted, (SELECT count(*) FROM usage) AS counted
"""
LIST_LLM_CALLS = """
SELECT role, provider, endpoint, model, tokens_in, tokens_out, cost_usd, latency_ms, outcome, error, at
  FROM llm_calls WHERE thread_id = %(thread_id)s ORDER BY at
"""
SUM_LLM_CALLS = """
SELECT count(*) AS calls, COALESCE(sum(tokens_in), 0) AS tokens_in,
       COALESCE(sum(tokens_out), 0) AS tokens_out, COALESCE(sum(cost_usd), 0) AS cost_usd
  FROM llm_calls WHERE thread_id = %(thread_id)s
"""

# --- corpus (documents + chunks) ---------------------------------------------------------------
COUNT_CHUNKS = "SELECT count(*) AS n FROM chunks"
