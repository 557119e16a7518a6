"""Reminders, escalations and announcements from the sweep (service/sweep.py), sent to Telegram."""
from __future__ import annotations

import logging

from telegram import Bot
from telegram.error import TelegramError

from config import Settings
from service.telegram.format import gate_buttons
from storage import approvals
from storage.approvals import Gate
from storage.connect import get_database

log = logging.getLogger(__name__)


class TelegramNotifier:
    """service.sweep.Notifier over a Bot: the post's chat and the escalation chat hear it."""

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
