"""The web channel: the approval page mounted in the Agent Server (service/http_app.py):
routes.py (the pages and forms, Jinja2 templates in templates/), auth.py (who is asking)."""
