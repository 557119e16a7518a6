"""SQL of the web page's login sessions (storage/sessions.py). Plain SQL both dialects accept."""

INSERT_SESSION = """
INSERT INTO web_sessions (session_id, identity, role, expires_at)
VALUES (%(session_id)s, %(identity)s, %(role)s, now() + make_interval(secs => %(max_age_s)s))
"""
SELECT_LIVE_SESSION = """
SELECT session_id, identity, role FROM web_sessions
 WHERE session_id = %(session_id)s AND revoked_at IS NULL AND expires_at > now()
"""
REVOKE_SESSION = "UPDATE web_sessions SET revoked_at = now() WHERE session_id = %(session_id)s AND revoked_at IS NULL"
DELETE_EXPIRED_SESSIONS = "DELETE FROM web_sessions WHERE expires_at < now() - INTERVAL '1 day'"
