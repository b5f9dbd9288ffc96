"""Shared-secret registration, as Synapse's register_new_matrix_user speaks it.

GET /_synapse/admin/v1/register gives a one-time nonce; the POST carries
mac = HMAC-SHA1(shared_secret, nonce \\0 username \\0 password \\0 admin|notadmin [\\0 user_type]).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from aiohttp import web

from homeserver.accounts.passwords import check_password_strength, hash_password
from homeserver.accounts.registration import create_account, user_in_use
from homeserver.accounts.usernames import validate_localpart
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, bad_json, forbidden
from homeserver.http.request import field, json_body, json_response
from homeserver.http.routes import RouteTable

routes = RouteTable()

PATH = "/_synapse/admin/v1/register"
NONCE_MAX_AGE_MS = 60 * 1000


def _shared_secret(hs) -> bytes:
    secret = hs.config.registration.shared_secret
    if not secret:
        raise MatrixError(400, "M_UNKNOWN", "Shared secret registration is not enabled")
    return secret.encode()


def expected_mac(secret: bytes, nonce, username, password, admin: bool, user_type) -> str:
    mac = hmac.new(secret, digestmod=hashlib.sha1)
    for part in (nonce, username, password):
        mac.update(part.encode())
        mac.update(b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    if user_type:
        mac.update(b"\x00" + user_type.encode())
    return mac.hexdigest()


@routes.get(PATH, auth=False, raw_path=True)
async def get_nonce(request: web.Request) -> web.Response:
    hs = get_hs(request)
    _shared_secret(hs)
    nonce = secrets.token_hex(32)
    await hs.accounts.nonces.create(nonce)
    return json_response({"nonce": nonce})


@routes.post(PATH, auth=False, raw_path=True)
async def register_with_shared_secret(request: web.Request) -> web.Response:
    hs = get_hs(request)
    secret = _shared_secret(hs)
    hs.register_limiter.check(request.remote or "")
    body = await json_body(request)
    nonce = field(body, "nonce", str)
    username = field(body, "username", str)
    password = field(body, "password", str)
    mac = field(body, "mac", str)
    admin = field(body, "admin", bool, False)
    user_type = field(body, "user_type", str, None)
    displayname = field(body, "displayname", str, None)
    if "\x00" in username or "\x00" in password:
        raise bad_json("Invalid username or password")

    want = expected_mac(secret, nonce, username, password, admin, user_type)
    if not hmac.compare_digest(want, mac.lower()):
        raise forbidden("HMAC incorrect")
    user_id = validate_localpart(username.lower(), hs.server_name)
    check_password_strength(password, hs.config.password_min_length)
    if await hs.accounts.users.user_exists(user_id):
        raise user_in_use()
    # Spent only after everything else checked out, so a typo does not burn the nonce.
    if not await hs.accounts.nonces.take(nonce, NONCE_MAX_AGE_MS):
        raise MatrixError(400, "M_UNKNOWN", "Unrecognised nonce")
    response = await create_account(
        hs,
        user_id,
        await hash_password(password),
        is_admin=admin,
        displayname=displayname,
        ip=request.remote,
    )
    # The shared secret stands for an admin here: the audit row names it as the actor.
    await hs.admin.store.audit("(shared secret)", "register", user_id, {"admin": admin})
    return json_response(response)
