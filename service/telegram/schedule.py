"""Scheduling in Telegram: the "⏰ Publish at…" button of a draft (a few offered times, or a reply
with a time), /scheduled (list, move, cancel) and /timezone. The logic is service/scheduling.py's;
the handlers here are bound to the bot by service/telegram/handlers.NewsroomBot.install."""
from __future__ import annotations

import html
import logging
from datetime import UTC, datetime
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from agents import schedule as rules
from agents.schedule import ScheduleError
from service import decisions, scheduling
from storage import approvals, posts

# `bot` below is the service.telegram.handlers.NewsroomBot that binds these handlers (not imported:
# handlers.py imports this module, and no two files import each other).
NewsroomBotLike = Any

log = logging.getLogger(__name__)

TIME_PREFIX = "nrt"  # callback data "nrt:<gate_id>:<unix seconds>" (well under Telegram's 64 bytes)
SCHEDULE_ACTION = "schedule"  # approval_prompts.action of the offer message (a reply to it is a time)
HELP = """/scheduled — this chat's scheduled publishes; /scheduled move ID TIME, /scheduled cancel ID (approvers)
/timezone [ZONE] — the zone times are read and shown in here (e.g. /timezone Europe/Berlin; approvers set it)"""


def esc(value) -> str:
    return html.escape(str(value), quote=False)


def time_buttons(gate_id: str, offered: list[tuple[str, datetime]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(f"⏰ {label}",
                                                       callback_data=f"{TIME_PREFIX}:{gate_id}:{int(when.timestamp())}")]
                                 for label, when in offered])


def parse_time_press(data: str | None) -> tuple[str, datetime] | None:
    parts = (data or "").split(":")
    if len(parts) != 3 or parts[0] != TIME_PREFIX or not parts[1].isalnum() or not parts[2].isdigit():
        return None
    return parts[1], datetime.fromtimestamp(int(parts[2]), tz=UTC)


async def offer_times(bot: NewsroomBotLike, query, gate, reviewer: str) -> None:
    """The press on "⏰ Publish at…": the offered times as buttons; a reply to that message is a time."""
    db = await bot.db()
    gate, pending = await decisions.follow_gate(bot.client, db, gate)
    if gate.decided or pending is None or pending.interrupt_id != gate.interrupt_id:
        msg = await scheduling.already_decided(db, gate) if gate.decided else "This draft is no longer waiting."
        await query.answer(msg[:200], show_alert=True)
        return
    chat_id = query.message.chat.id
    tz = await scheduling.effective_timezone(db, chat_id=chat_id, settings=bot.settings)
    offered = rules.offered_times(datetime.now(UTC), tz)
    post = await posts.get_post(db, gate.thread_id) or {}
    sent = await bot.app.bot.send_message(
        chat_id, f"⏰ Publish draft v{gate.draft_version} of “{post.get('topic', '')[:200]}” at… (times in {tz}; "
                 f"/timezone changes it). Press a time, or reply to this message with one — e.g. 2026-12-02 09:00, "
                 f"tomorrow 09:00, in 2 h. Asked of {reviewer}.",
        reply_markup=time_buttons(gate.gate_id, offered))
    await approvals.add_prompt(db, chat_id=chat_id, message_id=sent.message_id, gate_id=gate.gate_id,
                               action=SCHEDULE_ACTION, asked_user=query.from_user.id)
    await query.answer("Pick a time, or reply to my message with one.")


async def _schedule(bot: NewsroomBotLike, gate_id: str, when, *, chat_id: int, reviewer: str) -> tuple[bool, str]:
    db = await bot.db()
    tz = await scheduling.effective_timezone(db, chat_id=chat_id, settings=bot.settings)
    try:
        s = await scheduling.schedule_gate(bot.client, db, gate_id, when=when, tz=tz, reviewer=reviewer,
                                           via="telegram", chat_id=chat_id)
    except (ScheduleError, scheduling.ScheduleRefused) as err:
        return False, str(err)
    gate = await approvals.get_gate(db, s.gate_id)
    await bot.close_gate_messages(gate, f"⏰ Approved by {esc(reviewer)}: publishes at "
                                        f"<b>{esc(rules.format_local(s.publish_at, s.timezone))}</b> "
                                        f"(schedule <code>{s.schedule_id}</code>; /scheduled moves or cancels it)")
    return True, f"⏰ Publishes at {rules.format_local(s.publish_at, s.timezone)}"


async def on_time_press(bot: NewsroomBotLike, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    press = parse_time_press(query.data)
    if press is None:
        await query.answer("This button is not recognised. Nothing changed.", show_alert=True)
        return
    chat_id = query.message.chat.id if query.message else None
    if not bot.is_approver(query.from_user.id):  # the chat passed the gatekeeper (group -1)
        await query.answer("⛔ Only approvers can decide on drafts. Your press changed nothing.", show_alert=True)
        return
    prompt = await approvals.get_prompt(await bot.db(), chat_id=chat_id, message_id=query.message.message_id)
    if prompt is None or prompt.gate_id != press[0]:
        await query.answer("This button is not one of mine. Nothing changed.", show_alert=True)
        return
    ok, text = await _schedule(bot, press[0], press[1], chat_id=chat_id, reviewer=bot.who(query.from_user))
    await query.answer(text[:200], show_alert=not ok)
    if ok:
        try:
            await query.edit_message_reply_markup(reply_markup=None)
        except TelegramError as err:
            log.info("could not remove the time buttons: %s", err)


async def on_time_reply(bot: NewsroomBotLike, msg, prompt, reviewer: str) -> None:
    """A reply with a time to the offer message (on_reply checked chat, approver and asked user)."""
    if msg.document is not None or not (msg.text or "").strip():
        await msg.reply_text("Reply with a time, e.g. 2026-12-02 09:00 or in 2 h. Nothing changed.")
        return
    ok, text = await _schedule(bot, prompt.gate_id, msg.text, chat_id=msg.chat.id, reviewer=reviewer)
    if not ok:
        await msg.reply_text(f"{text} Nothing changed.")


async def cmd_scheduled(bot: NewsroomBotLike, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    chat, user, msg = update.effective_chat, update.effective_user, update.effective_message
    db = await bot.db()
    args = list(context.args or [])
    tz = await scheduling.effective_timezone(db, chat_id=chat.id, settings=bot.settings)
    if not args:
        rows = await scheduling.list_scheduled(db, chat_id=chat.id, limit=20)
        if not rows:
            await msg.reply_text("No scheduled publishes from this chat. An approver schedules one with a draft's "
                                 "“⏰ Publish at…” button.")
            return
        lines = [f"<b>Scheduled publishes</b> (times in {esc(tz)})"] + [
            f"<code>{s.schedule_id}</code> {esc(rules.format_local(s.publish_at, tz))} · “{esc(s.topic[:60])}” · "
            f"thread {s.thread_id[-8:]} · by {esc(s.scheduled_by)}" + (f" · ⚠️ {esc(s.last_error[:80])}" if s.last_error else "")
            for s in rows]
        lines.append("Move: /scheduled move ID TIME · cancel: /scheduled cancel ID")
        await msg.reply_text("\n".join(lines), parse_mode=ParseMode.HTML)
        return
    usage = "Usage: /scheduled · /scheduled move ID TIME · /scheduled cancel ID"
    if args[0] not in ("move", "cancel") or len(args) < 2 or (args[0] == "move" and len(args) < 3):
        await msg.reply_text(usage)
        return
    if not bot.is_approver(user.id if user else None):
        await msg.reply_text("⛔ Only approvers can move or cancel a scheduled publish. Nothing changed.")
        return
    try:
        if args[0] == "move":
            s = await scheduling.reschedule(db, args[1], when=" ".join(args[2:]), tz=tz, actor=bot.who(user),
                                            client=bot.client)
            await msg.reply_text(f"⏰ Schedule {s.schedule_id} now publishes at {rules.format_local(s.publish_at, tz)}.")
        else:
            s = await scheduling.cancel(db, args[1], actor=bot.who(user), client=bot.client)
            await msg.reply_text(f"Canceled schedule {s.schedule_id}: the draft waits for a decision again "
                                 f"(/status {s.thread_id[-8:]} shows it with its buttons).")
    except (ScheduleError, scheduling.ScheduleRefused) as err:
        await msg.reply_text(str(err) if str(err).endswith("Nothing changed.") else f"{err} Nothing changed.")


async def cmd_timezone(bot: NewsroomBotLike, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    chat, user, msg = update.effective_chat, update.effective_user, update.effective_message
    db = await bot.db()
    if not context.args:
        tz = await scheduling.effective_timezone(db, chat_id=chat.id, settings=bot.settings)
        await msg.reply_text(f"Times here are read and shown in {tz}. An approver changes it: /timezone Europe/Berlin")
        return
    if not bot.is_approver(user.id if user else None):
        await msg.reply_text("⛔ Only approvers can change this chat's time zone. Nothing changed.")
        return
    try:
        tz = await scheduling.set_chat_timezone(db, chat.id, context.args[0], updated_by=bot.who(user))
    except ScheduleError as err:
        await msg.reply_text(f"{err}. Nothing changed.")
        return
    now = datetime.now(UTC)
    await msg.reply_text(f"🕰 This chat's time zone is now {tz} (it is {rules.format_local(now, tz)}).")
