"""The web dashboard's static files (``static/``), served by ``vectorizer.api.routes.dashboard``."""
