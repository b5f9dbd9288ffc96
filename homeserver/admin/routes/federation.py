"""Federation destinations in Synapse's shapes: the outbound queue's view of each remote
server (failures, back-off), the rooms we share with one, and ending a back-off."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.admin.api import AdminRoutes, direction, order, page, paged
from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, not_found
from homeserver.http.request import json_response
from homeserver.http.routes import RouteTable

routes = RouteTable()
admin = AdminRoutes(routes)

_ORDERS = (
    "destination",
    "retry_last_ts",
    "retry_interval",
    "failure_ts",
    "last_successful_stream_ordering",
)


def destination_json(row) -> dict[str, Any]:
    """Synapse's fields from our queue's: retry_last_ts / failure_ts are when the back-off
    ends (0 when none), retry_interval counts failures, last_successful_stream_ordering is
    the time of the last delivery (we do not track orderings per destination)."""
    failing = row["failures"] > 0
    return {
        "destination": row["destination"],
        "retry_last_ts": row["retry_at_ts"] if failing else 0,
        "retry_interval": row["failures"],
        "failure_ts": row["retry_at_ts"] if failing else None,
        "last_successful_stream_ordering": row["last_success_ts"],
    }


@admin.get("/v1/federation/destinations")
async def list_destinations(request: web.Request, _requester: Requester) -> web.Response:
    start, limit = page(request)
    rows, total = await get_hs(request).admin.store.destinations(
        request.query.get("destination") or None,
        order(request, _ORDERS, "destination"),
        direction(request),
        start,
        limit,
    )
    items = [destination_json(r) for r in rows]
    return paged("destinations", items, total, start, token_as_str=True)


async def _existing(request: web.Request):
    row = await get_hs(request).admin.store.destination(request.match_info["destination"])
    if row is None:
        raise not_found("Unknown destination")
    return row


@admin.get("/v1/federation/destinations/{destination}")
async def get_destination(request: web.Request, _requester: Requester) -> web.Response:
    return json_response(destination_json(await _existing(request)))


@admin.get("/v1/federation/destinations/{destination}/rooms")
async def destination_rooms(request: web.Request, _requester: Requester) -> web.Response:
    row = await _existing(request)
    start, limit = page(request)
    rows = await get_hs(request).membership_store.rooms_shared_with_server(row["destination"])
    if direction(request):
        rows.reverse()
    items = [{"room_id": room_id, "stream_ordering": 0} for room_id in rows[start : start + limit]]
    return paged("rooms", items, len(rows), start, token_as_str=True)


@admin.post("/v1/federation/destinations/{destination}/reset_connection")
async def reset_connection(request: web.Request, _requester: Requester) -> web.Response:
    row = await _existing(request)
    if row["failures"] == 0:
        raise MatrixError(
            400, "M_UNKNOWN", "The retry timing does not need to be reset for this destination"
        )
    sender = get_hs(request).federation.sender
    # With federation running this ends the back-off and sends what waited; the reset
    # that follows covers a process whose sender is not running.
    await sender.destination_is_back(row["destination"])
    await sender.store.reset_backoff(row["destination"])
    return json_response({})
