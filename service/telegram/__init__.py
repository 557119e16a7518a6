"""The Telegram channel: format.py (what the bot says, pure), handlers.py (the PTB Application and
its handlers), webhook.py (webhook mode's receiver), notifier.py (the sweep's messages). Polling
mode and registering the webhook are `newsroom bot` (service/cli/bot.py)."""
