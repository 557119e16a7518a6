"""The Telegram bot: a client of the Agent Server (langgraph_sdk), on python-telegram-bot 22.

The same handlers serve polling mode (`newsroom bot`) and webhook mode (a route of the Agent
Server's custom HTTP app, service/http_app.py). Runs, threads and interrupts live in the Agent
Server, so Studio sees every run started here; decisions go through service/approvals.py, which
claims each one in the database before resuming, so a double press resumes once.
"""
from __future__ import annotations

import asyncio
import hmac
import html
import json
import logging
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field
from telegram import (
    Bot, ForceReply, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, Message, ReplyParameters, Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError
from telegram.ext import (
    AIORateLimiter, Application, ApplicationBuilder, ApplicationHandlerStop, CallbackQueryHandler, CommandHandler,
    ContextTypes, MessageHandler, TypeHandler, filters,
)

from config import Settings
from service import approvals as decisions
from service import telegram_schedule
from service.approvals import GRAPH_ID, PendingInterrupt
from storage import approvals, posts
from storage.approvals import Gate
from storage.db import Database
from storage.connect import get_database
from tools.redaction import public_reason

log = logging.getLogger(__name__)

TEXT_LIMIT = 4096  # Telegram's limit per message, in UTF-16 code units
CALLBACK_PREFIX = "nr"
BUTTON_CODES = {"a": "approve", "v": "revise", "x": "reject", "e": "edit", "w": "approve_with_edits",
                "t": "schedule"}  # t: "⏰ Publish at…" (service/telegram_schedule.py)
EDIT_FILE_TYPES = (".md", ".markdown", ".txt")  # an edited draft sent back as a document
ACTION_CODES = {v: k for k, v in BUTTON_CODES.items()}
HELP = """<b>newsroom</b> — posts written by four desks (research, writing, editing, publishing), approved by you.

/post TOPIC — start a post; I report each desk's progress in one message and send the draft for approval
/status [THREAD] — a post's status (default: this chat's latest); re-sends a waiting approval
/list — this chat's recent posts
/cancel THREAD — stop a post (approvers)
/retry THREAD — run a failed post again from where it failed (approvers)
{schedule_help}
/help — this text

Approve / Revise / Reject buttons come with each draft. Revise and Reject ask for feedback or a reason:
answer by replying to my question (a revise starting with a line “section: HEADING” rewrites only that
section). Edit and Approve with edits send you the draft as a .md file: reply with the edited text or
an edited .md document; it becomes the next version, the citation check runs on it, then it waits for
approval again (Edit) or is published at once when the check passes (Approve with edits).
“⏰ Publish at…” approves the draft now and publishes it at a time you pick or type.
THREAD may be a thread id or its last 8 characters.""".replace("{schedule_help}", telegram_schedule.HELP)


# --- text helpers (pure) ------------------------------------------------------------------------------

def tg_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def split_message(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Split at paragraph, then line, then word boundaries so every piece fits one message."""
    if tg_len(text) <= limit:
        return [text]
    pieces: list[str] = []
    rest = text
    while tg_len(rest) > limit:
        window = rest[:limit]
        while tg_len(window) > limit:  # astral characters count twice
            window = window[:-1]
        cut = max(window.rfind("\n\n"), -1)
        if cut < limit // 3:
            cut = window.rfind("\n")
        if cut < limit // 3:
            cut = window.rfind(" ")
        if cut < limit // 3:
            cut = len(window)
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip("\n ")
    if rest.strip():
        pieces.append(rest)
    return [p for p in pieces if p]


def esc(value: Any) -> str:
    return html.escape(str(value), quote=False)


SCORE_LABELS = {"technical_accuracy": "accuracy", "calibration": "calibration",
                "mechanistic_depth": "depth", "audience_calibration": "audience"}


def gate_summary(payload: dict, *, max_citations: int = 10) -> str:
    """The approval message (HTML): title, scores, citations, cost; the draft goes before it."""
    d = payload.get("draft") or {}
    lines = [f"<b>Draft v{esc(d.get('version'))} ready for approval</b>: {esc(d.get('title', ''))}"]
    if d.get("edited_by"):
        lines.append(f"✍️ edited by {esc(d['edited_by'])}")
    if payload.get("escalated"):
        lines.append(f"⚠️ <b>ESCALATED</b>: {esc(payload.get('escalation_reason') or 'needs a human')}")
    lines.append(f"topic: {esc(payload.get('topic', ''))} · requested by {esc(payload.get('requester', ''))}")
    scores = payload.get("scores")
    if scores:
        s = " · ".join(f"{SCORE_LABELS.get(k, k)} {v}" for k, v in scores.items())
        mean = payload.get("mean")
        lines.append(f"Editor: {s} — mean {mean:.2f}, flag {esc(payload.get('flag'))}, "
                     f"{esc(str(payload.get('editor_decision', '')).upper())}" if mean is not None else f"Editor: {s}")
    elif d.get("edited_by"):
        lines.append("Editor: a human's edit — citation check only, no rubric verdict")
    else:
        lines.append("Editor: no valid verdict (the judge's output did not validate)"
                     if payload.get("editor_decision") == "invalid" else "Editor: not judged (see the citation check)")
    check = payload.get("citation_check")
    if check:
        lines.append(citation_line(check))
        for bad in (check.get("unsupported") or [])[:3]:
            lines.append(f"  ✗ “{esc(str(bad.get('sentence', ''))[:160])}”: {esc('; '.join(bad.get('problems') or [])[:200])}")
    if payload.get("ungrounded_reason"):
        lines.append(f"⚠️ Ungrounded: {esc(str(payload['ungrounded_reason'])[:300])}")
    for err in (payload.get("fetch_errors") or [])[:5]:
        lines.append(f"⚠️ Not fetched: {esc(str(err)[:200])}")
    cites = payload.get("citations") or []
    if cites:
        lines.append(f"Sources ({'grounded' if payload.get('grounded') else 'ungrounded'}):")
        for c in cites[:max_citations]:
            where = f" — {c.get('heading')}" if c.get("heading") else ""
            lines.append(f"  [{esc(c.get('n'))}] {esc(str(c.get('source_title', ''))[:120])}{esc(str(where)[:120])}")
        if len(cites) > max_citations:
            lines.append(f"  … and {len(cites) - max_citations} more")
    else:
        lines.append("Sources: none (UNGROUNDED — verify every claim)")
    budget = payload.get("budget_usd")
    lines.append(f"Cost: ${float(payload.get('cost_usd') or 0):.4f}"
                 + (f" of a ${float(budget):.4f} budget" if budget is not None else "")
                 + f" · {payload.get('tokens', 0)} tokens · revision cycles {payload.get('revision', 0)}")
    lines.append(f"thread <code>{esc(payload.get('thread_id', ''))}</code>")
    return "\n".join(lines)


def citation_line(check: dict) -> str:
    """'Citations: 5/6 supported (83%), passed' — the support rate the gate and progress show."""
    rate = check.get("support_rate")
    if rate is None:
        body = "nothing cited to check"
    else:
        body = f"{check.get('supported')}/{check.get('checked')} supported ({rate:.0%})"
    verdict = "passed" if check.get("passed") else "UNSUPPORTED CLAIMS"
    extra = f", {check['unverifiable']} unverifiable" if check.get("unverifiable") else ""
    by = f" · checked by {esc(check.get('checked_by'))}" if check.get("checked_by") else ""
    err = " · claim check failed, rules only" if check.get("error") else ""
    return f"Citations: {body}{extra}, {verdict}{by}{err}"


def gate_buttons(gate_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[
        InlineKeyboardButton("✅ Approve", callback_data=f"{CALLBACK_PREFIX}:a:{gate_id}"),
        InlineKeyboardButton("✏️ Revise", callback_data=f"{CALLBACK_PREFIX}:v:{gate_id}"),
        InlineKeyboardButton("❌ Reject", callback_data=f"{CALLBACK_PREFIX}:x:{gate_id}"),
    ], [
        InlineKeyboardButton("📝 Edit", callback_data=f"{CALLBACK_PREFIX}:e:{gate_id}"),
        InlineKeyboardButton("📝 Approve with edits", callback_data=f"{CALLBACK_PREFIX}:w:{gate_id}"),
    ], [
        InlineKeyboardButton("⏰ Publish at…", callback_data=f"{CALLBACK_PREFIX}:t:{gate_id}"),
    ]])


SECTION_LINE = "section:"


def revise_reply(text: str) -> tuple[str, str | None]:
    """(feedback, section) of a revise reply: a first line "section: HEADING" names the one section."""
    first, _, rest = text.strip().partition("\n")
    if first.strip().lower().startswith(SECTION_LINE):
        return rest.strip(), first.strip()[len(SECTION_LINE):].strip() or None
    return text, None



def _estimate_line() -> str:
    """The run's cost and time estimate (the server's run makes the same one: same settings, no
    per-run overrides from a chat), for the /post reply; a broken price table says so instead."""
    from graphs.engine import cost_estimate  # the graph module is heavy: only when a post starts

    try:
        return cost_estimate().summary()
    except Exception as err:  # noqa: BLE001 - an estimate never stops a post
        return f"no estimate ({str(err)[:120]})"

class ButtonPress(BaseModel):
    action: str
    gate_id: str


def parse_button(data: str | None) -> ButtonPress | None:
    parts = (data or "").split(":")
    if len(parts) != 3 or parts[0] != CALLBACK_PREFIX or parts[1] not in BUTTON_CODES or not parts[2].isalnum():
        return None
    return ButtonPress(action=BUTTON_CODES[parts[1]], gate_id=parts[2])


def who(user) -> str:
    name = f"@{user.username}" if getattr(user, "username", None) else (getattr(user, "full_name", "") or "someone")
    return f"{name} (telegram {user.id})"


# --- progress of one run ------------------------------------------------------------------------------

DESK_STARTS = {"start_research": "🔎 Researcher: researching…", "start_drafting": "✍️ Writer: drafting…",
               "start_editing": "🧑‍⚖️ Editor: reviewing…", "start_publishing": "📣 Publisher: publishing…"}


class Progress(BaseModel):
    """The one progress message of a run: a line per finished desk, plus what runs now."""

    header: str
    done: list[str] = Field(default_factory=list)
    current: str | None = None

    def render(self) -> str:
        body = "\n".join([self.header, *self.done] + ([self.current] if self.current else []))
        return body if tg_len(body) <= TEXT_LIMIT else body[-(TEXT_LIMIT - 10):]

    def on_part(self, event: str, data: Any) -> bool:
        """Fold one stream part in; True if the message should change."""
        if not isinstance(data, dict):
            return False
        before = self.render()
        if "|" in event:  # a desk subgraph's own step, e.g. "updates|writer:<task id>"
            for node in data:
                if node in DESK_STARTS:
                    self.current = DESK_STARTS[node]
        else:
            for node, update in data.items():
                line = describe_desk(node, update)
                if line:
                    self.done.append(line)
                    self.current = None
        return self.render() != before

    def finish(self, line: str) -> None:
        self.current = None
        self.done.append(line)


def describe_desk(node: str, update: Any) -> str | None:
    """One line for a finished desk, from its state update (plain JSON from the server)."""
    if not isinstance(update, dict):
        return None
    try:
        if node == "researcher" and update.get("research"):
            r = update["research"]
            n = len(r.get("citations") or [])
            return f"✓ Research: {n} source{'s' if n != 1 else ''}" if r.get("grounded") else \
                "✓ Research: UNGROUNDED (no corpus match)"
        if node == "writer" and update.get("drafts"):
            d = update["drafts"][-1]
            why = {"editor_feedback": f" — revision {update.get('revision', '?')} after the Editor's notes",
                   "citation_feedback": f" — revision {update.get('revision', '?')} after the citation check",
                   "human_feedback": " — revised on your feedback",
                   "human_edit": f" — edited by {esc(d.get('edited_by') or 'a human')}"}.get(d.get("reason"), "")
            return f"✓ Draft v{d['version']}: {len(str(d.get('body', '')).split())} words{why}"
        if node == "human_approval" and update.get("drafts"):
            d = update["drafts"][-1]
            return f"✓ Edit: draft v{d['version']} by {esc(d.get('edited_by') or 'a human')}"
        if node == "editor" and update.get("citation_checks") and (update.get("drafts") or [{}])[-1].get(
                "reason") == "human_edit":
            c = update["citation_checks"][-1]
            return f"✓ {citation_line(c | {'unverifiable': 0})} on the edit v{c['draft_version']}"
        if node == "editor" and update.get("citation_checks") and not any(
                r.get("draft_version") == update["citation_checks"][-1].get("draft_version")
                for r in update.get("reviews") or []):
            c = update["citation_checks"][-1]
            return f"✓ {citation_line(c | {'unverifiable': 0})} on v{c['draft_version']} — back to the Writer"
        if node == "editor" and update.get("reviews"):
            r = update["reviews"][-1]
            if r.get("decision") == "invalid":
                return f"✓ Editor: verdict invalid on v{r['draft_version']}"
            verdict = "APPROVE" if r["decision"] == "approve" else "REJECT, back to the Writer"
            mean = r.get("mean")
            return f"✓ Editor: {verdict} (mean {mean:.2f})" if mean is not None else f"✓ Editor: {verdict}"
        if node == "prepare_approval":
            return "⚠️ Escalated to a human" if update.get("escalated") else None
        if node == "publisher" and update.get("publication"):
            return f"✓ Published: {esc(update['publication'].get('location'))}"
        if update.get("outcome") == "failed":
            return f"✗ Failed: {esc(public_reason(update.get('error')))}"
    except (KeyError, TypeError, IndexError, ValueError):
        return f"✓ {esc(node)}"
    return None


# --- the bot ------------------------------------------------------------------------------------------

class NewsroomBot:
    """Handlers plus what they share: settings, the Agent Server client, the database."""

    def __init__(self, settings: Settings, client, *, database: Callable[[], Any] = get_database):
        self.settings = settings
        self.client = client
        self._database = database
        self.allowed_chats = frozenset(settings.telegram_allowed_chats)
        self.approvers = frozenset(settings.telegram_approvers)
        # PTB's own chat filter, applied once for every update by the gatekeeper (group -1)
        self.chat_filter = filters.Chat(chat_id=sorted(self.allowed_chats)) if self.allowed_chats else None
        self.app: Application | None = None

    async def db(self) -> Database:
        return await self._database()

    # --- wiring -----------------------------------------------------------------------------
    def install(self, app: Application) -> Application:
        self.app = app
        app.bot_data["newsroom"] = self
        app.add_handler(TypeHandler(Update, self.gatekeeper), group=-1)  # before every other handler
        app.add_handler(CommandHandler(["start", "help"], self.cmd_help))
        app.add_handler(CommandHandler("post", self.cmd_post))
        app.add_handler(CommandHandler("status", self.cmd_status))
        app.add_handler(CommandHandler("list", self.cmd_list))
        app.add_handler(CommandHandler("cancel", self.cmd_cancel))
        app.add_handler(CommandHandler("retry", self.cmd_retry))
        app.add_handler(CommandHandler("scheduled", lambda u, c: telegram_schedule.cmd_scheduled(self, u, c)))
        app.add_handler(CommandHandler("timezone", lambda u, c: telegram_schedule.cmd_timezone(self, u, c)))
        app.add_handler(CallbackQueryHandler(lambda u, c: telegram_schedule.on_time_press(self, u, c),
                                             pattern=f"^{telegram_schedule.TIME_PREFIX}:"))
        app.add_handler(CallbackQueryHandler(self.on_button))
        app.add_handler(MessageHandler(filters.REPLY & filters.TEXT & ~filters.COMMAND, self.on_reply))
        app.add_handler(MessageHandler(filters.REPLY & filters.Document.ALL, self.on_reply))  # an edited .md
        app.add_handler(MessageHandler(filters.COMMAND, self.on_unknown_command))
        app.add_error_handler(self.on_error)
        return app

    def chat_allowed(self, chat_id: int | None) -> bool:
        return chat_id is not None and chat_id in self.allowed_chats

    async def gatekeeper(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Every update from a chat that is not allowed stops here (the handlers never see it)."""
        if not isinstance(update, Update):
            raise ApplicationHandlerStop
        message = update.effective_message
        if message is not None and self.chat_filter is not None and self.chat_filter.filter(message):
            return
        if update.callback_query is not None:
            await update.callback_query.answer("⛔ Only approvers can decide on drafts. Your press changed nothing.",
                                               show_alert=True)
        elif message is not None and (message.text or "").startswith("/"):
            await self._refuse_chat(update)  # commands get the refusal (with the chat id); chatter nothing
        raise ApplicationHandlerStop

    def who(self, user) -> str:
        return who(user)

    def is_approver(self, user_id: int | None) -> bool:
        return user_id is not None and user_id in self.approvers

    async def _refuse_chat(self, update: Update) -> None:
        chat = update.effective_chat
        await update.effective_message.reply_text(
            f"⛔ This chat (id {chat.id if chat else '?'}) may not use this bot, so nothing was started. "
            "An operator can add it to NEWSROOM_TELEGRAM_ALLOWED_CHATS.")

    # --- commands -----------------------------------------------------------------------------
    async def cmd_help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, user = update.effective_chat, update.effective_user
        ids = f"\n\nchat id <code>{chat.id}</code> · your user id <code>{user.id if user else '?'}</code>"
        role = " (approver)" if self.is_approver(user.id if user else None) else ""
        await update.effective_message.reply_text(HELP + ids + role, parse_mode=ParseMode.HTML)

    async def cmd_post(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, user, msg = update.effective_chat, update.effective_user, update.effective_message
        topic = " ".join(context.args or []).strip()
        if not topic:
            await msg.reply_text("Usage: /post TOPIC — for example: /post How GQA shrinks the KV cache")
            return
        if len(topic) > 500:
            await msg.reply_text(f"That topic is {len(topic)} characters; the limit is 500. Nothing was started.")
            return
        requester = who(user) if user else f"chat {chat.id}"
        thread = await self.client.threads.create(
            metadata={"chat_id": chat.id, "user_id": user.id if user else None, "source": "telegram",
                      "requester": requester, "topic": topic[:200]})
        tid = thread["thread_id"]
        progress = Progress(header=f"📝 <b>{esc(topic)}</b>\nthread <code>{tid}</code>\n💰 {esc(_estimate_line())}")
        progress.current = "⏳ queued…"
        sent = await msg.reply_text(progress.render(), parse_mode=ParseMode.HTML)
        self._spawn(self.follow_run(chat.id, tid, progress, sent.message_id,
                                    input={"topic": topic, "requester": requester, "source": "telegram"}))

    async def cmd_status(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, msg = update.effective_chat, update.effective_message
        db = await self.db()
        user = update.effective_user
        if context.args:
            tid = await approvals.resolve_thread_id(db, context.args[0])
            post = await posts.get_post(db, tid) if tid else None
            # Another chat's post is not this chat's business (its draft would be posted here),
            # unless an approver asks.
            if post is not None and not self.is_approver(user.id if user else None) and \
                    str((post.get("metadata") or {}).get("chat_id")) != str(chat.id):
                tid = None
            if tid is None:
                await msg.reply_text(f"No post matches {context.args[0][:80]!r} (give a thread id or its last 8 characters).")
                return
        else:
            rows = await approvals.posts_for_chat(db, chat.id, limit=1)
            if not rows:
                await msg.reply_text("No posts from this chat yet. Start one with /post TOPIC.")
                return
            tid = rows[0]["thread_id"]
        post = await posts.get_post(db, tid)
        if post is None:
            await msg.reply_text(f"No post with thread id {tid}.")
            return
        pubs = await posts.publications_for(db, tid)
        lines = [f"<b>{esc(post['topic'])}</b>", f"thread <code>{tid}</code>",
                 f"status: <b>{esc(post['status'])}</b>" + (f" ({esc(public_reason(post['status_reason']))})"
                                                             if post.get("status_reason") else ""),
                 f"revision cycles {post['revision']} · {post['llm_calls']} LLM calls · "
                 f"{post['tokens_in'] + post['tokens_out']} tokens · ${float(post['cost_usd']):.4f}",
                 f"requested by {esc(post['requester'])} via {esc(post['source'])}"]
        lines += [f"published to {esc(p['destination'])}: {esc(p['location'])}" for p in pubs]
        if post["status"] == "failed":
            lines.append(f"Once the cause is fixed, an approver can /retry {tid[-8:]}")
        await msg.reply_text("\n".join(lines), parse_mode=ParseMode.HTML)
        pending = await decisions.pending_interrupt(self.client, tid)
        if pending is not None:
            await self.send_gate(chat.id, pending)

    async def cmd_list(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, msg = update.effective_chat, update.effective_message
        rows = await approvals.posts_for_chat(await self.db(), chat.id, limit=10)
        if not rows:
            await msg.reply_text("No posts from this chat yet. Start one with /post TOPIC.")
            return
        lines = ["<b>Recent posts</b>"] + [
            f"<code>{r['thread_id'][-8:]}</code> {esc(r['status'])} · rev {r['revision']} · "
            f"${float(r['cost_usd']):.4f} · {esc(r['topic'][:60])}" for r in rows]
        await msg.reply_text("\n".join(lines), parse_mode=ParseMode.HTML)

    async def _approvers_post(self, update: Update, context: ContextTypes.DEFAULT_TYPE, verb: str,
                              usage: str) -> tuple[Database, dict] | None:
        """For /cancel and /retry (the chat passed the gatekeeper): an approver, and the post THREAD
        names (or the reply saying which of these is missing)."""
        user, msg = update.effective_user, update.effective_message
        if not self.is_approver(user.id if user else None):
            await msg.reply_text(f"⛔ Only approvers can {verb} a post. Nothing changed.")
            return None
        if not context.args:
            await msg.reply_text(usage)
            return None
        db = await self.db()
        tid = await approvals.resolve_thread_id(db, context.args[0])
        post = await posts.get_post(db, tid) if tid else None
        if post is None:
            await msg.reply_text(f"No post matches {context.args[0][:80]!r}. Nothing changed.")
            return None
        return db, post

    async def cmd_cancel(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        found = await self._approvers_post(update, context, "cancel", "Usage: /cancel THREAD (see /list for thread ids)")
        if found is None:
            return
        (db, post), chat, user, msg = found, update.effective_chat, update.effective_user, update.effective_message
        tid = post["thread_id"]
        if post["status"] in {str(s) for s in posts.TERMINAL}:
            await msg.reply_text(f"Already finished ({post['status']}). Nothing changed.")
            return
        reviewer = who(user)
        pending = await decisions.pending_interrupt(self.client, tid)
        if pending is not None:
            # Waiting at the gate: cancelling is a rejection, through the same once-only path.
            gate = await decisions.gate_for(db, pending, chat_id=chat.id)
            result = await decisions.decide(self.client, db, gate.gate_id, action="reject",
                                            text=f"cancelled by {reviewer}", reviewer=reviewer, via="telegram",
                                            start_run=self.start_and_follow(chat.id, post["topic"], "cancelled", reviewer))
            if result.resumed:
                await self.close_gate_messages(result.gate, f"❌ Cancelled by {esc(reviewer)}")
            else:
                await msg.reply_text(result.message)
            return
        cancelled = 0
        for run in await self.client.runs.list(tid, limit=20):
            if run.get("status") in ("pending", "running"):
                # wait: the run has stopped before the post and its graph state are closed below.
                await self.client.runs.cancel(tid, run["run_id"], wait=True, action="interrupt")
                cancelled += 1
        await posts.transition(db, tid, "rejected", actor=reviewer, reason=f"cancelled by {reviewer}")
        await self.close_cancelled_graph(tid, reviewer)
        await msg.reply_text(f"Cancelled: {post['topic'][:80]} ({cancelled} run{'s' if cancelled != 1 else ''} "
                             f"stopped). Nothing will be published.")

    async def cmd_retry(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        found = await self._approvers_post(update, context, "retry",
                                           "Usage: /retry THREAD (a failed post; see /list for thread ids)")
        if found is None:
            return
        (db, post), chat, user, msg = found, update.effective_chat, update.effective_user, update.effective_message
        tid = post["thread_id"]
        if post["status"] != "failed":
            await msg.reply_text(f"Not failed ({post['status']}). Nothing to retry.")
            return
        reviewer = who(user)
        try:
            config = await decisions.reopen_failed_on_server(self.client, db, tid, reviewer=reviewer)
        except decisions.RetryRefused as err:
            await msg.reply_text(str(err))
            return
        progress = Progress(header=f"📝 <b>{esc(post['topic'])}</b>\nthread <code>{tid}</code>\n"
                                   f"retried by {esc(reviewer)}")
        progress.current = "⏳ retrying…"
        sent = await msg.reply_text(progress.render(), parse_mode=ParseMode.HTML)
        # No input: the run continues from the reopened checkpoint, with the run's own overrides.
        self._spawn(self.follow_run(chat.id, tid, progress, sent.message_id, config=config))

    async def close_cancelled_graph(self, tid: str, reviewer: str) -> None:
        """End the cancelled thread's graph too: left with pending desks, `newsroom recover` would
        see a cut-off run and resume a post nobody wants. Written as the supervisor, whose router
        sends a decided outcome to the end."""
        try:
            state = await self.client.threads.get_state(tid)
            if not state.get("values") or (state["values"].get("outcome") or "pending") != "pending":
                return  # never started (nothing to resume), or already ended
            await self.client.threads.update_state(
                tid, {"outcome": "rejected", "error": f"cancelled by {reviewer}"}, as_node="supervisor")
        except Exception as err:  # noqa: BLE001 - the post is rejected either way; recovery then fails it loudly
            log.warning("could not close the graph of cancelled thread %s: %s", tid, err)

    async def on_unknown_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await update.effective_message.reply_text("Unknown command. /help lists what I understand.")

    # --- the approval gate ------------------------------------------------------------------------
    async def send_gate(self, chat_id: int, pending: PendingInterrupt) -> Gate | None:
        """Draft (split, or as a document), then scores / citations / cost with the buttons."""
        db = await self.db()
        gate = await decisions.gate_for(db, pending, chat_id=chat_id)
        if gate.decided:
            return None
        bot = self.app.bot
        d = pending.payload.get("draft") or {}
        draft_text = f"{d.get('title', '')}\n\n{d.get('body', '')}".strip()
        pieces = split_message(draft_text)
        if len(pieces) <= self.settings.telegram_max_draft_messages:
            for i, piece in enumerate(pieces):
                head = f"(draft v{d.get('version')}, part {i + 1}/{len(pieces)})\n" if len(pieces) > 1 else ""
                for part in split_message(head + piece):
                    await bot.send_message(chat_id, part)
        else:
            await bot.send_document(
                chat_id, InputFile(draft_text.encode(), filename=f"draft-v{d.get('version')}.md"),
                caption=f"Draft v{d.get('version')}: {str(d.get('title', ''))[:200]} "
                        f"({tg_len(draft_text)} characters — too long for messages, sent as a file)")
        summary = split_message(gate_summary(pending.payload))[0]
        sent = await bot.send_message(chat_id, summary, parse_mode=ParseMode.HTML, reply_markup=gate_buttons(gate.gate_id))
        await approvals.add_gate_messages(db, gate.gate_id, [sent.message_id])
        return gate

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        press = parse_button(query.data)
        if press is None:
            await query.answer("This button is not recognised. Nothing changed.", show_alert=True)
            return
        chat_id = query.message.chat.id if query.message else None
        if not self.chat_allowed(chat_id) or not self.is_approver(query.from_user.id):
            await query.answer("⛔ Only approvers can decide on drafts. Your press changed nothing.", show_alert=True)
            return
        db = await self.db()
        gate = await approvals.get_gate(db, press.gate_id)
        if gate is None:
            await query.answer("This approval is unknown. Nothing changed.", show_alert=True)
            return
        reviewer = who(query.from_user)
        if press.action == "schedule":
            await telegram_schedule.offer_times(self, query, gate, reviewer)
            return
        if press.action == "approve":
            post = await posts.get_post(db, gate.thread_id) or {}
            result = await decisions.decide(self.client, db, gate.gate_id, action="approve", text=None,
                                            reviewer=reviewer, via="telegram",
                                            start_run=self.start_and_follow(chat_id, post.get("topic", ""), "approved", reviewer))
            await query.answer(("✅ Approved — publishing." if result.resumed else result.message)[:200])
            if result.resumed:
                await self.close_gate_messages(result.gate, f"✅ Approved by {esc(reviewer)}")
            return
        # Revise / Reject need words: ask with ForceReply, unless the gate is already over.
        gate, pending = await decisions.follow_gate(self.client, db, gate)  # its draft asked again: that gate
        if gate.decided or pending is None or pending.interrupt_id != gate.interrupt_id:
            result = await decisions.decide(self.client, db, gate.gate_id, action=press.action, text="-",
                                            reviewer=reviewer, via="telegram")  # answers "already decided"
            await query.answer(result.message[:200], show_alert=True)
            return
        if press.action in decisions.EDIT_ACTIONS:
            await self.ask_for_edit(query, gate, pending, press.action, reviewer)
            return
        question = ("✏️ What should the writer change? Reply to this message with your feedback (a first line "
                    "“section: HEADING” rewrites only that section)."
                    if press.action == "revise" else "❌ Why reject it? Reply to this message with the reason.")
        asked = await self.app.bot.send_message(
            chat_id, f"{question}\n(draft v{gate.draft_version}, thread {gate.thread_id[-8:]}, asked of {reviewer})",
            reply_markup=ForceReply(selective=True, input_field_placeholder="feedback" if press.action == "revise" else "reason"),
            reply_parameters=ReplyParameters(message_id=query.message.message_id, allow_sending_without_reply=True))
        await approvals.add_prompt(db, chat_id=chat_id, message_id=asked.message_id, gate_id=gate.gate_id,
                                   action=press.action, asked_user=query.from_user.id)
        await query.answer("Reply to my question with your " + ("feedback." if press.action == "revise" else "reason."))

    async def ask_for_edit(self, query, gate: Gate, pending: PendingInterrupt, action: str, reviewer: str) -> None:
        """The draft as a .md document, asking (ForceReply) for the edited text or document back."""
        chat_id = query.message.chat.id
        d = pending.payload.get("draft") or {}
        markdown = f"# {d.get('title', '')}\n\n{d.get('body', '')}\n"
        what = ("it becomes the next version and waits for approval again" if action == "edit" else
                "it is published at once if the citation check passes (else shown to you again)")
        asked = await self.app.bot.send_document(
            chat_id, InputFile(markdown.encode(), filename=f"draft-v{gate.draft_version}.md"),
            caption=(f"📝 Draft v{gate.draft_version} (thread {gate.thread_id[-8:]}, asked of {reviewer}): reply to "
                     f"this message with the edited text, or with the edited .md file; {what}. At most "
                     f"{self.settings.edit_max_chars} characters.")[:1024],
            reply_markup=ForceReply(selective=True, input_field_placeholder="the edited draft"),
            reply_parameters=ReplyParameters(message_id=query.message.message_id, allow_sending_without_reply=True))
        await approvals.add_prompt(await self.db(), chat_id=chat_id, message_id=asked.message_id,
                                   gate_id=gate.gate_id, action=action, asked_user=query.from_user.id)
        await query.answer("Reply to the draft I sent with your edited text or .md file.")

    async def edited_text(self, msg: Message) -> str:
        """The edited draft of a reply: its text, or its .md document (bounded, UTF-8). Raises
        decisions.AnswerRefused with what to send instead."""
        if msg.document is None:
            return msg.text or ""
        doc, limit = msg.document, 4 * self.settings.edit_max_chars
        if not str(doc.file_name or "").lower().endswith(EDIT_FILE_TYPES):
            raise decisions.AnswerRefused(f"Send the edited draft as a {' / '.join(EDIT_FILE_TYPES)} file or as text. "
                                          "Nothing changed.")
        if doc.file_size is not None and doc.file_size > limit:
            raise decisions.AnswerRefused(f"That file has {doc.file_size} bytes; an edited draft has at most "
                                          f"{self.settings.edit_max_chars} characters. Nothing changed.")
        data = await (await doc.get_file()).download_as_bytearray()
        if len(data) > limit:
            raise decisions.AnswerRefused(f"That file is over {limit} bytes. Nothing changed.")
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise decisions.AnswerRefused("That file is not UTF-8 text. Nothing changed.") from None

    async def on_reply(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        msg, chat, user = update.effective_message, update.effective_chat, update.effective_user
        replied = msg.reply_to_message
        if replied is None:
            return
        db = await self.db()
        prompt = await approvals.get_prompt(db, chat_id=chat.id, message_id=replied.message_id)
        if prompt is None:
            return  # a reply to something that is not one of our questions
        if not self.chat_allowed(chat.id) or not self.is_approver(user.id if user else None):
            await msg.reply_text("⛔ Only approvers can decide on drafts. Nothing changed.")
            return
        if prompt.asked_user != user.id:
            await msg.reply_text("⛔ That question was asked of another approver: press Revise or Reject yourself. "
                                 "Nothing changed.")
            return
        reviewer = who(user)
        if prompt.action == telegram_schedule.SCHEDULE_ACTION:
            await telegram_schedule.on_time_reply(self, msg, prompt, reviewer)
            return
        post = await posts.get_post(db, (await approvals.get_gate(db, prompt.gate_id)).thread_id) or {}
        text, draft, section = msg.text, None, None
        if prompt.action in decisions.EDIT_ACTIONS:
            try:
                text, draft = None, await self.edited_text(msg)
            except decisions.AnswerRefused as err:
                await msg.reply_text(str(err))
                return
        elif msg.document is not None:
            await msg.reply_text("Reply with text to this question. Nothing changed.")
            return
        elif prompt.action == "revise":
            text, section = revise_reply(msg.text or "")
        verb = {"revise": "revision requested", "reject": "rejected", "edit": "edited",
                "approve_with_edits": "approved with edits"}[prompt.action]
        result = await decisions.decide(self.client, db, prompt.gate_id, action=prompt.action, text=text,
                                        reviewer=reviewer, via="telegram", draft=draft, section=section,
                                        start_run=self.start_and_follow(chat.id, post.get("topic", ""), verb, reviewer,
                                                                         reply_to=msg.message_id))
        if result.resumed:
            mark = {"revise": "✏️ Revision requested", "reject": "❌ Rejected", "edit": "📝 Edited",
                    "approve_with_edits": "📝 Approved with edits"}[prompt.action]
            await self.close_gate_messages(result.gate, f"{mark} by {esc(reviewer)}")
        else:
            await msg.reply_text(result.message)

    async def close_gate_messages(self, gate: Gate | None, note: str) -> None:
        """Take the buttons off a decided draft's message(s), so nobody presses them again."""
        if gate is None:
            return
        for mid in gate.message_ids:
            try:
                await self.app.bot.edit_message_reply_markup(gate.chat_id, mid, reply_markup=None)
            except TelegramError as err:
                log.info("could not remove buttons from %s/%s: %s", gate.chat_id, mid, err)
        if gate.chat_id is not None:
            await self.app.bot.send_message(gate.chat_id, note, parse_mode=ParseMode.HTML)

    # --- following a run -----------------------------------------------------------------------------
    def _spawn(self, coro) -> asyncio.Task:
        task = self.app.create_task(coro) if self.app else asyncio.create_task(coro)
        return task

    def start_and_follow(self, chat_id: int, topic: str, verb: str, reviewer: str, *, reply_to: int | None = None):
        """A decisions.StartRun that resumes with a progress message, and returns once the run exists."""

        async def _start(thread_id: str, value: dict, config: dict | None = None) -> str:
            progress = Progress(header=f"📝 <b>{esc(topic)}</b>\nthread <code>{thread_id}</code>\n"
                                       f"{esc(verb)} by {esc(reviewer)}")
            progress.current = "⏳ resuming…"
            sent = await self.app.bot.send_message(
                chat_id, progress.render(), parse_mode=ParseMode.HTML,
                reply_parameters=ReplyParameters(message_id=reply_to, allow_sending_without_reply=True) if reply_to else None)
            created: asyncio.Future = asyncio.get_running_loop().create_future()
            self._spawn(self.follow_run(chat_id, thread_id, progress, sent.message_id,
                                        command={"resume": value}, config=config, created=created))
            return await created

        return _start

    async def follow_run(self, chat_id: int, thread_id: str, progress: Progress, message_id: int, *,
                         input: dict | None = None, command: dict | None = None, config: dict | None = None,
                         created: asyncio.Future | None = None) -> None:
        """Stream one run's desk updates into the progress message, then report how it ended."""
        shown = progress.render()

        def _created(meta) -> None:
            if created is not None and not created.done():
                created.set_result(meta["run_id"])

        try:
            async for part in self.client.runs.stream(
                    thread_id, GRAPH_ID, input=input, command=command, config=config, stream_mode="updates",
                    stream_subgraphs=True,
                    multitask_strategy="reject", on_run_created=_created):
                if part.event == "metadata" and isinstance(part.data, dict) and part.data.get("run_id"):
                    _created({"run_id": part.data["run_id"]})
                elif part.event == "error":
                    progress.finish(f"✗ Error: {esc(public_reason(json.dumps(part.data))[:300])}")
                elif part.event.startswith("updates") and progress.on_part(part.event, part.data):
                    shown = await self._edit_progress(chat_id, message_id, progress, shown)
        except Exception as err:  # noqa: BLE001 - reported in the chat
            if created is not None and not created.done():
                created.set_exception(err)  # the decision is released by decisions.decide
                progress.finish(f"✗ Could not start: {esc(public_reason(str(err))[:300])}")
                await self._edit_progress(chat_id, message_id, progress, shown)
                return
            log.warning("following %s failed: %s", thread_id, err)
            progress.finish(f"✗ Lost the run's stream: {esc(public_reason(str(err))[:300])} (see /status {thread_id[-8:]})")
        if created is not None and not created.done():
            created.set_exception(RuntimeError("the server started no run"))
        await self.report_end(chat_id, thread_id, progress, message_id, shown)

    async def _edit_progress(self, chat_id: int, message_id: int, progress: Progress, shown: str) -> str:
        text = progress.render()
        if text == shown:
            return shown
        try:  # Telegram's flood limits are the AIORateLimiter's to wait out (build_application)
            await self.app.bot.edit_message_text(text, chat_id, message_id, parse_mode=ParseMode.HTML)
        except BadRequest as err:
            if "not modified" not in str(err).lower():
                log.info("progress edit failed: %s", err)
        except TelegramError as err:  # a network blip or a flood wait past the limiter must not stop the report
            log.info("progress edit failed: %s", err)
        return text

    async def report_end(self, chat_id: int, thread_id: str, progress: Progress, message_id: int, shown: str) -> None:
        state = await self.client.threads.get_state(thread_id)
        pending = await decisions.pending_interrupt(self.client, thread_id)
        values = state.get("values") or {}
        if pending is not None:
            progress.finish("⏸ Waiting for approval" + (" (escalated)" if pending.payload.get("escalated") else ""))
            await self._edit_progress(chat_id, message_id, progress, shown)
            await self.send_gate(chat_id, pending)
            return
        outcome = values.get("outcome")
        if outcome == "published":
            pub = values.get("publication") or {}
            progress.finish("📣 Published")
            await self._edit_progress(chat_id, message_id, progress, shown)
            more = "".join(f"\nalso {esc(d.get('destination'))}: {esc(d.get('location'))}"
                           for d in (pub.get("destinations") or [])[1:])
            await self.app.bot.send_message(
                chat_id, f"📣 Published “{esc(pub.get('title', ''))}” to {esc(pub.get('destination', ''))}:\n"
                         f"{esc(pub.get('location', ''))}{more}", parse_mode=ParseMode.HTML)
        elif outcome == "rejected":
            decision = (values.get("decisions") or [{}])[-1]
            progress.finish(f"❌ Rejected: {esc(decision.get('feedback') or '')}")
            await self._edit_progress(chat_id, message_id, progress, shown)
        elif outcome == "failed":
            progress.finish(f"✗ Failed: {esc(public_reason(values.get('error')) or 'unknown error')}\n"
                            f"Once the cause is fixed, an approver can /retry {thread_id[-8:]}")
            await self._edit_progress(chat_id, message_id, progress, shown)
        else:
            progress.finish(f"⏹ Stopped (next: {', '.join(state.get('next') or []) or 'nothing'}); /status {thread_id[-8:]}")
            await self._edit_progress(chat_id, message_id, progress, shown)

    # --- errors ----------------------------------------------------------------------------------------
    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("update %s failed", getattr(update, "update_id", "?"), exc_info=context.error)
        if not isinstance(update, Update):
            return
        text = (f"⚠️ That failed: {type(context.error).__name__}: {public_reason(str(context.error))[:300]}. "
                "Nothing was decided; try again, or /help.")
        try:
            if update.callback_query:
                await update.callback_query.answer(text[:200], show_alert=True)
            elif update.effective_chat:
                await context.bot.send_message(update.effective_chat.id, text)
        except TelegramError:
            pass


# --- reminders and escalations from the sweep ------------------------------------------------------------

class TelegramNotifier:
    """service.approvals.Notifier over a Bot: the post's chat and the escalation chat hear it."""

    def __init__(self, bot: Bot, settings: Settings):
        self.bot, self.settings = bot, settings

    async def notify(self, gate: Gate, kind: str, text: str) -> None:
        # A draft announced on discovery goes to its own chat; deadline news to the escalation chat too.
        to = [gate.chat_id] if kind in ("waiting", "scheduled") else [gate.chat_id, self.settings.telegram_escalation_chat]
        chats = [c for c in dict.fromkeys(to) if c is not None]
        markup = gate_buttons(gate.gate_id) if kind in ("reminder", "escalated", "waiting") else None
        for chat in chats:
            try:
                sent = await self.bot.send_message(chat, f"{text}\nthread {gate.thread_id}", reply_markup=markup)
                if markup is not None:
                    db = await get_database()
                    await approvals.add_gate_messages(db, gate.gate_id, [sent.message_id])
            except TelegramError as err:
                log.warning("could not notify chat %s about %s: %s", chat, gate.thread_id, err)


# --- building the application ------------------------------------------------------------------------------

def build_application(settings: Settings, client, *, webhook: bool = False, database=get_database) -> Application:
    """The PTB Application with our handlers; webhook=True builds it without an Updater."""
    if settings.telegram_bot_token is None:
        raise RuntimeError("no Telegram bot token: set TELEGRAM_BOT_TOKEN (from BotFather)")
    base = settings.telegram_api_base_url.rstrip("/")
    # AIORateLimiter: Telegram's flood limits (and a RetryAfter, retried once) handled by PTB itself
    builder = (ApplicationBuilder().token(settings.telegram_bot_token.get_secret_value())
               .base_url(f"{base}/bot").base_file_url(f"{base}/file/bot")
               .rate_limiter(AIORateLimiter(max_retries=1, group_time_period=60,
                                            group_max_rate=settings.telegram_group_messages_per_min)))
    if webhook:
        builder = builder.updater(None)
    app = builder.build()
    NewsroomBot(settings, client, database=database).install(app)
    return app


class WebhookReceiver:
    """Webhook mode: the custom HTTP app hands each POST here. Checks Telegram's secret-token header,
    validates the body and runs the same handlers before answering (so Telegram's retry of a failed
    delivery is the only way an update is processed twice, and our ledger makes that harmless)."""

    def __init__(self, settings: Settings, client_factory: Callable[[], Any]):
        self.settings = settings
        self._client_factory = client_factory
        self._app: Application | None = None
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self.settings.telegram_bot_token is not None and self.settings.telegram_webhook_secret is not None

    async def application(self) -> Application:
        async with self._lock:
            if self._app is None:
                app = build_application(self.settings, self._client_factory(), webhook=True)
                await app.initialize()
                await app.start()
                self._app = app
        return self._app

    def refusal(self, secret_header: str | None) -> tuple[int, dict] | None:
        """Why a delivery is refused before its body is read, or None."""
        if not self.enabled:
            return 404, {"ok": False, "error": "webhook mode is off: set TELEGRAM_BOT_TOKEN and "
                                               "NEWSROOM_TELEGRAM_WEBHOOK_SECRET"}
        expected = self.settings.telegram_webhook_secret.get_secret_value()
        if not secret_header or not hmac.compare_digest(secret_header.encode(), expected.encode()):
            return 403, {"ok": False, "error": "wrong or missing X-Telegram-Bot-Api-Secret-Token"}
        return None

    async def handle(self, secret_header: str | None, body: bytes) -> tuple[int, dict]:
        if (refused := self.refusal(secret_header)) is not None:
            return refused
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            return 400, {"ok": False, "error": f"body is not JSON: {err}"}
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            return 400, {"ok": False, "error": "not a Telegram Update: an object with an integer update_id is required"}
        app = await self.application()
        try:
            update = Update.de_json(data, app.bot)
        except Exception as err:  # noqa: BLE001 - PTB raises AttributeError, TypeError, ... on mistyped fields
            return 400, {"ok": False, "error": f"malformed update {data.get('update_id')}: {type(err).__name__}: {err}"}
        await app.process_update(update)  # handler errors go to on_error, which tells the chat
        return 200, {"ok": True}

    async def shutdown(self) -> None:
        if self._app is not None:
            await self._app.stop()
            await self._app.shutdown()
            self._app = None
