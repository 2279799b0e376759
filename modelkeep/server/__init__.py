"""The modelkeep server: the Registry interface over HTTP, with tokens, roles and webhooks.

``create_app(registry, settings)`` (``server/app.py``) builds the FastAPI app;
``mk server`` runs it under uvicorn. FastAPI, uvicorn and pydantic come from the
``server`` extra and are imported only under ``modelkeep.server``.
"""
