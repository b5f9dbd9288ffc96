"""POST /register, GET /register/available and registration token validity."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts import uia
from homeserver.accounts.passwords import check_password_strength, hash_password
from homeserver.accounts.registration import create_account, user_in_use
from homeserver.accounts.usernames import generate_localpart, validate_localpart
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, forbidden, invalid_param, missing_param
from homeserver.http.request import field, json_body, json_response
from homeserver.http.routes import RouteTable

routes = RouteTable()


async def registration_flows(hs) -> list[list[str]]:
    """Which flows registration offers.

    Open registration needs nothing (m.login.dummy). Closed registration is open only to
    holders of a registration token, and refused outright (403) while no token is usable.
    """
    if hs.config.registration.open:
        return [[uia.DUMMY]]
    if await hs.accounts.registration_tokens.any_usable():
        # The trailing dummy stage matches Synapse: clients (nio's register_with_token)
        # finish with a dummy request that receives the login.
        return [[uia.REGISTRATION_TOKEN, uia.DUMMY]]
    raise forbidden("Registration is disabled on this server")


@routes.post("/register", auth=False)
async def register(request: web.Request) -> web.Response:
    hs = get_hs(request)
    kind = request.query.get("kind", "user")
    if kind == "guest":
        raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is disabled")
    if kind != "user":
        raise invalid_param("'kind' must be 'user' or 'guest'")
    hs.register_limiter.check(request.remote or "")
    body = await json_body(request, allow_empty=True)
    flows = await registration_flows(hs)

    # Everything is validated before any UIA session is created or a stage is counted.
    username = field(body, "username", str, None)
    password = field(body, "password", str, None)
    device_id = field(body, "device_id", str, None)
    display_name = field(body, "initial_device_display_name", str, None)
    inhibit_login = field(body, "inhibit_login", bool, False)
    if device_id is not None and not 0 < len(device_id) <= 255:
        raise invalid_param("'device_id' must be 1-255 characters")
    if display_name is not None and len(display_name) > 255:
        raise invalid_param("'initial_device_display_name' is too long")
    user_id = None
    if username is not None:
        user_id = validate_localpart(username.lower(), hs.server_name)
        if await hs.accounts.users.user_exists(user_id):
            raise user_in_use()
    if password is not None:
        check_password_strength(password, hs.config.password_min_length)
    auth = body.get("auth")
    if isinstance(auth, dict) and auth.get("type") and password is None:
        raise missing_param("Missing 'password'")

    results = await uia.require(request, None, body, flows)

    if password is None:
        raise missing_param("Missing 'password'")
    if user_id is None:
        user_id = validate_localpart(generate_localpart(), hs.server_name)
    response = await create_account(
        hs,
        user_id,
        await hash_password(password),
        login=not inhibit_login,
        device_id=device_id,
        device_display_name=display_name,
        ip=request.remote,
        registration_token=results.get("registration_token"),
    )
    return json_response(response)


@routes.get("/register/available", auth=False)
async def username_available(request: web.Request) -> web.Response:
    hs = get_hs(request)
    username = request.query.get("username")
    if not username:
        raise missing_param("Missing 'username'")
    user_id = validate_localpart(username.lower(), hs.server_name)
    if await hs.accounts.users.user_exists(user_id):
        raise user_in_use()
    return json_response({"available": True})


@routes.get("/register/m.login.registration_token/validity", auth=False, versions=("v1", "v3"))
async def registration_token_validity(request: web.Request) -> web.Response:
    hs = get_hs(request)
    hs.register_limiter.check(request.remote or "")
    token = request.query.get("token")
    if not token:
        raise missing_param("Missing 'token'")
    return json_response({"valid": await hs.accounts.registration_tokens.is_usable(token)})
