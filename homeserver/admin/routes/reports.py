"""Reports: the Client-Server report endpoints (an event, a room, a user), and the admin
API's event reports (Synapse's /_synapse/admin/v1/event_reports) that read them. Both sides
live here because the admin API is the only reader of what clients report."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from homeserver.admin.api import AdminRoutes, page, paged
from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import bad_json, invalid_param, not_found
from homeserver.http.request import field, json_body, json_response
from homeserver.http.routes import RouteTable
from homeserver.rooms.history import visible_event
from homeserver.rooms.membership import valid_user_id

routes = RouteTable()
admin = AdminRoutes(routes)

MAX_REASON = 4096


def _reason(body: dict, required: bool) -> str | None:
    reason = field(body, "reason", str) if required else field(body, "reason", str, None)
    if reason is not None and len(reason) > MAX_REASON:
        raise invalid_param("'reason' is too long")
    return reason


# -- client endpoints -----------------------------------------------------------------------


@routes.post("/rooms/{room_id}/report/{event_id}", ratelimit=True)
async def report_event(request: web.Request, requester: Requester) -> web.Response:
    """The reporter must be joined and able to see the event; otherwise (and for a
    redacted event) 404, as the spec allows, so nothing is disclosed."""
    hs = get_hs(request)
    room_id = request.match_info["room_id"]
    event_id = request.match_info["event_id"]
    body = await json_body(request, allow_empty=True)
    reason = _reason(body, required=False)
    score = body.get("score")
    if score is not None and (
        isinstance(score, bool) or not isinstance(score, int) or not -100 <= score <= 0
    ):
        raise bad_json("'score' must be an integer between -100 and 0")
    missing = not_found("The event was not found or you are not joined to the room.")
    if await hs.membership_store.membership(room_id, requester.user_id) != "join":
        raise missing
    try:
        event = await visible_event(hs, requester.user_id, room_id, event_id)
    except Exception:
        raise missing from None
    if event.redacted_by is not None:
        raise missing
    await hs.admin.store.add_event_report(room_id, event_id, requester.user_id, reason, score)
    return json_response({})


@routes.post("/rooms/{room_id}/report", ratelimit=True)
async def report_room(request: web.Request, requester: Requester) -> web.Response:
    hs = get_hs(request)
    room_id = request.match_info["room_id"]
    body = await json_body(request)
    reason = _reason(body, required=True) or ""
    if not await hs.event_store.room_exists(room_id):
        raise not_found("The room was not found.")
    await hs.admin.store.add_room_report(room_id, requester.user_id, reason)
    return json_response({})


@routes.post("/users/{user_id}/report", ratelimit=True)
async def report_user(request: web.Request, requester: Requester) -> web.Response:
    """A local user must exist; another server's users cannot be checked and are
    recorded as given."""
    hs = get_hs(request)
    user_id = request.match_info["user_id"]
    body = await json_body(request)
    reason = _reason(body, required=True) or ""
    if not valid_user_id(user_id):
        raise invalid_param("Invalid user ID")
    local = user_id.split(":", 1)[1] == hs.server_name
    if local and not await hs.accounts.users.user_exists(user_id):
        raise not_found("The user was not found.")
    await hs.admin.store.add_user_report(user_id, requester.user_id, reason)
    return json_response({})


# -- admin API ------------------------------------------------------------------------------


def report_json(row, with_event: bool = False) -> dict[str, Any]:
    report = {
        k: row[k]
        for k in (
            "id",
            "received_ts",
            "room_id",
            "name",
            "event_id",
            "user_id",
            "reason",
            "score",
            "sender",
            "canonical_alias",
        )
    }
    if with_event:
        report["event_json"] = orjson.loads(row["event_json"]) if row["event_json"] else None
    return report


def _report_id(request: web.Request) -> int:
    raw = request.match_info["report_id"]
    if not raw.isdigit():
        raise invalid_param("The report ID must be a positive integer")
    return int(raw)


@admin.get("/v1/event_reports")
async def list_event_reports(request: web.Request, _requester: Requester) -> web.Response:
    """Newest first unless `dir=f`; filters `room_id`, `user_id` (the reporter, a
    substring) and `event_sender_user_id` (Synapse's docs call it `sender_user_id`)."""
    start, limit = page(request)
    value = request.query.get("dir", "b")
    if value not in ("f", "b"):
        raise invalid_param("'dir' must be 'f' or 'b'")
    query = request.query
    rows, total = await get_hs(request).admin.store.event_reports(
        start,
        limit,
        value == "b",
        query.get("room_id") or None,
        query.get("user_id") or None,
        query.get("event_sender_user_id") or query.get("sender_user_id") or None,
    )
    return paged("event_reports", [report_json(r) for r in rows], total, start)


@admin.get("/v1/event_reports/{report_id}", audit=True)
async def get_event_report(request: web.Request, _requester: Requester) -> web.Response:
    row = await get_hs(request).admin.store.event_report(_report_id(request))
    if row is None:
        raise not_found("Event report not found")
    return json_response(report_json(row, with_event=True))


@admin.delete("/v1/event_reports/{report_id}")
async def delete_event_report(request: web.Request, _requester: Requester) -> web.Response:
    if not await get_hs(request).admin.store.delete_event_report(_report_id(request)):
        raise not_found("Event report not found")
    return json_response({})


@admin.get("/v1/room_reports")
async def list_room_reports(request: web.Request, _requester: Requester) -> web.Response:
    start, limit = page(request)
    rows, total = await get_hs(request).admin.store.room_reports(
        start, limit, request.query.get("room_id") or None, request.query.get("user_id") or None
    )
    keys = ("id", "received_ts", "room_id", "user_id", "reason", "name", "canonical_alias", "topic")
    body: dict[str, Any] = {"room_reports": [{k: r[k] for k in keys} for r in rows], "total": total}
    if start + len(rows) < total:
        body["next_batch"] = start + len(rows)
    return json_response(body)


@admin.get("/v1/user_reports")
async def list_user_reports(request: web.Request, _requester: Requester) -> web.Response:
    """Ours (Synapse has no admin API for user reports): newest first, filters
    `target_user_id` and `user_id` (the reporter)."""
    start, limit = page(request)
    rows, total = await get_hs(request).admin.store.user_reports(
        start,
        limit,
        request.query.get("target_user_id") or None,
        request.query.get("user_id") or None,
    )
    keys = ("id", "received_ts", "target_user_id", "user_id", "reason")
    return paged("user_reports", [{k: r[k] for k in keys} for r in rows], total, start)
