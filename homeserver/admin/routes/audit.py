"""GET /_synapse/admin/v1/audit_log — ours, not Synapse's: every admin action (who, what,
when, target, non-secret details), newest first by default.

Query: `from`, `limit`, `dir` (b default), `admin`, `action`, `target`. Answer:
{"entries": [{"id", "ts", "admin", "action", "target", "details"}], "total", "next_token"}.
Also GET /_synapse/admin/v1/server_version.
"""

from __future__ import annotations

from aiohttp import web

from federation.routes.query import SERVER_SOFTWARE
from homeserver.admin.api import AdminRoutes, page, paged
from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import invalid_param
from homeserver.http.request import json_response
from homeserver.http.routes import RouteTable

routes = RouteTable()
admin = AdminRoutes(routes)


@admin.get("/v1/audit_log")
async def audit_log(request: web.Request, _requester: Requester) -> web.Response:
    start, limit = page(request)
    value = request.query.get("dir", "b")
    if value not in ("f", "b"):
        raise invalid_param("'dir' must be 'f' or 'b'")
    entries, total = await get_hs(request).admin.store.audit_log(
        start,
        limit,
        value == "b",
        request.query.get("admin") or None,
        request.query.get("action") or None,
        request.query.get("target") or None,
    )
    return paged("entries", entries, total, start)


# Unauthenticated, as in Synapse: tools read it before logging in.
@routes.get("/_synapse/admin/v1/server_version", auth=False, raw_path=True)
async def server_version(_request: web.Request) -> web.Response:
    return json_response(
        {"server_version": f"{SERVER_SOFTWARE['name']} {SERVER_SOFTWARE['version']}"}
    )
