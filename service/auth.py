"""Who may use the Agent Server: LangGraph custom auth (langgraph.json "auth": {"path": ...,
"disable_studio_auth": true}).

Identities (config/settings.py, README "Security"):
- service   NEWSROOM_SERVICE_TOKEN: the bot in polling mode, `newsroom sweep`, recovery, scripts;
            inside the server the custom HTTP app's in-process client (langgraph_sdk.get_client()
            with no URL) goes through the loopback transport, which the server never authenticates
            (root_path /noauth, not reachable from the network): it acts as the service too.
- approver  NEWSROOM_APPROVER_TOKENS name:token,...: read, start runs, resume the approval interrupt
            (through the ledger, as themselves), edit a post's state, cancel runs.
- viewer    NEWSROOM_VIEWER_TOKENS: read threads, runs, assistants and the store.

A credential travels as `Authorization: Bearer TOKEN` or `X-Api-Key: TOKEN` (what langgraph_sdk
sends for `api_key=` or LANGGRAPH_API_KEY), or in a `/k/TOKEN` path prefix for clients that can
set only a base URL (service/http_app.py moves it into the Authorization header).

"disable_studio_auth": without it `langgraph dev` hands any request carrying `x-auth-scheme:
langsmith` to a no-op Studio backend, i.e. anyone is let in (checked on langgraph-api 0.16.7).
"""
from __future__ import annotations

import logging
from typing import Any

from langgraph_sdk import Auth

from config import ConfigError, Identity, get_settings, validate_override

log = logging.getLogger(__name__)

auth = Auth()

READ_ACTIONS = frozenset({"read", "search"})
# Resources only the service changes: an assistant's config or a cron's run config reaches every
# run made on it (approval_policy included), so approvers use the default assistant as it is.
SERVICE_ONLY = frozenset({"assistants", "crons"})


def _refuse(status: int, detail: str) -> Auth.exceptions.HTTPException:
    return Auth.exceptions.HTTPException(status_code=status, detail=detail)


def credential(headers: dict) -> str | None:
    """The token a request presents (bytes headers, as langgraph passes them)."""
    def header(name: bytes) -> str:
        value = headers.get(name) or b""
        return value.decode("latin-1") if isinstance(value, bytes) else str(value)

    bearer = header(b"authorization").strip()
    if bearer.lower().startswith("bearer "):
        return bearer[7:].strip() or None
    return header(b"x-api-key").strip() or None


def identify_headers(headers: dict) -> Identity | None:
    return get_settings().identify(credential(headers))


@auth.authenticate
async def authenticate(headers: dict) -> Auth.types.MinimalUserDict:
    identity = identify_headers(headers)
    if identity is None:
        raise _refuse(401, "missing or unknown credential: send Authorization: Bearer TOKEN "
                           "(README, Security: service, approver and viewer tokens)")
    return {"identity": identity.name, "display_name": identity.name, "role": identity.role,
            "permissions": [identity.role]}


def _identity(ctx: Auth.types.AuthContext) -> Identity:
    role = (ctx.permissions or [None])[0]
    if role not in ("service", "approver", "viewer"):
        raise _refuse(403, "no role")  # a user this module did not authenticate (never expected)
    return Identity(name=ctx.user.identity, role=role)


def checked_overrides(configurable: dict | None, who: Identity) -> None:
    """Per-run overrides (config.run_config.RUN_OVERRIDE_SETTINGS: the fields of RunConfig) held to the settings' bounds;
    approval_policy is an approver's choice only."""
    from config.run_config import RUN_OVERRIDE_SETTINGS

    for name in RUN_OVERRIDE_SETTINGS:
        if (configurable or {}).get(name) is None:
            continue
        if name == "approval_policy" and not who.can_decide:
            raise _refuse(403, "only an approver may set approval_policy for a run")
        try:
            validate_override(name, configurable[name])
        except ConfigError as err:
            raise _refuse(422, str(err)) from None


async def _fixed_policy(thread_id: str | None, configurable: dict | None) -> None:
    """A post's approval policy is fixed when it starts: a later run on its thread may not change
    it (restarting a waiting post with escalations_only would publish it past its gate)."""
    wanted = (configurable or {}).get("approval_policy")
    if wanted is None or thread_id is None:
        return
    from storage import posts
    from storage.connect import get_database

    overrides = await posts.run_overrides_if_posted(await get_database(), str(thread_id))
    if overrides is None:
        return
    kept = overrides.get("approval_policy") or get_settings().approval_policy
    if wanted != kept:
        raise _refuse(403, f"this post's approval_policy is {kept!r}, fixed when it started")


async def _through_the_ledger(value: dict, who: Identity) -> None:
    """A run that resumes the approval interrupt: its answer becomes the ledger's (claimed for the
    caller) or the request is refused; `command.update` / `goto` would write state past the gate."""
    kwargs = value.get("kwargs") or {}
    command = kwargs.get("command") or {}
    if not isinstance(command, dict):
        return
    if (command.get("update") is not None or command.get("goto")) and not who.is_service:
        raise _refuse(403, "a run's command may not update state or jump to a node (use update_state as an "
                           "approver; the Publisher still publishes only a draft approved through the ledger)")
    if command.get("resume") is None:
        return
    from langgraph_sdk import get_client

    from service.decisions import ResumeRefused, claim_raw_resume
    from storage.connect import get_database

    via = "service" if who.is_service else "studio-or-sdk"
    try:
        command["resume"] = await claim_raw_resume(
            get_client(), await get_database(), str(value.get("thread_id")), command["resume"],
            reviewer=who.name, via=via, run_id=str(value["run_id"]) if value.get("run_id") else None)
    except ResumeRefused as err:
        raise _refuse(err.status, str(err)) from None
    kwargs["command"] = command


@auth.on
async def authorize(ctx: Auth.types.AuthContext, value: Any) -> None:
    """One policy for every resource and action (a global handler: no path falls through open)."""
    who = _identity(ctx)
    if ctx.action in READ_ACTIONS:
        return
    if ctx.resource in SERVICE_ONLY and not who.is_service:
        raise _refuse(403, f"only the service may {ctx.action} {ctx.resource}")
    if ctx.resource == "store" and not who.is_service:
        raise _refuse(403, "only the service may write the store")
    if not who.can_decide:
        raise _refuse(403, f"{who.name} is a viewer: read-only")
    if ctx.resource == "threads" and ctx.action == "create_run":
        config = ((value.get("kwargs") or {}).get("config") or {})
        configurable = config.get("configurable") or {}
        checked_overrides(configurable, who)
        await _fixed_policy(value.get("thread_id"), configurable)
        await _through_the_ledger(value, who)
    return


def check_configured() -> None:
    """At load: no service token means no server (refuses to start, never open by default)."""
    get_settings().require_server_secrets()


check_configured()
