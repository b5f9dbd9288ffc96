"""GET/POST /login, /logout, /logout/all and /account/whoami."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts import cas
from homeserver.accounts.passwords import verify_password
from homeserver.accounts.usernames import user_id_from_login
from homeserver.http.auth import Requester, token_from_request
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, forbidden, invalid_param
from homeserver.http.request import field, json_body, json_response
from homeserver.http.routes import RouteTable

routes = RouteTable()

PASSWORD_LOGIN = "m.login.password"
APPSERVICE_LOGIN = "m.login.application_service"
TOKEN_LOGIN = "m.login.token"
SSO_LOGIN = "m.login.sso"
# Deprecated since r0.4.0 for m.login.sso, still listed (and /login/cas/redirect served)
# for the clients that look for it.
CAS_LOGIN = "m.login.cas"


@routes.get("/login", auth=False)
async def login_flows(request: web.Request) -> web.Response:
    hs = get_hs(request)
    flows: list[dict] = [{"type": PASSWORD_LOGIN}]
    if hs.accounts.cas.enabled:
        idp = {"id": cas.PROVIDER, "name": hs.config.cas.idp_name}
        flows += [
            {"type": SSO_LOGIN, "identity_providers": [idp]},
            {"type": CAS_LOGIN},
            {"type": TOKEN_LOGIN},
        ]
    if hs.appservices.services:
        flows.append({"type": APPSERVICE_LOGIN})
    return json_response({"flows": flows})


@routes.post("/login", auth=False)
async def login(request: web.Request) -> web.Response:
    hs = get_hs(request)
    body = await json_body(request)
    login_type = field(body, "type", str)
    if login_type == APPSERVICE_LOGIN:
        user_id = await _appservice_login_user(request, body)
    elif login_type == PASSWORD_LOGIN:
        hs.login_limiter.check(request.remote or "")
        password = field(body, "password", str)
        found = await hs.accounts.threepids.login_user(body, hs.server_name)
        if found is None:
            # No account has that e-mail address: the same answer, and time, as a wrong
            # password.
            await verify_password(None, password)
            raise forbidden("Invalid username or password")
        user_id = found
        # Per account as well as per address: guessing one user's password from many IPs.
        hs.login_limiter.check(user_id)
        user = await hs.accounts.users.get_user(user_id)
        if user is not None and user["deactivated"]:
            raise MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated")
        if not await verify_password(user["password_hash"] if user else None, password):
            raise forbidden("Invalid username or password")
        if user is not None and user["locked"]:
            # Locked by an admin (homeserver/admin): Synapse's answer, after the password.
            raise MatrixError(
                401, "M_USER_LOCKED", "This account has been locked", soft_logout=True
            )
    elif login_type == TOKEN_LOGIN and hs.accounts.cas.enabled:
        user_id = await _token_login_user(request, body)
    else:
        raise MatrixError(400, "M_UNKNOWN", f"Unsupported login type {login_type!r}")
    device_id = field(body, "device_id", str, None)
    display_name = field(body, "initial_device_display_name", str, None)
    if device_id is not None and not 0 < len(device_id) <= 255:
        raise invalid_param("'device_id' must be 1-255 characters")

    async with hs.db.acquire() as conn:
        async with conn.transaction():
            token, device_id = await hs.accounts.start_session(
                conn, user_id, device_id, display_name, request.remote
            )
    await hs.accounts.device_changed(user_id)
    return json_response(
        {
            "user_id": user_id,
            "access_token": token,
            "device_id": device_id,
            "home_server": hs.server_name,
            "well_known": {"m.homeserver": {"base_url": hs.config.base_url}},
        }
    )


async def _token_login_user(request: web.Request, body: dict) -> str:
    """`m.login.token`: a login token handed out after single sign-on, spent here (once,
    within its lifetime)."""
    hs = get_hs(request)
    hs.login_limiter.check(request.remote or "")
    token = field(body, "token", str)
    user_id = await hs.accounts.cas.spend_login_token(token)
    if user_id is None:
        raise forbidden("Invalid or expired login token")
    user = await hs.accounts.users.get_user(user_id)
    if user is None or user["deactivated"]:
        raise MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated")
    if user["locked"]:
        raise MatrixError(401, "M_USER_LOCKED", "This account has been locked", soft_logout=True)
    return user_id


async def _appservice_login_user(request: web.Request, body: dict) -> str:
    """`m.login.application_service`: the appservice (by its as_token) logs in as a user
    of its namespace without a password."""
    hs = get_hs(request)
    token = token_from_request(request)
    if token is None:
        raise MatrixError(401, "M_MISSING_TOKEN", "Missing application service token")
    svc = hs.appservices.by_token(token)
    if svc is None:
        raise MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown application service token")
    user_id = user_id_from_login(body, hs.server_name)
    if not svc.is_user(user_id) or user_id.partition(":")[2] != hs.server_name:
        raise MatrixError(
            403, "M_EXCLUSIVE", "This user is outside the application service's namespace"
        )
    user = await hs.accounts.users.get_user(user_id)
    if user is None:
        raise forbidden("Unknown user")
    if user["deactivated"]:
        raise MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated")
    return user_id


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
        {
            "user_id": requester.user_id,
            "device_id": requester.device_id,
            "is_guest": requester.is_guest,
        }
    )
