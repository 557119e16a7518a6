"""Web page login sessions: the row behind a signed session cookie, so logout really ends it."""
from __future__ import annotations

import secrets

from storage import sessions_sql as q
from storage.db import Database


async def open_session(db: Database, *, identity: str, role: str, max_age_s: float) -> str:
    """A new session id (the cookie signs it); expired rows are cleaned on the way."""
    session_id = secrets.token_urlsafe(24)

    async def _work(conn):
        await conn.execute(q.DELETE_EXPIRED_SESSIONS)
        await conn.execute(q.INSERT_SESSION, {"session_id": session_id, "identity": identity, "role": role,
                                              "max_age_s": float(max_age_s)})

    await db.transaction(_work)
    return session_id


async def live_session(db: Database, session_id: str) -> dict | None:
    """(identity, role) of a session not revoked and not expired, or None."""
    if not session_id or "\x00" in session_id:
        return None
    return await db.fetchone(q.SELECT_LIVE_SESSION, {"session_id": session_id})


async def revoke_session(db: Database, session_id: str) -> None:
    async def _work(conn):
        await conn.execute(q.REVOKE_SESSION, {"session_id": session_id})

    await db.transaction(_work)


__all__ = ["live_session", "open_session", "revoke_session"]
