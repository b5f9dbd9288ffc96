"""GET /_matrix/identity/api/v1/info?medium=email&address=... -> {"hs": "<server>"}."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.threepids import EMAIL, canonical_email
from homeserver.http.context import get_hs
from homeserver.http.errors import invalid_param, missing_param, not_found, unrecognized
from homeserver.http.request import json_response
from homeserver.http.routes import RouteTable

routes = RouteTable()


@routes.get("/_matrix/identity/api/v1/info", auth=False, raw_path=True)
async def info(request: web.Request) -> web.Response:
    hs = get_hs(request)
    identity = hs.config.identity
    if not identity.domain_map and identity.default_server is None:
        raise unrecognized("This server keeps no e-mail domain map")
    medium = request.query.get("medium")
    address = request.query.get("address")
    if not medium or not address:
        raise missing_param("'medium' and 'address' are required")
    if medium != EMAIL:
        raise invalid_param("Only the 'email' medium is mapped")
    # Public and unauthenticated: rate-limited per IP like registration.
    hs.register_limiter.check(request.remote or "")
    server = hs.accounts.threepids.home_of(canonical_email(address))
    if server is None:
        raise not_found("No server is known for this address")
    return json_response({"hs": server})
