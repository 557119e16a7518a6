"""SQL of the learning loop: draft rows, what the training export reads, the adapter registry."""

# --- drafts -------------------------------------------------------------------------------------
UPSERT_DRAFT = """
INSERT INTO drafts (thread_id, version, title, body, content_hash, model, prompt, reason, author, messages)
VALUES (%(thread_id)s, %(version)s, %(title)s, %(body)s, %(content_hash)s, %(model)s, %(prompt)s,
        %(reason)s, %(author)s, %(messages)s)
ON CONFLICT (thread_id, version) DO UPDATE
   SET title = excluded.title, body = excluded.body, content_hash = excluded.content_hash,
       model = excluded.model, prompt = excluded.prompt, reason = excluded.reason,
       author = excluded.author, messages = excluded.messages, created_at = now()
"""
SELECT_DRAFTS_OF_POST = """
SELECT thread_id, version, title, body, content_hash, model, prompt, reason, author, created_at
  FROM drafts WHERE thread_id = %(thread_id)s ORDER BY version
"""

# --- the training export -----------------------------------------------------------------------------
# Posts a human has decided: published or rejected, or answered at the gate at least once.
SELECT_DECIDED_POSTS = """
SELECT p.thread_id, p.topic, p.status, p.created_at
  FROM posts p
 WHERE p.status IN ('published', 'rejected')
    OR EXISTS (SELECT 1 FROM events e WHERE e.thread_id = p.thread_id AND e.kind = 'human_decision')
 ORDER BY p.created_at, p.thread_id
"""
SELECT_TRAINING_DRAFTS = """
SELECT thread_id, version, title, body, content_hash, model, prompt, reason, author, messages, created_at
  FROM drafts WHERE thread_id = ANY(%(threads)s) ORDER BY thread_id, version
"""
# The human decisions, oldest first; detail holds decision, draft_version, payload_hash, feedback.
SELECT_TRAINING_DECISIONS = """
SELECT thread_id, actor AS reviewer, at,
       detail->>'decision' AS decision, detail->>'draft_version' AS draft_version,
       detail->>'payload_hash' AS payload_hash, detail->>'feedback' AS feedback,
       detail->>'checkpoint_id' AS checkpoint_id
  FROM events
 WHERE kind = 'human_decision' AND thread_id = ANY(%(threads)s)
 ORDER BY thread_id, at, id
"""
SELECT_TRAINING_PUBLICATIONS = """
SELECT thread_id, draft_hash, min(published_at) AS published_at
  FROM publications WHERE thread_id = ANY(%(threads)s)
 GROUP BY thread_id, draft_hash
"""

# --- adapter registry ------------------------------------------------------------------------------
INSERT_ADAPTER = """
INSERT INTO adapters (name, family, base_model, path, data_sha256, manifest)
VALUES (%(name)s, %(family)s, %(base_model)s, %(path)s, %(data_sha256)s, %(manifest)s)
ON CONFLICT (name) DO UPDATE
   SET path = excluded.path, manifest = excluded.manifest, base_model = excluded.base_model,
       data_sha256 = excluded.data_sha256
 WHERE adapters.status = 'candidate'
RETURNING name, status
"""
SELECT_ADAPTER = "SELECT * FROM adapters WHERE name = %(name)s"
SELECT_ADAPTER_FOR_UPDATE = "SELECT * FROM adapters WHERE name = %(name)s FOR UPDATE"
SELECT_PROMOTED_ADAPTER = """
SELECT * FROM adapters WHERE family = %(family)s AND status = 'promoted'
"""
SELECT_PROMOTED_FOR_UPDATE = """
SELECT * FROM adapters WHERE family = %(family)s AND status = 'promoted' FOR UPDATE
"""
LIST_ADAPTERS = """
SELECT name, family, base_model, path, status, data_sha256, created_at, decided_at,
       manifest->>'examples' AS examples, manifest->>'loss_last' AS loss_last, evaluation
  FROM adapters
 WHERE (%(family)s::TEXT IS NULL OR family = %(family)s::TEXT)
 ORDER BY created_at DESC
"""
SET_ADAPTER_STATUS = """
UPDATE adapters SET status = %(status)s, evaluation = COALESCE(%(evaluation)s, evaluation), decided_at = now()
 WHERE name = %(name)s
"""
