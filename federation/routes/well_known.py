"""Our /.well-known/matrix/server delegation, when `federation.well_known_server` is set.

Mounted on the client listener (which usually sits behind port 443) and on the
federation listener.
"""

from __future__ import annotations

from aiohttp import web

from federation.route_table import FederationRouteTable
from homeserver.http.context import get_hs
from homeserver.http.errors import not_found
from homeserver.http.request import json_response

routes = FederationRouteTable()


# Public (wellknown.yaml has no security): discovery comes before any request can be
# addressed to us, let alone signed.
@routes.get("/.well-known/matrix/server", public=True)
async def well_known_server(request: web.Request) -> web.Response:
    delegated = get_hs(request).config.federation.well_known_server
    if not delegated:
        raise not_found("No delegation configured")
    response = json_response({"m.server": delegated})
    response.headers["Cache-Control"] = "max-age=86400"
    return response
