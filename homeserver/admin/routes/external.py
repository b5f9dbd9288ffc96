"""External accounts (ours, issue 15): mark a local account external, with an optional
expiry, or ordinary again. An external user cannot create rooms or invite, is kept out of
restricted rooms and hidden from the user directory (homeserver/policy); past its expiry
every request of theirs answers 403."""

from __future__ import annotations

import time

from aiohttp import web

from homeserver.admin.api import AdminRoutes, local_user, note
from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import invalid_param, not_found
from homeserver.http.request import field, json_body, json_response
from homeserver.http.routes import RouteTable

routes = RouteTable()
admin = AdminRoutes(routes)


async def _local_account(request: web.Request) -> str:
    user_id = local_user(request)
    if await get_hs(request).admin.store.user(user_id) is None:
        raise not_found("User not found")
    return user_id


def _answer(user_id: str, row) -> web.Response:
    return json_response(
        {
            "user_id": user_id,
            "external": row is not None,
            "expires_at": row["expires_at_ms"] if row is not None else None,
        }
    )


@admin.get("/v1/users/{user_id}/external")
async def get_external(request: web.Request, _requester: Requester) -> web.Response:
    user_id = await _local_account(request)
    return _answer(user_id, await get_hs(request).policy.store.get(user_id))


@admin.put("/v1/users/{user_id}/external", action="set_external")
async def set_external(request: web.Request, _requester: Requester) -> web.Response:
    """Body: {"external": bool, "expires_at": ms since the epoch or null}. Without
    `expires_at`, external_users.default_validity_s from now (or none)."""
    user_id = await _local_account(request)
    body = await json_body(request)
    external = field(body, "external", bool)
    now = int(time.time() * 1000)
    policy = get_hs(request).policy
    validity = policy.default_validity_s
    expires_at = now + validity * 1000 if validity is not None else None
    if "expires_at" in body:
        expires_at = field(body, "expires_at", int, None)
        if expires_at is not None and expires_at <= 0:
            raise invalid_param("'expires_at' must be a positive timestamp in milliseconds")
    if external:
        await policy.store.mark(user_id, expires_at, now)
    else:
        await policy.store.unmark(user_id)
    note(request, external=external, expires_at=expires_at if external else None)
    return _answer(user_id, await policy.store.get(user_id))
