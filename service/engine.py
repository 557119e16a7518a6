"""The engine a post runs on, behind one interface: LocalEngine (our graph on our checkpointer, in
this process: the CLI, the demo, scripts, recovery without a server) and ServerEngine (the Agent
Server through langgraph_sdk: Telegram, the web page, `newsroom serve`'s recovery, so Studio sees
the runs). service/operations.py writes each operation on a post once over either engine.

What the two share is said here once: the graph's id, the snapshot of a thread (RunSnapshot, the
same whichever engine read it), the approval interrupt a thread waits at (PendingInterrupt), and the
one write a channel makes into a graph's state: an update as the supervisor, whose router then
decides where the graph goes (retry: to the desk that failed; cancel: to the end).
"""
from __future__ import annotations

import contextlib
import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from agents.models import Draft
from service.leases import exclusively
from service.views import progress_line
from tools.tracing import traces_flushed

GRAPH_ID = "newsroom"  # the graph's name in langgraph.json
ProgressFn = Callable[[str, str, float], None]  # (desk, message, seconds since start)


class PendingInterrupt(BaseModel):
    """The approval interrupt a thread is stopped at."""

    thread_id: str
    interrupt_id: str
    payload: dict[str, Any]
    checkpoint_id: str | None = None

    @property
    def draft_version(self) -> int:
        return int((self.payload.get("draft") or {}).get("version") or 0)

    @property
    def draft_hash(self) -> str:
        """The shown draft's hash, as agents.models.Draft.content_hash computes it."""
        d = self.payload.get("draft") or {}
        return hashlib.sha256(f"{d.get('title', '')}\n\n{d.get('body', '')}".encode()).hexdigest()

    @property
    def draft(self) -> Draft:
        """The shown draft (what an edit edits)."""
        d = self.payload.get("draft") or {}
        return Draft(version=self.draft_version, title=str(d.get("title", "")), body=str(d.get("body", "")),
                     prompt=str(d.get("prompt", "")), model=str(d.get("model", "")))

    @property
    def sections(self) -> list[str]:
        return [str(h) for h in self.payload.get("sections") or []]


@dataclass
class RunSnapshot:
    thread_id: str
    next: tuple[str, ...]
    values: dict[str, Any]
    interrupt: dict | None = None
    interrupt_id: str | None = None
    checkpoint_id: str | None = None
    events: list[str] = field(default_factory=list)
    steps: int = 0  # node updates the drive that produced this snapshot streamed (0 = it did nothing)
    interrupts: list[tuple[Any, str | None]] = field(default_factory=list)  # every (value, id), in order

    @classmethod
    def of(cls, thread_id: str, *, next: Any, values: dict | None, interrupts: list[tuple[Any, str | None]],
           checkpoint_id: str | None) -> RunSnapshot:
        """The one way a snapshot is made, from what either engine read (the last interrupt is the one shown)."""
        interrupt, interrupt_id = interrupts[-1] if interrupts else (None, None)
        return cls(thread_id=thread_id, next=tuple(next or ()), values=values or {}, interrupt=interrupt,
                   interrupt_id=interrupt_id, checkpoint_id=checkpoint_id, interrupts=list(interrupts))

    @property
    def waiting_for_human(self) -> bool:
        return self.interrupt is not None

    @property
    def pending(self) -> PendingInterrupt | None:
        """The approval interrupt this thread waits at (one whose payload carries a draft), or None."""
        for value, interrupt_id in self.interrupts:
            if isinstance(value, dict) and "draft" in value:
                return PendingInterrupt(thread_id=self.thread_id, interrupt_id=str(interrupt_id), payload=value,
                                        checkpoint_id=self.checkpoint_id)
        return None


def new_thread_id() -> str:
    return str(uuid.uuid4())


# --- reading a thread's state, in each engine's own format --------------------------------------------

def local_interrupts(state) -> list[tuple[Any, str | None]]:
    """(value, id) of every interrupt of a thread's StateSnapshot (the in-process graph)."""
    return [(intr.value, getattr(intr, "id", None)) for task in state.tasks for intr in task.interrupts]


def latest_interrupt(state) -> tuple[Any, str | None]:
    """(value, id) of the last interrupt of a thread's StateSnapshot; (None, None) when none waits."""
    return (local_interrupts(state) or [(None, None)])[-1]


def server_interrupts(state: dict) -> list[tuple[Any, str]]:
    """(value, interrupt id) of every interrupt in an Agent Server thread state (threads.get_state)."""
    return [(intr.get("value"), str(intr.get("id") or task.get("id")))
            for task in state.get("tasks") or [] for intr in task.get("interrupts") or []]


def server_checkpoint_id(state: dict) -> str | None:
    return state.get("checkpoint_id") or (state.get("checkpoint") or {}).get("checkpoint_id")


def not_on_this_server(err: Exception) -> bool:
    """The Agent Server's answer for a thread it does not hold: 404, or 422 for an id it could never
    hold (not a UUID: a CLI or script run, in-process)."""
    return getattr(getattr(err, "response", None), "status_code", None) in (404, 422)


def _plain(value: Any) -> Any:
    """State values as JSON data, as the Agent Server's clients see them (a desk subgraph hands
    some channels back as validated models)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


async def snapshot(graph, config) -> RunSnapshot:
    """The in-process graph's thread as a RunSnapshot."""
    state = await graph.aget_state(config)
    return RunSnapshot.of(config["configurable"]["thread_id"], next=state.next, values=_plain(dict(state.values)),
                          interrupts=local_interrupts(state),
                          checkpoint_id=(state.config.get("configurable") or {}).get("checkpoint_id"))


def server_snapshot(thread_id: str, state: dict) -> RunSnapshot:
    """An Agent Server thread state (threads.get_state) as a RunSnapshot."""
    return RunSnapshot.of(thread_id, next=state.get("next"), values=state.get("values"),
                          interrupts=server_interrupts(state), checkpoint_id=server_checkpoint_id(state))


# --- the interface -------------------------------------------------------------------------------------

class Engine(Protocol):
    """What an operation on a post needs from whatever runs the graph."""

    async def view(self, thread_id: str) -> RunSnapshot | None:
        """The thread as its latest checkpoint has it; None when this engine holds no such thread."""

    async def pending(self, thread_id: str) -> PendingInterrupt | None:
        """The approval interrupt the thread waits at, or None (running, finished, unknown)."""

    async def run(self, thread_id: str, graph_input: Any, *, overrides: dict | None = None,
                  progress: ProgressFn | None = None, metadata: dict | None = None) -> RunSnapshot:
        """Run (input, a Command(resume=...), or None: carry on from the checkpoint) until the graph
        ends or stops at the gate; the run's per-run overrides go in config["configurable"]."""

    async def submit(self, thread_id: str, graph_input: Any, *, config: dict | None = None) -> str:
        """Hand a run to the engine (a channel's decision resumes with it); returns its run id."""

    async def patch_as_supervisor(self, thread_id: str, values: dict) -> None:
        """Write `values` into the thread's state as the supervisor's own update."""

    async def cancel_runs(self, thread_id: str) -> int:
        """Stop the thread's runs in flight (waiting until they stopped); how many were stopped."""

    def exclusively(self, thread_id: str) -> contextlib.AbstractAsyncContextManager:
        """Hold the thread for one operation, so no other driver runs it meanwhile."""


class _Pending:
    async def pending(self, thread_id: str) -> PendingInterrupt | None:
        snap = await self.view(thread_id)  # type: ignore[attr-defined]
        return snap.pending if snap is not None else None


@contextlib.asynccontextmanager
async def compiled_graph():
    """The engine graph on our checkpointer. Imported here, not at the top: the graph module loads
    the desks and their tools (seconds), which a server-side channel (Telegram, the web page) never needs."""
    from graphs.engine import build_graph
    from storage.checkpointer import checkpointer

    async with checkpointer() as saver:
        yield build_graph().compile(checkpointer=saver)


class LocalEngine(_Pending):
    """Our graph on our checkpointer, in this process. A thread is held by its run lease (a
    recoverer never drives a thread a live CLI run holds)."""

    async def current(self, thread_id: str) -> RunSnapshot:
        async with compiled_graph() as graph:
            return await snapshot(graph, {"configurable": {"thread_id": thread_id}})

    async def view(self, thread_id: str) -> RunSnapshot | None:
        snap = await self.current(thread_id)
        return snap if snap.values or snap.next or snap.interrupts else None

    async def run(self, thread_id: str, graph_input: Any, *, overrides: dict | None = None,
                  progress: ProgressFn | None = None, metadata: dict | None = None) -> RunSnapshot:
        config = {"configurable": {"thread_id": thread_id, **(overrides or {})}, "metadata": metadata or {},
                  "recursion_limit": 100}
        started = time.monotonic()
        # traces_flushed: with Langfuse on, this run's spans are sent at the end (bounded wait, off the loop)
        steps, last = 0, None
        async with compiled_graph() as graph, traces_flushed():
            async for ns, chunk in graph.astream(graph_input, config, stream_mode="updates", subgraphs=True):
                for node, update in chunk.items():
                    if node == "__interrupt__":
                        continue
                    steps += 1
                    desk = ns[0].split(":")[0] if ns else node
                    msg = progress_line(node, update)
                    if progress and msg and (desk, msg) != last:  # a desk's result also arrives as its subgraph's
                        progress(desk, msg, time.monotonic() - started)
                        last = (desk, msg)
            snap = await snapshot(graph, config)
            snap.steps = steps
            return snap

    async def submit(self, thread_id: str, graph_input: Any, *, config: dict | None = None) -> str:
        """No queue in-process: the run happens here, holding the thread, before this returns."""
        async with self.exclusively(thread_id):
            await self.run(thread_id, graph_input, overrides=(config or {}).get("configurable"))
        return "in-process"

    async def patch_as_supervisor(self, thread_id: str, values: dict) -> None:
        async with compiled_graph() as graph:
            await graph.aupdate_state({"configurable": {"thread_id": thread_id}}, values, as_node="supervisor")

    async def cancel_runs(self, thread_id: str) -> int:
        return 0  # a run of this process holds the lease (exclusively refuses); none runs elsewhere

    def exclusively(self, thread_id: str) -> contextlib.AbstractAsyncContextManager:
        return exclusively(thread_id)


class ServerEngine(_Pending):
    """The Agent Server, through a langgraph_sdk client. The server queues runs per thread;
    multitask_strategy="reject" refuses a second run on a busy thread instead of queueing it behind."""

    def __init__(self, client, *, graph_id: str = GRAPH_ID):
        self.client, self.graph_id = client, graph_id

    async def view(self, thread_id: str) -> RunSnapshot | None:
        try:
            state = await self.client.threads.get_state(thread_id)
        except Exception as err:  # noqa: BLE001 - narrowed below
            if not_on_this_server(err):
                return None
            raise
        return server_snapshot(thread_id, state)

    async def submit(self, thread_id: str, graph_input: Any, *, config: dict | None = None) -> str:
        """Start a run and return its id without waiting for it (the server runs it)."""
        kwargs: dict[str, Any] = {"config": config, "multitask_strategy": "reject", **_command_kwargs(graph_input)}
        return (await self.client.runs.create(thread_id, self.graph_id, **kwargs))["run_id"]

    async def run(self, thread_id: str, graph_input: Any, *, overrides: dict | None = None,
                  progress: ProgressFn | None = None, metadata: dict | None = None) -> RunSnapshot:
        await self.client.threads.create(thread_id=thread_id, if_exists="do_nothing", graph_id=self.graph_id)
        kwargs: dict[str, Any] = {"multitask_strategy": "reject"}
        if overrides:
            kwargs["config"] = {"configurable": dict(overrides)}
        if metadata:
            kwargs["metadata"] = metadata
        if graph_input is not None:
            kwargs.update(_command_kwargs(graph_input))
        run = await self.client.runs.create(thread_id, self.graph_id, **kwargs)
        await self.client.runs.join(thread_id, run["run_id"])
        return server_snapshot(thread_id, await self.client.threads.get_state(thread_id))

    async def patch_as_supervisor(self, thread_id: str, values: dict) -> None:
        await self.client.threads.update_state(thread_id, values, as_node="supervisor")

    async def cancel_runs(self, thread_id: str) -> int:
        cancelled = 0
        for run in await self.client.runs.list(thread_id, limit=20):
            if run.get("status") in ("pending", "running"):
                # wait: the run has stopped before the caller closes the post and its graph state.
                await self.client.runs.cancel(thread_id, run["run_id"], wait=True, action="interrupt")
                cancelled += 1
        return cancelled

    def exclusively(self, thread_id: str) -> contextlib.AbstractAsyncContextManager:
        return contextlib.nullcontext()  # the server serialises a thread's runs (multitask_strategy="reject")


def _command_kwargs(graph_input: Any) -> dict[str, Any]:
    """A run's input as the Agent Server takes it: a Command's resume, or the input itself."""
    from langgraph.types import Command  # langgraph's import costs ~1 s: not for every channel's start-up

    if isinstance(graph_input, Command):
        return {"command": {"resume": graph_input.resume}}
    return {"input": graph_input}


def engine_of(engine_or_client) -> Engine:
    """An Engine as it is, or a langgraph_sdk client (anything with .threads) as a ServerEngine."""
    return engine_or_client if isinstance(engine_or_client, (LocalEngine, ServerEngine)) else ServerEngine(engine_or_client)
