"""The federation listener: a separate aiohttp app, on its own port, over TLS."""

from __future__ import annotations

import importlib
import ssl

from aiohttp import web

from federation.tls import server_context
from homeserver.http.context import HS_KEY
from homeserver.http.middleware import matrix_middleware

FEDERATION_ROUTE_MODULES = (
    "federation.routes.events",
    "federation.routes.keys",
    "federation.routes.membership",
    "federation.routes.query",
    "federation.routes.well_known",
    "homeserver.media.federation_routes",
    "federation.routes.transactions",
    "federation.routes.user_keys",
    "federation.routes.public_rooms",
    "federation.routes.openid",
)

# Transactions are bounded (50 PDUs + 100 EDUs) well below this.
MAX_REQUEST_BYTES = 10 * 1024 * 1024


def build_federation_app(hs) -> web.Application:
    app = web.Application(middlewares=[matrix_middleware], client_max_size=MAX_REQUEST_BYTES)
    app[HS_KEY] = hs
    for name in FEDERATION_ROUTE_MODULES:
        importlib.import_module(name).routes.mount(app)
    return app


def federation_ssl_context(hs) -> ssl.SSLContext:
    return server_context(hs.config.federation)
