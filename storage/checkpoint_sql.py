"""SQL of our PostgreSQL checkpoint saver's write path (storage/checkpointer.py).

Same tables, columns and conflict rules as langgraph-checkpoint-postgres' own statements
(UPSERT_CHECKPOINT_BLOBS_SQL, UPSERT_CHECKPOINTS_SQL, UPSERT/INSERT_CHECKPOINT_WRITES_SQL), but one
statement per call instead of one per row: a checkpoint with its new channel blobs is one INSERT
(a data-modifying CTE), a task's writes one INSERT over unnest() of column arrays. The library
sends each blob and each write as its own statement (a post made ~250 of them).
"""

# A checkpoint and the blobs of the channels it changed. The blobs never conflict with each other
# in one call (one per channel); an existing (channel, version) is kept, as the library does.
PUT_CHECKPOINT = """
WITH blobs AS (
    INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
    SELECT %(thread_id)s, %(checkpoint_ns)s, b.channel, b.version, b.type, b.blob
      FROM unnest(%(channels)s::text[], %(versions)s::text[], %(types)s::text[], %(blobs)s::bytea[])
           AS b(channel, version, type, blob)
    ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
)
INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata)
VALUES (%(thread_id)s, %(checkpoint_ns)s, %(checkpoint_id)s, %(parent_checkpoint_id)s, %(checkpoint)s, %(metadata)s)
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
DO UPDATE SET checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata
"""

_WRITES_INSERT = """
INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)
SELECT %(thread_id)s, %(checkpoint_ns)s, %(checkpoint_id)s, %(task_id)s, %(task_path)s,
       w.idx, w.channel, w.type, w.blob
  FROM unnest(%(idx)s::integer[], %(channels)s::text[], %(types)s::text[], %(blobs)s::bytea[])
       AS w(idx, channel, type, blob)
"""
# Writes to the special channels only (errors, interrupts, resumes, scheduled): replaced on
# conflict (the caller drops duplicates of an idx, keeping the last, as one-by-one upserts would).
PUT_WRITES_UPSERT = _WRITES_INSERT + """
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
DO UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob
"""
# Any other task's writes: a write already stored for (task, idx) is kept.
PUT_WRITES_INSERT = _WRITES_INSERT + """
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO NOTHING
"""
