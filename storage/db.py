"""Connection pool, dialect detection and the one transaction helper every write goes through."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import psycopg
from pgvector.psycopg.vector import VectorBinaryDumper
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random_exponential,
)

from config import Settings, get_settings
from storage import sql
from storage.embedded import start_embedded

log = logging.getLogger(__name__)

Dialect = Literal["postgres", "cockroachdb"]
T = TypeVar("T")

# SQLSTATEs worth another attempt: serialization failure, commit outcome unknown (CockroachDB
# retries "ambiguous result" with 40003), admin shutdown / crash shutdown / cannot connect now.
RETRYABLE_SQLSTATES = {"40001", "40003", "57P01", "57P02", "57P03"}


class TransactionRetryExhausted(RuntimeError):
    """A transaction kept failing with retryable errors past the configured attempts."""


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached, or refused us; the message says why and what to check."""


def url_without_password(url: str) -> str:
    """The URL (or key=value conninfo) to show in messages: everything but the password."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(an unparsable database URL)"
    host, port, dbname, user = (params.get(k) for k in ("host", "port", "dbname", "user"))
    where = f"{host or 'localhost'}:{port or 5432}/{dbname or user or ''}"
    return f"{user + '@' if user else ''}{where}"


# The server answered, but is not taking connections yet (a FATAL that waiting can change).
_FATAL_BUT_TRANSIENT = re.compile(r"starting up|shutting down|recovery|too many clients|not yet accepting", re.IGNORECASE)


def _not_reachable_yet(exc: BaseException) -> bool:
    # libpq reports connection failures without a SQLSTATE. No "FATAL:" from the server means it
    # was never reached (refused, timed out, name not resolved: a container not up yet). A FATAL
    # about the role, password, pg_hba or database will not change by waiting.
    if not isinstance(exc, psycopg.OperationalError):
        return False
    text = str(exc)
    return "FATAL:" not in text or bool(_FATAL_BUT_TRANSIENT.search(text))


async def check_reachable(url: str, wait_s: float) -> None:
    """One direct connection before the pool opens: a clear DatabaseUnavailable within wait_s
    instead of the pool retrying in the background until its timeout (and a traceback)."""
    shown = url_without_password(url)

    def _waiting(state) -> None:
        if state.attempt_number == 1:  # one warning, not one per attempt
            log.warning("database %s not reachable yet (%s); retrying for up to %.0f s (NEWSROOM_DB_CONNECT_WAIT_S)",
                        shown, _first_line(state.outcome.exception()), wait_s)

    try:
        async for attempt in AsyncRetrying(retry=retry_if_exception(_not_reachable_yet), stop=stop_after_delay(wait_s),
                                           wait=wait_exponential(multiplier=0.2, max=2.0), before_sleep=_waiting,
                                           reraise=True):
            with attempt:
                conn = await psycopg.AsyncConnection.connect(url, connect_timeout=min(10, max(2, int(wait_s))))
                await conn.close()
    except psycopg.Error as err:
        hint = ("is the server up and the host/port right? Unset DATABASE_URL to use the embedded PostgreSQL"
                if _not_reachable_yet(err) else "check the user, password and database name in DATABASE_URL")
        raise DatabaseUnavailable(f"cannot connect to the database {shown}: {_first_line(err)} ({hint})") from None


def _first_line(err: BaseException | None) -> str:
    text = str(err or "").strip()
    line = (text.splitlines() or [type(err).__name__])[0]
    return line.split("FATAL:", 1)[-1].strip()[:300] if "FATAL:" in line else line[:300]


def is_retryable(exc: BaseException) -> bool:
    # The pool's own errors subclass OperationalError but are not worth another attempt:
    # PoolTimeout already waited pool_timeout_s for a connection (retrying it multiplied that
    # wait by tx_max_attempts), and a closed pool stays closed.
    if isinstance(exc, (PoolTimeout, PoolClosed)):
        return False
    if isinstance(exc, psycopg.Error):
        state = getattr(exc, "sqlstate", None)
        if state in RETRYABLE_SQLSTATES or (state or "").startswith("08"):
            return True
        # A dropped connection surfaces as OperationalError without a SQLSTATE.
        if isinstance(exc, psycopg.OperationalError) and state is None:
            return True
    return False


def detect_dialect(version_string: str) -> Dialect:
    return "cockroachdb" if "cockroachdb" in version_string.lower() else "postgres"


def parse_server_version(version_string: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) from `SELECT version()`: 'CockroachDB CCL v25.3.1 (...)' or
    'PostgreSQL 18.1 on ...' (PostgreSQL has no patch level: 0). None if unrecognised."""
    m = re.search(r"cockroachdb\s+\w+\s+v(\d+)\.(\d+)(?:\.(\d+))?", version_string, re.IGNORECASE) or re.search(
        r"postgresql\s+(\d+)(?:\.(\d+))?(?:\.(\d+))?", version_string, re.IGNORECASE
    )
    if not m:
        return None
    return tuple(int(g) if g else 0 for g in m.groups())  # type: ignore[return-value]


@dataclass
class TxStats:
    commits: int = 0
    retries: int = 0
    by_sqlstate: dict[str, int] = field(default_factory=dict)
    exhausted: int = 0
    max_attempts: int = 0  # the most attempts a committed transaction needed


class UntypedVectorDumper(VectorBinaryDumper):
    """A numpy array as a query parameter: pgvector's binary form (4 bytes a value) instead of a
    text literal that the client prints and the server parses (a 384-d literal took ~80 us to
    print). Type oid 0 ("unknown"): the server takes the type from the statement's own
    `%(q)s::vector(n)` cast, so a new connection needs no type lookup (pgvector's
    register_vector does one per connection). Only for SQL that casts; CockroachDB's paths send
    text literals (its docs do not describe binary vector input)."""

    oid = 0


async def _configure(conn: psycopg.AsyncConnection) -> None:
    conn.adapters.register_dumper("numpy.ndarray", UntypedVectorDumper)
    # psycopg then opens each conn.transaction() with BEGIN ISOLATION LEVEL SERIALIZABLE
    # (CockroachDB's default and only level for our purposes; PostgreSQL's strictest), and the
    # session default makes a single statement sent without BEGIN (Database.statement, its own
    # implicit transaction) serializable too. One round trip per new connection.
    await conn.set_isolation_level(psycopg.IsolationLevel.SERIALIZABLE)
    await conn.execute(sql.SET_SESSION_SERIALIZABLE)


def resolve_database_url(settings: Settings) -> str:
    """DATABASE_URL if set, otherwise the embedded PostgreSQL in the data dir (started here)."""
    if settings.database_url:
        return settings.database_url
    return start_embedded(settings.pg_data_dir)


class IdleCheckedPool(AsyncConnectionPool):
    """The pool, with a checkout check skipped for a connection returned moments ago.

    A round trip per checkout was ~5% of the Agent Server's CPU under load (P2). A connection
    used within the last `check_idle_s` seconds is handed out unchecked; if the server died in that
    window its first statement fails with 08xxx, which Database.transaction and the checkpoint
    saver retry on a fresh connection.

    The return time is noted in putconn(), not in a `reset=` callback: with a reset callback the
    pool hands every returned connection to a maintenance worker, so a checkout made before that
    worker ran found the pool empty and grew it by a connection. That grew the pool in plain
    sequential use, and left a connect running in a worker when a short-lived loop ended (which
    used to hang asyncio.run's shutdown: storage/loop_scoped.py).
    """

    def __init__(self, *args, check_idle_s: float, **kwargs):
        self.check_idle_s = check_idle_s
        self._returned_at: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        super().__init__(*args, check=self._check_if_idle, **kwargs)

    async def putconn(self, conn: psycopg.AsyncConnection) -> None:
        self._returned_at[conn] = time.monotonic()
        await super().putconn(conn)

    async def _check_if_idle(self, conn: psycopg.AsyncConnection) -> None:
        at = self._returned_at.get(conn)
        if at is None or time.monotonic() - at >= self.check_idle_s:
            await AsyncConnectionPool.check_connection(conn)


class Database:
    """An async psycopg pool plus the dialect and a retrying transaction runner."""

    def __init__(self, url: str, settings: Settings | None = None, *, name: str = "newsroom"):
        self.settings = settings or get_settings()
        self.url = url
        self.dialect: Dialect = "postgres"
        self.server_version = ""
        self.stats = TxStats()
        s = self.settings
        self.pool = IdleCheckedPool(
            url,
            min_size=s.pool_min_size,
            max_size=s.pool_max_size,
            max_idle=s.pool_max_idle_s,
            timeout=s.pool_timeout_s,
            # Checked on checkout when it sat idle: one broken by a server restart is replaced.
            check_idle_s=s.pool_check_idle_s,
            reconnect_timeout=max(60.0, s.pool_timeout_s),
            kwargs={"autocommit": True, "row_factory": dict_row},
            # Every transaction is SERIALIZABLE whatever the server's default: our read-modify-write
            # paths (usage totals, decisions) rely on it. An external PostgreSQL defaults to
            # READ COMMITTED, where 8 writers x 20 add_post_usage kept 31 of 160 updates.
            configure=_configure,
            name=name,
            open=False,
        )

    async def open(self) -> Database:
        await check_reachable(self.url, self.settings.db_connect_wait_s)
        await self.pool.open(wait=True, timeout=self.settings.pool_timeout_s)
        async with self.pool.connection() as conn:
            row = await (await conn.execute(sql.SELECT_VERSION)).fetchone()
        self.server_version = row["version"]
        self.dialect = detect_dialect(self.server_version)
        return self

    async def close(self) -> None:
        await self.pool.close()

    async def __aenter__(self) -> Database:
        return await self.open()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def transaction(
        self, work: Callable[[psycopg.AsyncConnection], Awaitable[T]], *, attempts: int | None = None
    ) -> T:
        """Run work(conn) in one transaction, retrying serialization and connection failures.

        work must be safe to run again from the start (it is, when it only touches the DB).
        """

        async def _once():
            async with self.pool.connection() as conn, conn.transaction():
                return await work(conn)

        return await self._retrying(_once, attempts or self.settings.tx_max_attempts)

    async def statement(self, query: str, params: dict | tuple | None = None, *,
                        attempts: int | None = None) -> list[dict]:
        """One statement sent without BEGIN/COMMIT: its own implicit transaction (SERIALIZABLE:
        the session default), atomic however many rows or tables it writes (a data-modifying CTE
        is one statement). Two round trips fewer than transaction() around it, retried the same
        way; like there, the statement must be safe to run again. Returns its rows ([] if none)."""

        async def _once():
            async with self.pool.connection() as conn:
                cur = await conn.execute(query, params)
                return await cur.fetchall() if cur.description is not None else []

        return await self._retrying(_once, attempts or self.settings.tx_max_attempts)

    async def pipelined(self, statements: list[tuple[str, dict | None]], *, attempts: int | None = None) -> list[dict]:
        """PostgreSQL: the statements in one READ ONLY transaction sent in ONE round trip
        (pipeline mode: BEGIN, the statements, COMMIT, one Sync); returns the last one's rows.
        For reads whose settings are transaction-local (set_config(..., true)), e.g. the vector
        search's hnsw.ef_search. BEGIN and COMMIT are sent as statements because psycopg's
        conn.transaction() inside a pipeline syncs three times (it nests a pipeline around BEGIN
        and another around the body). Retried like transaction(); the statements must be safe to
        run again."""
        if not statements:
            raise ValueError("pipelined() needs at least one statement")

        async def _once():
            async with self.pool.connection() as conn:
                try:
                    async with conn.pipeline():
                        await conn.execute(sql.BEGIN_READ_ONLY)
                        for query, params in statements:
                            cur = await conn.execute(query, params)
                        await conn.execute(sql.COMMIT)
                except BaseException:
                    # A failed statement leaves the transaction open and aborted (the pipeline
                    # skipped the COMMIT): end it here, not in the pool's reset (which warns).
                    if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                        with contextlib.suppress(psycopg.Error):
                            await conn.rollback()
                    raise
                return await cur.fetchall() if cur.description is not None else []

        return await self._retrying(_once, attempts or self.settings.tx_max_attempts)

    async def _retrying(self, once: Callable[[], Awaitable[T]], max_attempts: int) -> T:
        # The first attempt runs bare (tenacity's bookkeeping cost more CPU than a statement on a
        # held connection); only a retryable failure hands over to tenacity for the rest.
        try:
            result = await once()
        except Exception as exc:  # noqa: BLE001 - classified right below
            if not is_retryable(exc):
                raise
            first = exc
        else:
            self.stats.commits += 1
            self.stats.max_attempts = max(self.stats.max_attempts, 1)
            return result

        def _count(code_of: BaseException | None, attempt_number: int) -> None:
            code = getattr(code_of, "sqlstate", None) or type(code_of).__name__
            self.stats.retries += 1
            self.stats.by_sqlstate[code] = self.stats.by_sqlstate.get(code, 0) + 1
            log.debug("transaction retry %d after %s", attempt_number, code)

        if max_attempts <= 1:
            self.stats.exhausted += 1
            raise TransactionRetryExhausted(
                f"transaction failed after {max_attempts} attempts: {getattr(first, 'sqlstate', '')} {first}"
            ) from first
        _count(first, 1)
        await asyncio.sleep(random.uniform(0, 0.01))  # what tenacity's wait below gives after attempt 1
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(is_retryable),
                stop=stop_after_attempt(max_attempts - 1),
                # after attempt n (n >= 2) up to 0.01 * 2^(n-1) s, as one tenacity loop would wait
                wait=wait_random_exponential(multiplier=0.02, max=1.0),
                before_sleep=lambda state: _count(state.outcome.exception() if state.outcome else None,
                                                  state.attempt_number + 1),
                reraise=False,
            ):
                with attempt:
                    result = await once()
                used = attempt.retry_state.attempt_number + 1
            self.stats.commits += 1
            self.stats.max_attempts = max(self.stats.max_attempts, used)
            return result
        except RetryError as err:
            self.stats.exhausted += 1
            last = err.last_attempt.exception()
            raise TransactionRetryExhausted(
                f"transaction failed after {max_attempts} attempts: "
                f"{getattr(last, 'sqlstate', '')} {last}"
            ) from last

    async def fetch(self, query: str, params: dict | tuple | None = None) -> list[dict]:
        """A read outside any write transaction: one statement, its own implicit (serializable)
        transaction, retried like one. One round trip: with BEGIN and COMMIT around it a read cost
        twice the CPU; in the contention drill (evals/chaos/writers.py) reads sent this way made
        writers retry no more than reads in READ ONLY transactions did."""
        return await self.statement(query, params)

    async def fetchone(self, query: str, params: dict | tuple | None = None) -> dict | None:
        rows = await self.fetch(query, params)
        return rows[0] if rows else None
