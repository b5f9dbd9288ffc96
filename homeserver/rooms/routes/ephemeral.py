"""PUT /rooms/{roomId}/typing/{userId}, POST /rooms/{roomId}/receipt/{type}/{eventId} and
POST /rooms/{roomId}/read_markers; what they store is homeserver/rooms/ephemeral.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, bad_json, forbidden, not_found
from homeserver.http.request import field, json_body, json_response
from homeserver.http.routes import RouteTable
from homeserver.rooms.ephemeral import set_typing, store_receipt

if TYPE_CHECKING:
    from homeserver.app import Homeserver

routes = RouteTable()

RECEIPT_TYPES = ("m.read", "m.read.private", "m.fully_read")
MAX_TYPING_MS = 120_000


async def _require_joined(hs: Homeserver, room_id: str, user_id: str) -> None:
    if not await hs.event_store.room_exists(room_id):
        raise forbidden("You are not in this room")
    if await hs.events.membership(room_id, user_id) != "join":
        raise forbidden("You are not joined to this room")


@routes.put("/rooms/{room_id}/typing/{user_id}", ratelimit=True)
async def put_typing(request: web.Request, requester: Requester) -> web.Response:
    hs = get_hs(request)
    room_id = request.match_info["room_id"]
    if request.match_info["user_id"] != requester.user_id:
        raise forbidden("You can only set your own typing state")
    body = await json_body(request)
    typing = field(body, "typing", bool)
    timeout = field(body, "timeout", int, 30_000)
    await _require_joined(hs, room_id, requester.user_id)
    await set_typing(hs, room_id, requester.user_id, typing, max(0, min(timeout, MAX_TYPING_MS)))
    return json_response({})


async def _check_event(hs: Homeserver, room_id: str, event_id: str) -> None:
    ev = await hs.event_store.get_event(event_id)
    if ev is None or ev.room_id != room_id:
        raise not_found("Event not found")


@routes.post("/rooms/{room_id}/receipt/{receipt_type}/{event_id}", ratelimit=True)
async def post_receipt(request: web.Request, requester: Requester) -> web.Response:
    hs = get_hs(request)
    room_id = request.match_info["room_id"]
    receipt_type = request.match_info["receipt_type"]
    event_id = request.match_info["event_id"]
    if receipt_type not in RECEIPT_TYPES:
        raise MatrixError(400, "M_INVALID_PARAM", f"Unknown receipt type {receipt_type!r}")
    body = await json_body(request, allow_empty=True)
    thread_id = field(body, "thread_id", str, None)
    if thread_id is not None and thread_id != "main" and not thread_id.startswith("$"):
        raise MatrixError(400, "M_INVALID_PARAM", "thread_id must be 'main' or an event ID")
    if thread_id is not None and receipt_type == "m.fully_read":
        raise MatrixError(400, "M_INVALID_PARAM", "m.fully_read receipts are not threaded")
    await _require_joined(hs, room_id, requester.user_id)
    await _check_event(hs, room_id, event_id)
    if thread_id is not None:
        await hs.relations.check_receipt_thread(event_id, thread_id)
    await store_receipt(hs, room_id, requester.user_id, receipt_type, event_id, thread_id)
    return json_response({})


@routes.post("/rooms/{room_id}/read_markers", ratelimit=True)
async def post_read_markers(request: web.Request, requester: Requester) -> web.Response:
    hs = get_hs(request)
    room_id = request.match_info["room_id"]
    body = await json_body(request)
    markers = {t: field(body, t, str, None) for t in RECEIPT_TYPES}
    if not any(markers.values()):
        raise bad_json("No read marker given")
    await _require_joined(hs, room_id, requester.user_id)
    for event_id in markers.values():
        if event_id:
            await _check_event(hs, room_id, event_id)
    for receipt_type, event_id in markers.items():
        if event_id:
            await store_receipt(hs, room_id, requester.user_id, receipt_type, event_id, None)
    return json_response({})
