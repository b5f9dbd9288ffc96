"""How admin handlers are declared: admins only, and an audit row for every action.

`AdminRoutes(table)` wraps a package's RouteTable: `@admin.get("/v1/...")` serves the
path under /_synapse/admin, refuses (403 M_FORBIDDEN) a caller who is not a server admin
before the handler runs, and after a successful change writes one audit row (who, what,
when, target). Reads are audited too where they disclose a user's private data
(`audit=True`). Handlers add non-secret details with `note(request, ...)`; nothing that
is a password, token or message content may be passed there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from homeserver.http.auth import Requester, require_admin
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, invalid_param
from homeserver.http.request import json_response, query_int
from homeserver.http.routes import RouteTable

PREFIX = "/_synapse/admin"

_AUDIT_KEY: web.RequestKey = web.RequestKey("admin_audit", dict)

AdminHandler = Callable[[web.Request, Requester], Awaitable[web.StreamResponse]]

# Path parameters naming what an action is about, most specific first.
# (Registration tokens are credentials: they are never a target.)
_TARGET_PARAMS = ("user_id", "room_id", "media_id", "destination", "report_id", "delete_id")


def note(request: web.Request, target: str | None = None, /, **details: Any) -> None:
    """Adds to the audit row of this request: its target (when the path does not name
    it) and non-secret details."""
    entry = request.setdefault(_AUDIT_KEY, {})
    if target is not None:
        entry["target"] = target
    entry.setdefault("details", {}).update(details)


def _target(request: web.Request) -> str | None:
    for name in _TARGET_PARAMS:
        if name in request.match_info:
            return request.match_info[name]
    return None


class AdminRoutes:
    def __init__(self, table: RouteTable):
        self.table = table

    def route(self, method: str, path: str, *, action: str | None = None, audit=None):
        audited = method != "GET" if audit is None else audit

        def decorate(fn: AdminHandler) -> AdminHandler:
            name = action or fn.__name__

            async def handler(request: web.Request, requester: Requester) -> web.StreamResponse:
                require_admin(request, requester)
                response = await fn(request, requester)
                if audited:
                    entry = request.get(_AUDIT_KEY, {})
                    target = entry.get("target", _target(request))
                    await get_hs(request).admin.store.audit(
                        requester.user_id, name, target, entry.get("details", {})
                    )
                return response

            handler.__name__ = fn.__name__
            self.table.route(method, PREFIX + path, raw_path=True)(handler)
            return fn

        return decorate

    def get(self, path: str, **kw):
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw):
        return self.route("POST", path, **kw)

    def put(self, path: str, **kw):
        return self.route("PUT", path, **kw)

    def delete(self, path: str, **kw):
        return self.route("DELETE", path, **kw)


def page(request: web.Request, default_limit: int = 100) -> tuple[int, int]:
    """Synapse's `from` (an offset) and `limit`; negative values are M_INVALID_PARAM."""
    return query_int(request, "from", 0), query_int(request, "limit", default_limit, maximum=1000)


def direction(request: web.Request) -> bool:
    """`dir`: 'f' (default) or 'b'; True when backwards."""
    value = request.query.get("dir", "f")
    if value not in ("f", "b"):
        raise invalid_param("'dir' must be 'f' or 'b'")
    return value == "b"


def order(request: web.Request, allowed: tuple[str, ...], default: str) -> str:
    value = request.query.get("order_by", default)
    if value not in allowed:
        raise invalid_param(f"Unknown value for 'order_by': {value}")
    return value


def paged(
    key: str, items: list, total: int, start: int, *, token_as_str: bool = False
) -> web.Response:
    """A Synapse page: the items, `total`, and `next_token` while more follow (a string
    in the lists where Synapse sends one: users, destinations)."""
    body: dict[str, Any] = {key: items, "total": total}
    if start + len(items) < total:
        after = start + len(items)
        body["next_token"] = str(after) if token_as_str else after
    return json_response(body)


def local_user(request: web.Request, user_id: str | None = None) -> str:
    """The `user_id` path parameter, which must be a user of this server."""
    user_id = user_id if user_id is not None else request.match_info["user_id"]
    hs = get_hs(request)
    if not user_id.startswith("@") or ":" not in user_id:
        raise invalid_param(f"Invalid user ID: {user_id}")
    if user_id.split(":", 1)[1] != hs.server_name:
        raise MatrixError(400, "M_UNKNOWN", "Can only look up local users")
    return user_id
