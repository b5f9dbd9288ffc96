"""POST /user/{userId}/filter and GET /user/{userId}/filter/{filterId}."""

from __future__ import annotations

import orjson
from aiohttp import web

from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import bad_json, forbidden, not_found
from homeserver.http.request import json_body, json_response
from homeserver.http.routes import RouteTable

routes = RouteTable()

_EVENT_FILTER_LISTS = ("types", "not_types", "senders", "not_senders")
_ROOM_FILTER_LISTS = ("rooms", "not_rooms")
_ROOM_EVENT_FILTERS = ("timeline", "state", "ephemeral", "account_data")


def _check_event_filter(value, where: str, room_event: bool = False) -> None:
    """Loose shape checks: the right containers and types; unknown keys are allowed."""
    if not isinstance(value, dict):
        raise bad_json(f"'{where}' must be an object")
    lists = _EVENT_FILTER_LISTS + (_ROOM_FILTER_LISTS if room_event else ())
    for key in lists:
        items = value.get(key)
        if items is not None and not (
            isinstance(items, list) and all(isinstance(i, str) for i in items)
        ):
            raise bad_json(f"'{where}.{key}' must be a list of strings")
    limit = value.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise bad_json(f"'{where}.limit' must be a non-negative integer")


def validate_filter(body: dict) -> None:
    fields = body.get("event_fields")
    if fields is not None and not (
        isinstance(fields, list) and all(isinstance(f, str) for f in fields)
    ):
        raise bad_json("'event_fields' must be a list of strings")
    if body.get("event_format", "client") not in ("client", "federation"):
        raise bad_json("'event_format' must be 'client' or 'federation'")
    for name in ("presence", "account_data"):
        if name in body:
            _check_event_filter(body[name], name)
    room = body.get("room")
    if room is None:
        return
    if not isinstance(room, dict):
        raise bad_json("'room' must be an object")
    for key in _ROOM_FILTER_LISTS:
        items = room.get(key)
        if items is not None and not (
            isinstance(items, list) and all(isinstance(i, str) for i in items)
        ):
            raise bad_json(f"'room.{key}' must be a list of strings")
    for name in _ROOM_EVENT_FILTERS:
        if name in room:
            _check_event_filter(room[name], f"room.{name}", room_event=True)


def _own_user(request: web.Request, requester: Requester) -> str:
    user_id = request.match_info["user_id"]
    if user_id != requester.user_id:
        raise forbidden("Cannot access another user's filters")
    return user_id


@routes.post("/user/{user_id}/filter")
async def create_filter(request: web.Request, requester: Requester) -> web.Response:
    user_id = _own_user(request, requester)
    body = await json_body(request)
    validate_filter(body)
    filter_id = await get_hs(request).accounts.filters.add(user_id, orjson.dumps(body).decode())
    return json_response({"filter_id": str(filter_id)})


async def load_filter(hs, user_id: str, filter_id: str) -> dict | None:
    """A stored filter by ID (for /sync and /messages), or None."""
    if not filter_id.isdigit() or len(filter_id) > 18:
        return None
    stored = await hs.accounts.filters.get(user_id, int(filter_id))
    return orjson.loads(stored) if stored is not None else None


@routes.get("/user/{user_id}/filter/{filter_id}")
async def get_filter(request: web.Request, requester: Requester) -> web.Response:
    user_id = _own_user(request, requester)
    found = await load_filter(get_hs(request), user_id, request.match_info["filter_id"])
    if found is None:
        raise not_found("No such filter")
    return json_response(found)
