"""SQL of the approval gates and prompts (storage/approvals.py), plus the post look-ups the
channels need (a chat's posts, a thread id by prefix). Plain SQL both dialects accept."""

INSERT_GATE = """
INSERT INTO approval_gates (gate_id, thread_id, interrupt_id, draft_version, draft_hash, chat_id, waiting_since)
VALUES (%(gate_id)s, %(thread_id)s, %(interrupt_id)s, %(draft_version)s, %(draft_hash)s, %(chat_id)s,
        COALESCE(%(waiting_since)s, now()))
ON CONFLICT (thread_id, interrupt_id) DO NOTHING
RETURNING gate_id
"""
# The gate of an interrupt in one statement: created on first sight, or, when a channel shows it
# again, given the chat and draft hash it lacked (never replacing them). No read first: under
# SERIALIZABLE a read of the (thread, interrupt) index page made registrations of gates on
# different posts conflict. No row back = it existed and nothing changed (read it then).
REGISTER_GATE = """
INSERT INTO approval_gates (gate_id, thread_id, interrupt_id, draft_version, draft_hash, chat_id, waiting_since)
VALUES (%(gate_id)s, %(thread_id)s, %(interrupt_id)s, %(draft_version)s, %(draft_hash)s, %(chat_id)s,
        COALESCE(%(waiting_since)s, now()))
ON CONFLICT (thread_id, interrupt_id) DO UPDATE
   SET chat_id = COALESCE(approval_gates.chat_id, excluded.chat_id),
       draft_hash = COALESCE(approval_gates.draft_hash, excluded.draft_hash)
 WHERE (approval_gates.chat_id IS NULL AND excluded.chat_id IS NOT NULL)
    OR (approval_gates.draft_hash IS NULL AND excluded.draft_hash IS NOT NULL)
RETURNING *
"""
# A gate first registered without the hash of the draft it shows (a row from before migration 0014).
SET_GATE_DRAFT_HASH = """
UPDATE approval_gates SET draft_hash = COALESCE(draft_hash, %(draft_hash)s) WHERE gate_id = %(gate_id)s
"""
SELECT_GATE = "SELECT * FROM approval_gates WHERE gate_id = %(gate_id)s"
SELECT_GATE_FOR_INTERRUPT = """
SELECT * FROM approval_gates WHERE thread_id = %(thread_id)s AND interrupt_id = %(interrupt_id)s
"""
SELECT_GATES_FOR_THREAD = """
SELECT * FROM approval_gates WHERE thread_id = %(thread_id)s ORDER BY created_at
"""
SELECT_OPEN_GATES = """
SELECT g.*, p.status AS post_status, p.topic AS topic, now() AS db_now
  FROM approval_gates g JOIN posts p ON p.thread_id = g.thread_id
 WHERE g.decided_at IS NULL
 ORDER BY g.waiting_since
"""
SET_GATE_CHAT = """
UPDATE approval_gates SET chat_id = COALESCE(chat_id, %(chat_id)s) WHERE gate_id = %(gate_id)s
"""
ADD_GATE_MESSAGES = """
UPDATE approval_gates SET message_ids = message_ids || %(message_ids)s WHERE gate_id = %(gate_id)s
"""
# The one place a decision is taken: only the first claimant gets a row back. The feedback (revise)
# or reason (reject) is kept with it, so recovery can re-deliver the same answer after a crash.
# The claim also issues the gate token: the only resume value the interrupt accepts for this gate.
# An edit (edit / approve_with_edits) is claimed with its text and the hash of the draft it becomes;
# a revise may name the one section to rewrite.
CLAIM_GATE = """
UPDATE approval_gates
   SET decision = %(decision)s, decided_by = %(decided_by)s, decided_via = %(decided_via)s, decided_at = now(),
       feedback = %(feedback)s, resume_token = %(resume_token)s, run_id = COALESCE(%(run_id)s, run_id),
       edited_draft = %(edited_draft)s, edited_hash = %(edited_hash)s, section = %(section)s
 WHERE gate_id = %(gate_id)s AND decided_at IS NULL
RETURNING gate_id
"""
# A claimed human decision without a token (claimed before migration 0014): recovery issues one.
ISSUE_MISSING_TOKEN = """
UPDATE approval_gates SET resume_token = COALESCE(resume_token, %(resume_token)s)
 WHERE gate_id = %(gate_id)s AND decided_at IS NOT NULL
RETURNING resume_token
"""
# The interrupt consumed the token: once per gate; a replay of the same resume (a crash before the
# node's checkpoint) is at the same checkpoint and matches again.
CONSUME_GATE_TOKEN = """
UPDATE approval_gates
   SET resumed_at = COALESCE(resumed_at, now()), resumed_checkpoint = COALESCE(resumed_checkpoint, %(checkpoint)s)
 WHERE gate_id = %(gate_id)s AND decided_at IS NOT NULL
   AND (resumed_checkpoint IS NULL OR resumed_checkpoint = %(checkpoint)s)
RETURNING gate_id
"""
# The gates a human approved for a thread, with the draft each showed (the Publisher's check); an
# approve_with_edits approved the text of its edit (edited_hash), not the draft it showed.
SELECT_APPROVED_GATES = """
SELECT gate_id, decision, draft_version, draft_hash, edited_hash, decided_by, decided_via, resumed_at
  FROM approval_gates
 WHERE thread_id = %(thread_id)s AND decision IN ('approve', 'approve_with_edits') AND resumed_at IS NOT NULL
"""
# Undo a claim whose resume could not be started, so the gate can be answered again.
RELEASE_GATE = """
UPDATE approval_gates
   SET decision = NULL, decided_by = NULL, decided_via = NULL, decided_at = NULL, feedback = NULL,
       resume_token = NULL, run_id = NULL, edited_draft = NULL, edited_hash = NULL, section = NULL
 WHERE gate_id = %(gate_id)s AND decided_by = %(decided_by)s AND resumed_at IS NULL
   AND (run_id IS NULL OR run_id = %(run_id)s)
"""
SET_GATE_RUN = "UPDATE approval_gates SET run_id = %(run_id)s WHERE gate_id = %(gate_id)s"
MARK_GATE_REMINDED = """
UPDATE approval_gates SET reminded_at = now()
 WHERE gate_id = %(gate_id)s AND reminded_at IS NULL AND decided_at IS NULL
RETURNING gate_id
"""
# A re-asked gate (same draft, new interrupt) keeps the old one's reminder/escalation marks, so the
# sweep does not remind or escalate the same draft twice.
CARRY_GATE_MARKS = """
UPDATE approval_gates
   SET reminded_at = COALESCE(reminded_at, %(reminded_at)s),
       escalated_at = COALESCE(escalated_at, %(escalated_at)s)
 WHERE gate_id = %(gate_id)s
"""
MARK_GATE_ESCALATED = """
UPDATE approval_gates SET escalated_at = now()
 WHERE gate_id = %(gate_id)s AND escalated_at IS NULL AND decided_at IS NULL
RETURNING gate_id
"""

INSERT_PROMPT = """
INSERT INTO approval_prompts (chat_id, message_id, gate_id, action, asked_user)
VALUES (%(chat_id)s, %(message_id)s, %(gate_id)s, %(action)s, %(asked_user)s)
ON CONFLICT (chat_id, message_id) DO NOTHING
"""
SELECT_PROMPT = """
SELECT * FROM approval_prompts WHERE chat_id = %(chat_id)s AND message_id = %(message_id)s
"""

# --- posts as the channels see them ----------------------------------------------------------------
LIST_POSTS_FOR_CHAT = """
SELECT thread_id, topic, requester, source, status, status_reason, revision,
       tokens_in, tokens_out, cost_usd, llm_calls, created_at, updated_at
  FROM posts
 WHERE metadata->>'chat_id' = %(chat_id)s
 ORDER BY created_at DESC
 LIMIT %(limit)s
"""
FIND_THREAD_IDS_BY_PART = """
SELECT thread_id FROM posts
 WHERE thread_id = %(exact)s OR thread_id LIKE %(prefix)s OR thread_id LIKE %(suffix)s
 ORDER BY (thread_id = %(exact)s) DESC, created_at DESC
 LIMIT %(limit)s
"""
