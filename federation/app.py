"""The federation listener: a separate aiohttp app, on its own port, over TLS."""

from __future__ import annotations

import importlib
import ssl

from aiohttp import web

from federation.request_auth import MAX_REQUEST_BYTES
from federation.route_table import FederationRouteTable
from federation.tls import server_context
from homeserver.http.context import HS_KEY
from homeserver.http.middleware import matrix_middleware

# Every module here has a `routes` FederationRouteTable: X-Matrix authenticated unless a
# route is declared public (federation/route_table.py).
FEDERATION_ROUTE_MODULES = (
    "federation.routes.events",
    "federation.routes.keys",
    "federation.routes.membership",
    "federation.routes.query",
    "federation.routes.well_known",
    "federation.routes.media",
    "federation.routes.transactions",
    "federation.routes.user_keys",
    "federation.routes.public_rooms",
    "federation.routes.openid",
    "federation.routes.hierarchy",
    "federation.routes.onbind",
)


def build_federation_app(hs) -> web.Application:
    app = web.Application(middlewares=[matrix_middleware], client_max_size=MAX_REQUEST_BYTES)
    app[HS_KEY] = hs
    for name in FEDERATION_ROUTE_MODULES:
        table = importlib.import_module(name).routes
        # Only this table authenticates by default: a client RouteTable here would serve
        # its unauthenticated routes to any server.
        if not isinstance(table, FederationRouteTable):
            raise TypeError(f"{name}.routes is not a FederationRouteTable")
        table.mount(app)
    return app


def federation_ssl_context(hs) -> ssl.SSLContext:
    return server_context(hs.config.federation)
