"""Room tags: GET /user/{u}/rooms/{r}/tags, PUT/DELETE .../tags/{tag}.

Tags are the room account data `m.tag` ({"tags": {tag: {order}}}), so they reach clients
through the same /sync section as any other room account data.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from homeserver.accounts.routes.account_data import check_target
from homeserver.accounts.tags import TAG_TYPE, update_tags
from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import bad_json, invalid_param
from homeserver.http.request import json_body, json_response
from homeserver.http.routes import RouteTable

routes = RouteTable()

MAX_TAG_LENGTH = 255


def _target(request: web.Request, requester: Requester) -> tuple[str, str]:
    user_id = request.match_info["user_id"]
    room_id = request.match_info["room_id"]
    check_target(requester, user_id, room_id)
    return user_id, room_id


@routes.get("/user/{user_id}/rooms/{room_id}/tags")
async def get_tags(request: web.Request, requester: Requester) -> web.Response:
    user_id, room_id = _target(request, requester)
    stored = await get_hs(request).accounts.account_data.get(user_id, room_id, TAG_TYPE)
    tags = (orjson.loads(stored) if stored else {}).get("tags") or {}
    return json_response({"tags": tags})


@routes.put("/user/{user_id}/rooms/{room_id}/tags/{tag}")
async def put_tag(request: web.Request, requester: Requester) -> web.Response:
    user_id, room_id = _target(request, requester)
    tag = request.match_info["tag"]
    if not tag or len(tag) > MAX_TAG_LENGTH:
        raise invalid_param("Invalid tag name")
    body = await json_body(request, allow_empty=True)
    order = body.get("order")
    if order is not None and (isinstance(order, bool) or not isinstance(order, int | float)):
        raise bad_json("'order' must be a number")
    await update_tags(get_hs(request), user_id, room_id, lambda tags: tags.__setitem__(tag, body))
    return json_response({})


@routes.delete("/user/{user_id}/rooms/{room_id}/tags/{tag}")
async def delete_tag(request: web.Request, requester: Requester) -> web.Response:
    user_id, room_id = _target(request, requester)
    tag = request.match_info["tag"]
    await update_tags(get_hs(request), user_id, room_id, lambda tags: tags.pop(tag, None))
    return json_response({})
