"""Account data: PUT/GET /user/{u}/account_data/{type} and the per-room variant (/sync
delivers what changed through homeserver/sync/streams/account_data.py)."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.account_data import write_account_data
from homeserver.accounts.ignored import IGNORED_USER_LIST, check_ignored_list
from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.http.request import json_body, json_response
from homeserver.http.routes import RouteTable
from storage.account_data import GLOBAL

routes = RouteTable()

MAX_TYPE_LENGTH = 255


def check_target(requester: Requester, user_id: str, room_id: str = GLOBAL) -> None:
    """Account data is private: only its owner reads or writes it."""
    if user_id != requester.user_id:
        raise forbidden("Cannot access another user's account data")
    # No ":" required: room version 12 room IDs carry no server name.
    if room_id != GLOBAL and not (room_id.startswith("!") and len(room_id) > 1):
        raise invalid_param(f"{room_id!r} is not a room ID")


def check_type(data_type: str) -> None:
    if not data_type or len(data_type) > MAX_TYPE_LENGTH:
        raise invalid_param("Invalid account data type")


async def _put(request: web.Request, requester: Requester, room_id: str) -> web.Response:
    user_id = request.match_info["user_id"]
    data_type = request.match_info["type"]
    check_target(requester, user_id, room_id)
    check_type(data_type)
    if data_type == "m.fully_read":
        raise MatrixError(405, "M_BAD_JSON", "m.fully_read is set through /read_markers")
    content = await json_body(request)
    if data_type == IGNORED_USER_LIST and room_id == GLOBAL:
        check_ignored_list(content)
    await write_account_data(get_hs(request), user_id, room_id, data_type, content)
    return json_response({})


async def _get(request: web.Request, requester: Requester, room_id: str) -> web.Response:
    user_id = request.match_info["user_id"]
    data_type = request.match_info["type"]
    check_target(requester, user_id, room_id)
    stored = await get_hs(request).accounts.account_data.get(user_id, room_id, data_type)
    if stored is None:
        # Bots (mautrix) rely on the 404 to tell "never set" from "empty".
        raise not_found("Account data not found")
    return web.Response(body=stored.encode(), content_type="application/json")


@routes.put("/user/{user_id}/account_data/{type}")
async def put_global(request: web.Request, requester: Requester) -> web.Response:
    return await _put(request, requester, GLOBAL)


@routes.get("/user/{user_id}/account_data/{type}")
async def get_global(request: web.Request, requester: Requester) -> web.Response:
    return await _get(request, requester, GLOBAL)


@routes.put("/user/{user_id}/rooms/{room_id}/account_data/{type}")
async def put_room(request: web.Request, requester: Requester) -> web.Response:
    return await _put(request, requester, request.match_info["room_id"])


@routes.get("/user/{user_id}/rooms/{room_id}/account_data/{type}")
async def get_room(request: web.Request, requester: Requester) -> web.Response:
    return await _get(request, requester, request.match_info["room_id"])
