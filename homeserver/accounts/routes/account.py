"""POST /account/password (a change, or a reset by e-mail), POST /account/deactivate.
(E-mail addresses, /account/3pid/..., are routes/threepids.py.)"""

from __future__ import annotations

import logging

from aiohttp import web

from homeserver.accounts import uia
from homeserver.accounts.deactivation import deactivate_account
from homeserver.accounts.passwords import check_password_strength, hash_password
from homeserver.http.auth import Requester, token_from_request
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError
from homeserver.http.request import field, json_body, json_response
from homeserver.http.routes import RouteTable, authenticated

logger = logging.getLogger(__name__)
routes = RouteTable()


@routes.post("/account/password", auth=False)
async def change_password(request: web.Request) -> web.Response:
    """With an access token: a change, re-authenticated by password. Without one (and
    with e-mail configured): a reset, authenticated by a validated address
    (m.login.email.identity, after /account/password/email/requestToken)."""
    hs = get_hs(request)
    requester = None
    if token_from_request(request) is not None or not hs.accounts.threepids.enabled:
        requester = await authenticated(request)
    body = await json_body(request)
    new_password = field(body, "new_password", str)
    logout_devices = field(body, "logout_devices", bool, True)
    check_password_strength(new_password, hs.config.password_min_length)
    accounts = hs.accounts
    if requester is not None:
        await uia.require(request, requester, body, await uia.user_flows(request, requester))
        user_id = requester.user_id
        password_hash = await hash_password(new_password)
        await accounts.users.set_password_hash(user_id, password_hash)
        keep_token: bytes | None = requester.token_hash
    else:
        results = await uia.require(request, None, body, [[uia.EMAIL_IDENTITY]])
        threepid = results["threepid"]
        found = await accounts.threepids.user_of(threepid["address"])
        if found is None:
            raise MatrixError(400, "M_THREEPID_NOT_FOUND", "No account has this e-mail address")
        user_id = found
        password_hash = await hash_password(new_password)
        async with hs.db.acquire() as conn:
            async with conn.transaction():
                await accounts.threepids.spend(conn, threepid["sid"])
                await accounts.users.set_password_hash(user_id, password_hash, conn)
        keep_token = None
    # Whoever held another session may have registered a pusher to read the user's
    # notifications: those go whether or not the sessions do (as Synapse).
    await hs.push_store.delete_pushers_except_token(user_id, keep_token)
    if logout_devices:
        # Every other session goes; the one that changed the password stays signed in.
        keep = requester.device_id if requester is not None else None
        others = [d for d in await accounts.devices.device_ids(user_id) if d != keep]
        await accounts.delete_devices(user_id, others)
    return json_response({})


@routes.post("/account/deactivate")
async def deactivate(request: web.Request, requester: Requester) -> web.Response:
    hs = get_hs(request)
    body = await json_body(request, allow_empty=True)
    erase = field(body, "erase", bool, False)
    field(body, "id_server", str, None)
    # An appservice deactivates its own users (it holds no password for them); the
    # requester is then a user of its namespace (auth refuses masquerading outside it).
    if requester.appservice is None:
        await uia.require(request, requester, body, await uia.user_flows(request, requester))

    unbound = await deactivate_account(hs, requester.user_id, erase)
    return json_response({"id_server_unbind_result": "success" if unbound else "no-support"})
