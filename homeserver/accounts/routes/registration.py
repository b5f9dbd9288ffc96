"""POST /register, GET /register/available and registration token validity."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts import uia
from homeserver.accounts.passwords import check_password_strength, hash_password
from homeserver.accounts.registration import create_account, user_in_use
from homeserver.accounts.usernames import generate_localpart, localpart_of, validate_localpart
from homeserver.appservice.service import exclusive_error
from homeserver.http.auth import requester_for_token, token_from_request
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, forbidden, invalid_param, missing_param
from homeserver.http.request import field, json_body, json_response
from homeserver.http.routes import RouteTable

routes = RouteTable()

APPSERVICE_LOGIN = "m.login.application_service"
# Keys of a registration's UIA session results: its parameters, and the account created.
_PARAMS = "registration"
_REGISTERED = "registered_user_id"


async def registration_flows(hs) -> list[list[str]]:
    """Which flows registration offers.

    Open registration needs nothing (m.login.dummy). Closed registration is open only to
    holders of a registration token, and refused outright (403) while no token is usable.
    With e-mail configured, a flow validating an address (m.login.email.identity) is
    offered too, or is the only one when `email.registration_requires_email`. With the
    captcha configured, flows begin with m.login.recaptcha.
    """
    email = hs.accounts.threepids.enabled
    only_email = email and hs.config.email.registration_requires_email
    if hs.config.registration.open:
        first: list[str] = []
    elif await hs.accounts.registration_tokens.any_usable():
        # The trailing dummy stage matches Synapse: clients (nio's register_with_token)
        # finish with a dummy request that receives the login.
        first = [uia.REGISTRATION_TOKEN]
    else:
        raise forbidden("Registration is disabled on this server")
    flows = [] if only_email else [[*first, uia.DUMMY]]
    if email:
        flows.append([*first, uia.EMAIL_IDENTITY])
    if hs.accounts.recaptcha.enabled:
        # The captcha comes first in every flow; with `recaptcha.required: false` those
        # flows are offered beside the ones without it.
        with_captcha = [[uia.RECAPTCHA, *flow] for flow in flows]
        flows = with_captcha if hs.config.recaptcha.required else flows + with_captcha
    return flows


@routes.post("/register", auth=False)
async def register(request: web.Request) -> web.Response:
    hs = get_hs(request)
    kind = request.query.get("kind", "user")
    if kind not in ("user", "guest"):
        raise invalid_param("'kind' must be 'user' or 'guest'")
    if kind == "guest":
        if not hs.config.registration.guests:
            raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is disabled")
        return await _register_guest(request)
    body = await json_body(request, allow_empty=True)
    auth = body.get("auth")
    if body.get("type") == APPSERVICE_LOGIN or (
        isinstance(auth, dict) and auth.get("type") == APPSERVICE_LOGIN
    ):
        return await _register_appservice_user(request, body)
    hs.register_limiter.check(request.remote or "")
    flows = await registration_flows(hs)

    # A session remembers the parameters of its first requests (later stages may send
    # only `auth`), and the account it created: a repeat of the completed request
    # answers the same account with a new login, as Synapse does.
    session = await uia.session_of(request, None, body)
    remembered = session["results"].get(_PARAMS, {}) if session else {}
    if session is not None and _REGISTERED in session["results"]:
        return await _login_registered(request, session["results"][_REGISTERED], remembered)

    # Everything is validated before any UIA session is created or a stage is counted.
    username = field(body, "username", str, remembered.get("username"))
    password = field(body, "password", str, None)
    device_id = field(body, "device_id", str, remembered.get("device_id"))
    display_name = field(
        body, "initial_device_display_name", str, remembered.get("initial_device_display_name")
    )
    inhibit_login = field(body, "inhibit_login", bool, remembered.get("inhibit_login", False))
    if device_id is not None and not 0 < len(device_id) <= 255:
        raise invalid_param("'device_id' must be 1-255 characters")
    if display_name is not None and len(display_name) > 255:
        raise invalid_param("'initial_device_display_name' is too long")
    user_id = None
    guest_token = field(body, "guest_access_token", str, None)
    upgrading = None
    if guest_token is not None:
        # A guest becoming a full user keeps their user ID (spec: "Guest access").
        upgrading = await _guest_of_token(request, guest_token, username)
    if username is not None and upgrading is None:
        if hs.appservices.exclusive_owner(f"@{username.lower()}:{hs.server_name}"):
            raise exclusive_error()
        user_id = validate_localpart(username.lower(), hs.server_name)
        if await hs.accounts.users.user_exists(user_id):
            raise user_in_use()
    password_hash = remembered.get("password_hash")
    if password is not None:
        check_password_strength(password, hs.config.password_min_length)
        password_hash = await hash_password(password)
    auth = body.get("auth")
    if isinstance(auth, dict) and auth.get("type") and password_hash is None:
        raise missing_param("Missing 'password'")

    params = {
        "username": username,
        "password_hash": password_hash,  # a hash only: sessions are rows of the database
        "device_id": device_id,
        "initial_device_display_name": display_name,
        "inhibit_login": inhibit_login,
    }
    captcha = hs.accounts.recaptcha
    results = await uia.require(
        request,
        None,
        body,
        flows,
        captcha.params() if captcha.enabled else None,
        remember={_PARAMS: params},
        spend=False,
    )

    if password_hash is None:
        raise missing_param("Missing 'password'")
    if upgrading is not None:
        return await _upgrade_guest(request, upgrading, password_hash, params)
    if user_id is None:
        user_id = _generated_user_id(hs)
    response = await create_account(
        hs,
        user_id,
        password_hash,
        login=not inhibit_login,
        device_id=device_id,
        device_display_name=display_name,
        ip=request.remote,
        registration_token=results.get("registration_token"),
        threepid=results.get("threepid"),
    )
    await hs.accounts.uia_sessions.complete_stage(
        results[uia.SESSION_ID], None, {_REGISTERED: user_id}
    )
    return json_response(response)


def _generated_user_id(hs) -> str:
    """A user ID for a registration that names none: outside appservices' exclusive
    namespaces."""
    while True:
        user_id = validate_localpart(generate_localpart(), hs.server_name)
        if hs.appservices.exclusive_owner(user_id) is None:
            return user_id


async def _register_guest(request: web.Request) -> web.Response:
    """kind=guest: a passwordless account with a generated name and a first login."""
    hs = get_hs(request)
    body = await json_body(request, allow_empty=True)
    display_name = field(body, "initial_device_display_name", str, None)
    user_id = _generated_user_id(hs)
    response = await create_account(
        hs,
        user_id,
        None,
        device_display_name=display_name,
        ip=request.remote,
        is_guest=True,
    )
    return json_response(response)


async def _guest_of_token(request: web.Request, token: str, username: str | None) -> str:
    """The guest whose access token `token` is, who must be the user named (a guest may
    upgrade only themself)."""
    hs = get_hs(request)
    try:
        requester = await requester_for_token(hs.db, token)
    except MatrixError:
        raise forbidden("Invalid guest access token") from None
    if not requester.is_guest:
        raise forbidden("Not a guest access token")
    if username is not None and username.lower() != localpart_of(requester.user_id):
        raise forbidden("A guest may only upgrade their own account")
    return requester.user_id


async def _upgrade_guest(
    request: web.Request, user_id: str, password_hash: str, params: dict
) -> web.Response:
    hs = get_hs(request)
    response = {"user_id": user_id, "home_server": hs.server_name}
    async with hs.db.acquire() as conn, conn.transaction():
        if not await hs.accounts.users.upgrade_guest(conn, user_id, password_hash):
            raise forbidden("Not a guest account")
        if not params.get("inhibit_login"):
            token, device_id = await hs.accounts.start_session(
                conn,
                user_id,
                params.get("device_id"),
                params.get("initial_device_display_name"),
                request.remote,
            )
            response.update(access_token=token, device_id=device_id)
    await hs.accounts.device_changed(user_id)
    return json_response(response)


async def _login_registered(request: web.Request, user_id: str, params: dict) -> web.Response:
    """The answer to a registration repeated on its completed session: the same account."""
    hs = get_hs(request)
    response = {"user_id": user_id, "home_server": hs.server_name}
    if not params.get("inhibit_login"):
        async with hs.db.acquire() as conn, conn.transaction():
            token, device_id = await hs.accounts.start_session(
                conn,
                user_id,
                params.get("device_id"),
                params.get("initial_device_display_name"),
                request.remote,
            )
        await hs.accounts.device_changed(user_id)
        response.update(access_token=token, device_id=device_id)
    return json_response(response)


async def _register_appservice_user(request: web.Request, body: dict) -> web.Response:
    """`m.login.application_service`: an appservice creates a user of its namespace,
    with no password and no registration flow (spec: "Server admin style permissions")."""
    hs = get_hs(request)
    token = token_from_request(request)
    if token is None:
        raise MatrixError(401, "M_MISSING_TOKEN", "Missing application service token")
    svc = hs.appservices.by_token(token)
    if svc is None:
        raise MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown application service token")
    username = field(body, "username", str, None)
    if username is None:
        raise missing_param("Missing 'username'")
    device_id = field(body, "device_id", str, None)
    display_name = field(body, "initial_device_display_name", str, None)
    inhibit_login = field(body, "inhibit_login", bool, False)
    if device_id is not None and not 0 < len(device_id) <= 255:
        raise invalid_param("'device_id' must be 1-255 characters")
    user_id = validate_localpart(username.lower(), hs.server_name, reserved_ok=True)
    if not svc.is_user(user_id):
        raise exclusive_error("This user ID is outside the application service's namespace")
    response = await create_account(
        hs,
        user_id,
        None,
        login=not inhibit_login,
        device_id=device_id,
        device_display_name=display_name,
        ip=request.remote,
    )
    return json_response(response)


@routes.get("/register/available", auth=False)
async def username_available(request: web.Request) -> web.Response:
    hs = get_hs(request)
    username = request.query.get("username")
    if not username:
        raise missing_param("Missing 'username'")
    if hs.appservices.exclusive_owner(f"@{username.lower()}:{hs.server_name}"):
        raise exclusive_error()
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
