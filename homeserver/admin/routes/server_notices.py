"""POST/PUT /_synapse/admin/v1/send_server_notice[/{txnId}]: a message from the server
to one local user, in that user's server-notices room (homeserver/admin/service.py)."""

from __future__ import annotations

from aiohttp import web

from homeserver.admin.api import AdminRoutes, local_user, note
from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import not_found
from homeserver.http.request import field, json_body, json_response
from homeserver.http.routes import RouteTable

routes = RouteTable()
admin = AdminRoutes(routes)


async def _send(
    request: web.Request, requester: Requester, txn_id: str | None = None
) -> web.Response:
    hs = get_hs(request)
    body = await json_body(request, event_content=True)
    user_id = local_user(request, field(body, "user_id", str))
    content = field(body, "content", dict)
    event_type = field(body, "type", str, "m.room.message")
    state_key = field(body, "state_key", str, None)
    if not await hs.accounts.users.is_active(user_id):
        raise not_found("User not found")
    # A retried PUT with the same transaction ID, from the same admin session, is the
    # same notice.
    txn = (f"admin:{requester.user_id}:{requester.device_id}", txn_id) if txn_id else None
    event_id = await hs.admin.send_server_notice(user_id, event_type, content, state_key, txn)
    # The notice's content is a message: only its type is recorded.
    note(request, user_id, type=event_type, event_id=event_id)
    return json_response({"event_id": event_id})


@admin.post("/v1/send_server_notice")
async def send_server_notice(request: web.Request, requester: Requester) -> web.Response:
    return await _send(request, requester)


@admin.put("/v1/send_server_notice/{txn_id}", action="send_server_notice")
async def send_server_notice_txn(request: web.Request, requester: Requester) -> web.Response:
    return await _send(request, requester, request.match_info["txn_id"])
