"""POST /account/password, POST /account/deactivate, GET /account/3pid."""

from __future__ import annotations

import logging

from aiohttp import web

from homeserver.accounts import uia
from homeserver.accounts.membership import leave_all_rooms
from homeserver.accounts.passwords import check_password_strength, hash_password
from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.request import field, json_body, json_response
from homeserver.http.routes import RouteTable

logger = logging.getLogger(__name__)
routes = RouteTable()


@routes.post("/account/password")
async def change_password(request: web.Request, requester: Requester) -> web.Response:
    hs = get_hs(request)
    body = await json_body(request)
    new_password = field(body, "new_password", str)
    logout_devices = field(body, "logout_devices", bool, True)
    check_password_strength(new_password, hs.config.password_min_length)
    await uia.require(request, requester, body, uia.PASSWORD_FLOWS)

    accounts = hs.accounts
    await accounts.users.set_password_hash(requester.user_id, await hash_password(new_password))
    if logout_devices:
        # Every other session goes; the one that changed the password stays signed in.
        others = [
            d
            for d in await accounts.devices.device_ids(requester.user_id)
            if d != requester.device_id
        ]
        await accounts.delete_devices(requester.user_id, others)
    return json_response({})


@routes.post("/account/deactivate")
async def deactivate(request: web.Request, requester: Requester) -> web.Response:
    hs = get_hs(request)
    body = await json_body(request, allow_empty=True)
    erase = field(body, "erase", bool, False)
    field(body, "id_server", str, None)
    await uia.require(request, requester, body, uia.PASSWORD_FLOWS)

    accounts = hs.accounts
    user_id = requester.user_id
    # Leave rooms first, while the account may still send events.
    await leave_all_rooms(hs, user_id)
    async with hs.db.acquire() as conn:
        async with conn.transaction():
            await accounts.users.mark_deactivated(conn, user_id, erase=erase)
            device_ids = await accounts.devices.device_ids(user_id, conn)
    await accounts.delete_devices(user_id, device_ids)
    return json_response({"id_server_unbind_result": "no-support"})


@routes.get("/account/3pid")
async def third_party_ids(_request: web.Request, _requester: Requester) -> web.Response:
    # This server binds no e-mail addresses or phone numbers.
    return json_response({"threepids": []})
