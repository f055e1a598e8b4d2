"""The API's routes, one module per part (``plait.server.app.ROUTER_MODULES``)."""
