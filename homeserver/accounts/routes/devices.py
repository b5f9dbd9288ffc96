"""GET /devices, GET/PUT/DELETE /devices/{id}, POST /delete_devices (deletion behind UIA)."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts import uia
from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import bad_json, invalid_param, not_found
from homeserver.http.request import field, json_body, json_response
from homeserver.http.routes import RouteTable

routes = RouteTable()

MAX_DISPLAY_NAME = 255


def device_json(row) -> dict:
    # Unknown values are null rather than absent, as Synapse does: matrix-nio rejects a
    # device without these keys.
    return {k: row[k] for k in ("device_id", "display_name", "last_seen_ip", "last_seen_ts")}


@routes.get("/devices")
async def list_devices(request: web.Request, requester: Requester) -> web.Response:
    rows = await get_hs(request).accounts.devices.list_devices(requester.user_id)
    return json_response({"devices": [device_json(r) for r in rows]})


@routes.get("/devices/{device_id}")
async def get_device(request: web.Request, requester: Requester) -> web.Response:
    device_id = request.match_info["device_id"]
    row = await get_hs(request).accounts.devices.get_device(requester.user_id, device_id)
    if row is None:
        raise not_found("No such device")
    return json_response(device_json(row))


@routes.put("/devices/{device_id}")
async def update_device(request: web.Request, requester: Requester) -> web.Response:
    body = await json_body(request, allow_empty=True)
    name = field(body, "display_name", str, None)
    if name is not None and len(name) > MAX_DISPLAY_NAME:
        raise invalid_param("'display_name' is too long")
    hs = get_hs(request)
    devices = hs.accounts.devices
    device_id = request.match_info["device_id"]
    if requester.appservice is not None:
        # An appservice creates its users' devices this way (spec v1.17, MSC4190),
        # without a login and its access token.
        if not 0 < len(device_id) <= 255:
            raise invalid_param("Device IDs are 1-255 characters")
        if await devices.get_device(requester.user_id, device_id) is None:
            async with hs.db.acquire() as conn, conn.transaction():
                await devices.ensure_device(
                    conn, requester.user_id, device_id, name, request.remote
                )
            await hs.accounts.device_changed(requester.user_id)
            return json_response({}, status=201)
    if "display_name" not in body:
        # Nothing to change, but the device must still exist.
        if await devices.get_device(requester.user_id, device_id) is None:
            raise not_found("No such device")
    elif not await devices.set_display_name(requester.user_id, device_id, name):
        raise not_found("No such device")
    else:
        await hs.accounts.device_changed(requester.user_id)
    return json_response({})


async def _delete_after_uia(
    request: web.Request, requester: Requester, body: dict, device_ids: list[str]
) -> web.Response:
    if requester.appservice is None:  # appservices delete without UIA (spec v1.17)
        await uia.require(request, requester, body, await uia.user_flows(request, requester))
    await get_hs(request).accounts.delete_devices(requester.user_id, device_ids)
    return json_response({})


@routes.delete("/devices/{device_id}")
async def delete_device(request: web.Request, requester: Requester) -> web.Response:
    body = await json_body(request, allow_empty=True)
    device_id = request.match_info["device_id"]
    # Unknown devices are 404 before any authentication round, as the spec's examples show.
    if await get_hs(request).accounts.devices.get_device(requester.user_id, device_id) is None:
        raise not_found("No such device")
    return await _delete_after_uia(request, requester, body, [device_id])


@routes.post("/delete_devices")
async def delete_devices(request: web.Request, requester: Requester) -> web.Response:
    body = await json_body(request)
    device_ids = field(body, "devices", list)
    if not all(isinstance(d, str) for d in device_ids):
        raise bad_json("'devices' must be a list of device IDs")
    # Devices that do not exist are ignored, as the spec asks.
    return await _delete_after_uia(request, requester, body, device_ids)
