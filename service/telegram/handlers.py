"""The bot's handlers (python-telegram-bot 22), a client of the Agent Server through a ServerEngine.

The same handlers serve polling mode (`newsroom bot`) and webhook mode (service/telegram/webhook.py,
a route of the Agent Server's custom HTTP app). Runs, threads and interrupts live in the Agent
Server, so Studio sees every run started here; operations on a post are service/operations.py's,
decisions go through service/decisions.py, which claims each one in the database before resuming,
so a double press resumes once. One gatekeeper handler (group -1, PTB's filters.Chat) stops every
update from a chat that is not allowed; one error handler reports failures to the chat; PTB's
AIORateLimiter waits out Telegram's flood limits.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from telegram import ForceReply, InputFile, Message, ReplyParameters, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from config import Settings
from service import decisions, operations
from service.engine import GRAPH_ID, PendingInterrupt, ServerEngine
from service.telegram import schedule as telegram_schedule
from service.telegram.format import (
    Progress,
    esc,
    gate_buttons,
    gate_summary,
    parse_button,
    revise_reply,
    split_message,
    tg_len,
    who,
)
from service.views import retry_refused_text
from storage import approvals, posts
from storage.approvals import Gate
from storage.connect import get_database
from storage.db import Database
from tools.redaction import public_reason

log = logging.getLogger(__name__)

EDIT_FILE_TYPES = (".md", ".markdown", ".txt")  # an edited draft sent back as a document
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


def _estimate_line() -> str:
    """The run's cost and time estimate (the server's run makes the same one: same settings, no
    per-run overrides from a chat), for the /post reply; a broken price table says so instead."""
    from graphs.engine import cost_estimate  # the graph module is heavy: only when a post starts

    try:
        return cost_estimate().summary()
    except Exception as err:  # noqa: BLE001 - an estimate never stops a post
        return f"no estimate ({str(err)[:120]})"


class NewsroomBot:
    """Handlers plus what they share: settings, the Agent Server client, the database."""

    def __init__(self, settings: Settings, client, *, database: Callable[[], Any] = get_database):
        self.settings = settings
        self.client = client
        self.engine = ServerEngine(client)
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
        shown = await operations.view(None, db, tid)
        post, pubs = shown.post, shown.publications
        if post is None:
            await msg.reply_text(f"No post with thread id {tid}.")
            return
        lines = [f"<b>{esc(post['topic'])}</b>", f"thread <code>{tid}</code>",
                 f"status: <b>{esc(post['status'])}</b>" + (f" ({esc(public_reason(post['status_reason']))})"
                                                             if post.get("status_reason") else ""),
                 f"revision cycles {post['revision']} · {post['llm_calls']} LLM calls · "
                 f"{post['tokens_in'] + post['tokens_out']} tokens · ${float(post['cost_usd']):.4f}",
                 f"requested by {esc(post['requester'])} via {esc(post['source'])}"]
        lines += [f"published to {esc(p['destination'])}: {esc(p['location'])}" for p in pubs]
        lines += [f"not published yet: {esc(name)}" for name in shown.missing]
        if post["status"] == "failed":
            lines.append(f"Once the cause is fixed, an approver can /retry {tid[-8:]}")
        await msg.reply_text("\n".join(lines), parse_mode=ParseMode.HTML)
        pending = await self.engine.pending(tid)
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
        reviewer = who(user)
        try:
            done = await operations.cancel(self.engine, db, post["thread_id"], reviewer=reviewer, via="telegram",
                                           chat_id=chat.id,
                                           start_run=self.start_and_follow(chat.id, post["topic"], "cancelled", reviewer))
        except operations.NothingToCancel as err:
            await msg.reply_text(str(err))
            return
        if done.decision is not None:  # it waited at the gate: rejected through the once-only path
            if done.decision.resumed:
                await self.close_gate_messages(done.decision.gate, f"❌ Cancelled by {esc(reviewer)}")
            else:
                await msg.reply_text(done.decision.message)
            return
        n = done.runs_stopped
        await msg.reply_text(f"Cancelled: {post['topic'][:80]} ({n} run{'s' if n != 1 else ''} "
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
            overrides = await operations.reopen_failed(self.engine, db, tid, actor=reviewer)
        except operations.NothingToRetry as err:
            await msg.reply_text(retry_refused_text(err))
            return
        progress = Progress(header=f"📝 <b>{esc(post['topic'])}</b>\nthread <code>{tid}</code>\n"
                                   f"retried by {esc(reviewer)}")
        progress.current = "⏳ retrying…"
        sent = await msg.reply_text(progress.render(), parse_mode=ParseMode.HTML)
        # No input: the run continues from the reopened checkpoint, with the run's own overrides.
        self._spawn(self.follow_run(chat.id, tid, progress, sent.message_id,
                                    config={"configurable": overrides} if overrides else None))

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
        if not self.is_approver(query.from_user.id):  # the chat passed the gatekeeper
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
            result = await decisions.decide(self.engine, db, gate.gate_id, action="approve", text=None,
                                            reviewer=reviewer, via="telegram",
                                            start_run=self.start_and_follow(chat_id, post.get("topic", ""), "approved", reviewer))
            await query.answer(("✅ Approved — publishing." if result.resumed else result.message)[:200])
            if result.resumed:
                await self.close_gate_messages(result.gate, f"✅ Approved by {esc(reviewer)}")
            return
        # Revise / Reject need words: ask with ForceReply, unless the gate is already over.
        gate, pending = await decisions.follow_gate(self.engine, db, gate)  # its draft asked again: that gate
        if gate.decided or pending is None or pending.interrupt_id != gate.interrupt_id:
            result = await decisions.decide(self.engine, db, gate.gate_id, action=press.action, text="-",
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
        if not self.is_approver(user.id if user else None):  # the chat passed the gatekeeper
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
        result = await decisions.decide(self.engine, db, prompt.gate_id, action=prompt.action, text=text,
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
        snap = await self.engine.view(thread_id)
        pending = snap.pending if snap is not None else None
        values = snap.values if snap is not None else {}
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
            progress.finish(f"⏹ Stopped (next: {', '.join(snap.next if snap else ()) or 'nothing'}); /status {thread_id[-8:]}")
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
