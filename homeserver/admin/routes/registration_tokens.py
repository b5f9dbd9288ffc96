"""Registration tokens (/_synapse/admin/v1/registration_tokens), in Synapse's shapes."""

from __future__ import annotations

import re
import secrets
import string

from aiohttp import web

from homeserver.admin.api import AdminRoutes, note
from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import invalid_param, not_found
from homeserver.http.request import INT32_MAX, INT64_MAX, json_body, json_response, query_bool
from homeserver.http.routes import RouteTable

routes = RouteTable()
admin = AdminRoutes(routes)

BASE = "/v1/registration_tokens"
_TOKEN = re.compile(r"[A-Za-z0-9._~-]{1,64}")  # whole string: fullmatch
_ALPHABET = string.ascii_letters + string.digits + "._~-"


def token_json(row) -> dict:
    return {k: row[k] for k in ("token", "uses_allowed", "pending", "completed", "expiry_time")}


def _optional_non_negative(body: dict, name: str, maximum: int = INT64_MAX) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise invalid_param(f"'{name}' must be an integer from 0 to {maximum}, or null")
    return value


@admin.post(BASE + "/new")
async def create_token(request: web.Request, requester: Requester) -> web.Response:
    body = await json_body(request, allow_empty=True)
    uses_allowed = _optional_non_negative(body, "uses_allowed", INT32_MAX)  # an INTEGER column
    expiry_time = _optional_non_negative(body, "expiry_time")
    store = get_hs(request).accounts.registration_tokens
    token = body.get("token")
    if token is not None:
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            raise invalid_param("'token' must be 1-64 characters of A-Z a-z 0-9 . _ ~ -")
        if not await store.create(token, uses_allowed, expiry_time):
            raise invalid_param(f"Token already exists: {token}")
    else:
        length = body.get("length", 16)
        if isinstance(length, bool) or not isinstance(length, int) or not 0 < length <= 64:
            raise invalid_param("'length' must be an integer between 1 and 64")
        while True:
            token = "".join(secrets.choice(_ALPHABET) for _ in range(length))
            if await store.create(token, uses_allowed, expiry_time):
                break
    note(request, uses_allowed=uses_allowed, expiry_time=expiry_time)
    return json_response(token_json(await store.get(token)))


@admin.get(BASE)
async def list_tokens(request: web.Request, requester: Requester) -> web.Response:
    valid = query_bool(request, "valid") if "valid" in request.query else None
    rows = await get_hs(request).accounts.registration_tokens.list(valid)
    return json_response({"registration_tokens": [token_json(r) for r in rows]})


@admin.get(BASE + "/{token}")
async def get_token(request: web.Request, requester: Requester) -> web.Response:
    row = await get_hs(request).accounts.registration_tokens.get(request.match_info["token"])
    if row is None:
        raise not_found("No such registration token")
    return json_response(token_json(row))


@admin.put(BASE + "/{token}")
async def update_token(request: web.Request, requester: Requester) -> web.Response:
    body = await json_body(request, allow_empty=True)
    changes: dict[str, int | None] = {
        name: _optional_non_negative(body, name)
        for name in ("uses_allowed", "expiry_time")
        if name in body
    }
    store = get_hs(request).accounts.registration_tokens
    if not await store.update(request.match_info["token"], changes):
        raise not_found("No such registration token")
    note(request, **changes)
    return json_response(token_json(await store.get(request.match_info["token"])))


@admin.delete(BASE + "/{token}")
async def delete_token(request: web.Request, requester: Requester) -> web.Response:
    store = get_hs(request).accounts.registration_tokens
    if not await store.delete(request.match_info["token"]):
        raise not_found("No such registration token")
    return json_response({})
