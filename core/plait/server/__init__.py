"""The plait server: the store's REST API (FastAPI), its background services and, later,
the dashboard. ``plait server start`` runs it; nothing in ``import plait`` imports it.

    from plait.server import create_app

    app = create_app()  # the configured store; serve with any ASGI server
"""

from plait.server.app import create_app

__all__ = ["create_app"]
