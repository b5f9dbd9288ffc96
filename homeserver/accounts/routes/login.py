"""GET/POST /login, /logout, /logout/all and /account/whoami."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.passwords import verify_password
from homeserver.accounts.usernames import user_id_from_login
from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, forbidden, invalid_param
from homeserver.http.request import field, json_body, json_response
from homeserver.http.routes import RouteTable

routes = RouteTable()

PASSWORD_LOGIN = "m.login.password"


@routes.get("/login", auth=False)
async def login_flows(_request: web.Request) -> web.Response:
    return json_response({"flows": [{"type": PASSWORD_LOGIN}]})


@routes.post("/login", auth=False)
async def login(request: web.Request) -> web.Response:
    hs = get_hs(request)
    hs.login_limiter.check(request.remote or "")
    body = await json_body(request)
    login_type = field(body, "type", str)
    if login_type != PASSWORD_LOGIN:
        raise MatrixError(400, "M_UNKNOWN", f"Unsupported login type {login_type!r}")
    password = field(body, "password", str)
    device_id = field(body, "device_id", str, None)
    display_name = field(body, "initial_device_display_name", str, None)
    if device_id is not None and not 0 < len(device_id) <= 255:
        raise invalid_param("'device_id' must be 1-255 characters")
    user_id = user_id_from_login(body, hs.server_name)
    # Per account as well as per address: guessing one user's password from many IPs.
    hs.login_limiter.check(user_id)

    user = await hs.accounts.users.get_user(user_id)
    if user is not None and user["deactivated"]:
        raise MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated")
    if not await verify_password(user["password_hash"] if user else None, password):
        raise forbidden("Invalid username or password")

    async with hs.db.acquire() as conn:
        async with conn.transaction():
            token, device_id = await hs.accounts.start_session(
                conn, user_id, device_id, display_name, request.remote
            )
    return json_response(
        {
            "user_id": user_id,
            "access_token": token,
            "device_id": device_id,
            "home_server": hs.server_name,
            "well_known": {"m.homeserver": {"base_url": hs.config.base_url}},
        }
    )


@routes.post("/logout")
async def logout(request: web.Request, requester: Requester) -> web.Response:
    # Logging out ends the device, as in Synapse: its keys and inbox go with it.
    await get_hs(request).accounts.delete_devices(requester.user_id, [requester.device_id])
    return json_response({})


@routes.post("/logout/all")
async def logout_all(request: web.Request, requester: Requester) -> web.Response:
    accounts = get_hs(request).accounts
    await accounts.delete_devices(
        requester.user_id, await accounts.devices.device_ids(requester.user_id)
    )
    return json_response({})


@routes.get("/account/whoami")
async def whoami(_request: web.Request, requester: Requester) -> web.Response:
    return json_response(
        {"user_id": requester.user_id, "device_id": requester.device_id, "is_guest": False}
    )
