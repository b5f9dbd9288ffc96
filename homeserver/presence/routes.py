"""GET/PUT /presence/{userId}/status (presence.yaml)."""

from __future__ import annotations

import time

from aiohttp import web

from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import bad_json, forbidden, invalid_param, not_found
from homeserver.http.request import field, json_body, json_response
from homeserver.http.routes import RouteTable
from homeserver.presence.service import STATES, presence_content

routes = RouteTable()

MAX_STATUS_MSG = 2048


@routes.put("/presence/{user_id}/status", ratelimit=True)
async def put_status(request: web.Request, requester: Requester) -> web.Response:
    if request.match_info["user_id"] != requester.user_id:
        raise forbidden("You can only set your own presence")
    body = await json_body(request)
    state = field(body, "presence", str)
    if state not in STATES:
        raise invalid_param(f"'presence' must be one of {', '.join(STATES)}")
    status_msg = field(body, "status_msg", str, None)
    if status_msg is not None and len(status_msg) > MAX_STATUS_MSG:
        raise bad_json(f"'status_msg' is limited to {MAX_STATUS_MSG} characters")
    await get_hs(request).presence.set(requester.user_id, state, status_msg)
    return json_response({})


@routes.get("/presence/{user_id}/status")
async def get_status(request: web.Request, requester: Requester) -> web.Response:
    user_id = request.match_info["user_id"]
    store = get_hs(request).presence.store
    if user_id != requester.user_id:
        # Users of other servers have no account here; what their servers told us is kept.
        local = user_id.partition(":")[2] == get_hs(request).server_name
        if local and not await store.user_exists(user_id):
            raise not_found("Unknown user")
        if not await store.share_a_room(requester.user_id, user_id):
            raise forbidden("You do not share a room with this user")
    row = await store.get(user_id)
    content = presence_content(row, int(time.time() * 1000))
    # The endpoint reports presence only; profile fields belong to the m.presence event.
    content.pop("displayname", None)
    content.pop("avatar_url", None)
    return json_response(content)
