"""SQL of scheduled publishes, chat time zones, recurring topics and send intents
(storage/schedules.py; migration 0031_scheduling). Plain SQL both dialects accept, except where a
statement is named per dialect (FIRE_DUE_*): storage.schedules picks by Database.dialect."""

INSERT_SCHEDULE = """
INSERT INTO publish_schedules (schedule_id, gate_id, thread_id, publish_at, timezone, scheduled_by, scheduled_via,
                               chat_id)
VALUES (%(schedule_id)s, %(gate_id)s, %(thread_id)s, %(publish_at)s, %(timezone)s, %(scheduled_by)s,
        %(scheduled_via)s, %(chat_id)s)
RETURNING *
"""
SELECT_SCHEDULE = """
SELECT s.*, p.topic AS topic, now() AS db_now FROM publish_schedules s JOIN posts p ON p.thread_id = s.thread_id
 WHERE s.schedule_id = %(schedule_id)s
"""
SELECT_LIVE_SCHEDULE_FOR_THREAD = """
SELECT s.*, p.topic AS topic, now() AS db_now FROM publish_schedules s JOIN posts p ON p.thread_id = s.thread_id
 WHERE s.thread_id = %(thread_id)s AND s.state = 'scheduled'
 ORDER BY s.created_at DESC LIMIT 1
"""
# Pending schedules, soonest first; chat_id NULL = every chat (the CLI, an approver's view).
LIST_SCHEDULED = """
SELECT s.*, p.topic AS topic, now() AS db_now FROM publish_schedules s JOIN posts p ON p.thread_id = s.thread_id
 WHERE s.state = 'scheduled' AND (%(chat_id)s::BIGINT IS NULL OR s.chat_id = %(chat_id)s::BIGINT)
 ORDER BY s.publish_at
 LIMIT %(limit)s
"""
RESCHEDULE = """
UPDATE publish_schedules SET publish_at = %(publish_at)s, timezone = %(timezone)s, updated_at = now()
 WHERE schedule_id = %(schedule_id)s AND state = 'scheduled'
RETURNING *
"""
CANCEL_SCHEDULE = """
UPDATE publish_schedules SET state = 'canceled', canceled_at = now(), canceled_by = %(canceled_by)s,
       updated_at = now()
 WHERE schedule_id = %(schedule_id)s AND state = 'scheduled'
RETURNING *
"""
# Claim the due schedules: each row is fired by exactly one sweeper. PostgreSQL has no
# UPDATE ... LIMIT: the rows are picked in a sub-select that skips rows another sweeper holds.
FIRE_DUE_POSTGRES = """
UPDATE publish_schedules SET state = 'fired', fired_at = now(), fired_by = %(holder)s, updated_at = now()
 WHERE schedule_id IN (SELECT schedule_id FROM publish_schedules
                        WHERE state = 'scheduled' AND publish_at <= now()
                        ORDER BY publish_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
   AND state = 'scheduled'
RETURNING *
"""
# CockroachDB: UPDATE ... ORDER BY ... LIMIT is its own extension (docs: UPDATE, "Limit the number
# of rows"); under SERIALIZABLE a second sweeper racing for a row gets 40001 and the retry helper
# re-runs it, finding the row fired. Not run here (no CockroachDB on this machine).
FIRE_DUE_COCKROACHDB = """
UPDATE publish_schedules SET state = 'fired', fired_at = now(), fired_by = %(holder)s, updated_at = now()
 WHERE state = 'scheduled' AND publish_at <= now()
 ORDER BY publish_at LIMIT %(limit)s
RETURNING *
"""
SET_SCHEDULE_RUN = """
UPDATE publish_schedules SET run_id = %(run_id)s, last_error = NULL, updated_at = now()
 WHERE schedule_id = %(schedule_id)s
"""
# A fire whose resume could not start (the server refused, the thread was busy): back to
# scheduled, so the next pass tries again; the error is kept for `newsroom scheduled`.
UNFIRE_SCHEDULE = """
UPDATE publish_schedules SET state = 'scheduled', fired_at = NULL, fired_by = NULL, last_error = %(error)s,
       updated_at = now()
 WHERE schedule_id = %(schedule_id)s AND state = 'fired' AND run_id IS NULL
"""

UPSERT_CHAT_TIMEZONE = """
INSERT INTO chat_settings (chat_id, timezone, updated_by) VALUES (%(chat_id)s, %(timezone)s, %(updated_by)s)
ON CONFLICT (chat_id) DO UPDATE SET timezone = excluded.timezone, updated_by = excluded.updated_by, updated_at = now()
"""
SELECT_CHAT_TIMEZONE = "SELECT timezone FROM chat_settings WHERE chat_id = %(chat_id)s"

INSERT_RECURRING = """
INSERT INTO recurring_topics (recurring_id, every, at_time, weekday, timezone, topics, next_run_at, created_by,
                              chat_id, run_overrides)
VALUES (%(recurring_id)s, %(every)s, %(at_time)s, %(weekday)s, %(timezone)s, %(topics)s, %(next_run_at)s,
        %(created_by)s, %(chat_id)s, %(run_overrides)s)
RETURNING *, now() AS db_now
"""
LIST_RECURRING = """
SELECT *, now() AS db_now FROM recurring_topics WHERE canceled_at IS NULL ORDER BY next_run_at
"""
SELECT_RECURRING = "SELECT *, now() AS db_now FROM recurring_topics WHERE recurring_id = %(recurring_id)s"
DUE_RECURRING = """
SELECT *, now() AS db_now FROM recurring_topics
 WHERE canceled_at IS NULL AND next_run_at <= now()
 ORDER BY next_run_at LIMIT %(limit)s
"""
# Advance one occurrence: only the sweeper that still sees it at (next_index, next_run_at) wins.
ADVANCE_RECURRING = """
UPDATE recurring_topics
   SET next_index = next_index + 1, next_run_at = %(next_run_at)s, last_thread_id = %(thread_id)s, last_run_at = now()
 WHERE recurring_id = %(recurring_id)s AND next_index = %(index)s AND canceled_at IS NULL
RETURNING *
"""
CANCEL_RECURRING = """
UPDATE recurring_topics SET canceled_at = now(), canceled_by = %(canceled_by)s
 WHERE recurring_id = %(recurring_id)s AND canceled_at IS NULL
RETURNING *
"""

INSERT_INTENT = """
INSERT INTO publish_intents (publish_key, thread_id, destination, draft_hash, title)
VALUES (%(publish_key)s, %(thread_id)s, %(destination)s, %(draft_hash)s, %(title)s)
ON CONFLICT (publish_key) DO NOTHING
RETURNING started_at
"""
# Intents of a thread's destination with no publications row: sends whose outcome is unknown.
SELECT_OPEN_INTENTS = """
SELECT i.* FROM publish_intents i
 WHERE i.thread_id = %(thread_id)s AND i.destination = %(destination)s
   AND NOT EXISTS (SELECT 1 FROM publications p WHERE p.publish_key = i.publish_key)
 ORDER BY i.started_at
"""
SELECT_INTENT = "SELECT * FROM publish_intents WHERE publish_key = %(publish_key)s"
DELETE_INTENT = "DELETE FROM publish_intents WHERE publish_key = %(publish_key)s"
