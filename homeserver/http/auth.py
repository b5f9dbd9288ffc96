"""Access tokens: random, stored as SHA-256, accepted as a Bearer header or query parameter."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, forbidden
from storage.devices import DeviceStore

if TYPE_CHECKING:
    from homeserver.appservice.registration import AppService
    from homeserver.user_cache import UserCaches


@dataclass(frozen=True)
class Requester:
    user_id: str
    device_id: str
    is_admin: bool
    token_hash: bytes
    # Set by the admin API (homeserver/admin): a suspended user may read but not act; a
    # shadow-banned one is told their messages and invites went out when they did not;
    # `ratelimit` is (per second, burst) overriding the server's per-user limit.
    suspended: bool = False
    shadow_banned: bool = False
    ratelimit: tuple[int, int] | None = None
    # Set when an application service makes the request (with its as_token), acting as
    # `user_id`; `device_id` is then "" unless it named one (?device_id=).
    appservice: AppService | None = None
    # Account validity (homeserver/accounts/validity.py): when the account expires.
    expires_ts: int | None = None
    # When an account the admin API marks external (homeserver/policy) expires.
    external_expires_ts: int | None = None
    # A guest account (spec: "Guest access"): only _GUEST_ALLOWS.
    is_guest: bool = False


def new_access_token() -> str:
    return "hs_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    # aiohttp decodes header bytes that are not UTF-8 as lone surrogates; such a token is
    # one we never issued, and hashing it must not fail (it then matches nothing).
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def token_from_request(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise MatrixError(401, "M_MISSING_TOKEN", "Malformed Authorization header")
        return value.strip()
    # Dropped from the spec, but matrix-nio and older clients still send it.
    return request.query.get("access_token") or None


async def requester_for_token(db, token: str, cache: UserCaches | None = None) -> Requester:
    """The requester of an access token; through the process cache when given (every
    request's path), else straight from the database."""
    token_hash = hash_token(token)
    if cache is not None:
        row = await cache.session(token_hash)
    else:
        row = await DeviceStore(db).session_of_token(token_hash)
    if row is None:
        raise MatrixError(
            401, "M_UNKNOWN_TOKEN", "Unknown or expired access token", soft_logout=False
        )
    if row["locked"]:
        # Synapse's answer for a locked account: the client keeps its session for later.
        raise MatrixError(401, "M_USER_LOCKED", "This account has been locked", soft_logout=True)
    external_expires_at = row["external_expires_at_ms"]
    override = row["messages_per_second"]
    return Requester(
        row["user_id"],
        row["device_id"],
        row["is_admin"],
        token_hash,
        row["suspended"],
        row["shadow_banned"],
        (override, row["burst_count"]) if override is not None else None,
        expires_ts=row["expiration_ts"],
        is_guest=row["is_guest"],
        external_expires_ts=external_expires_at,
    )


async def authenticate(request: web.Request, db) -> Requester:
    token = token_from_request(request)
    if token is None:
        raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token")
    hs = get_hs(request)
    svc = hs.appservices.by_token(token)
    if svc is not None:
        return await hs.appservices.requester(request, svc)
    return await requester_for_token(db, token, hs.user_cache)


# What a suspended account may not do (Synapse's suspension, MSC3823): send events, join,
# knock, invite, create rooms, change its profile. Reading, leaving and logging out stay.
_SUSPENDED_FORBIDS = re.compile(
    r"/_matrix/client/[^/]+/(?:rooms/[^/]+/(?:send|state|invite|join|knock)/?"
    r"|join/|knock/|createRoom$|profile/)"
)


def refuse_if_suspended(request: web.Request, requester: Requester) -> None:
    if (
        requester.suspended
        and request.method in ("POST", "PUT")
        and _SUSPENDED_FORBIDS.match(request.path)
    ):
        raise MatrixError(403, "M_USER_SUSPENDED", "This account has been suspended")


# What an expired account may still do (as in Synapse): log out, and ask for a renewal
# mail. The renewal link itself needs no access token.
_EXPIRED_ALLOWS = re.compile(
    r"/_matrix/client/(?:[^/]+/logout(?:/all)?|unstable/account_validity/send_mail)$"
)


_LOGOUT = re.compile(r"/_matrix/client/[^/]+/logout(?:/all)?$")


def refuse_if_expired(request: web.Request, requester: Requester) -> None:
    """An expired account (account validity, or an external account past the expiry the
    admin gave it) answers ORG_MATRIX_EXPIRED_ACCOUNT, which clients show as such; it may
    still log out (and, under account validity, ask for a renewal mail)."""
    now = time.time() * 1000
    if (
        requester.expires_ts is not None
        and requester.expires_ts <= now
        and get_hs(request).config.account_validity.enabled
        and not _EXPIRED_ALLOWS.match(request.path)
    ):
        raise MatrixError(403, "ORG_MATRIX_EXPIRED_ACCOUNT", "User account has expired")
    external = requester.external_expires_ts
    if external is not None and external <= now and not _LOGOUT.match(request.path):
        raise MatrixError(403, "ORG_MATRIX_EXPIRED_ACCOUNT", "This external account has expired")


# What a guest may do (spec: "Guest access", its list of endpoints, and Synapse's
# additions that clients use: filters, push rules read, capabilities, account data).
_GUEST_ALLOWS = re.compile(
    r"/_matrix/client/[^/]+/(?:"
    r"rooms/[^/]+/(?:state(?:/.*)?|context/[^/]+|event/[^/]+|messages|members|joined_members"
    r"|initialSync|send/.+|join|leave|typing/[^/]+|receipt/.+|read_markers)"
    r"|join/[^/]+|sync|events(?:/[^/]+)?|initialSync|profile/.+|account/whoami|logout"
    r"|sendToDevice/.+|devices(?:/[^/]+)?|keys/(?:upload|query|claim|changes)"
    r"|voip/turnServer|publicRooms|capabilities|user/[^/]+/(?:filter(?:/[^/]+)?"
    r"|account_data/.+|rooms/[^/]+/(?:account_data|tags)(?:/.*)?)"
    r"|pushrules/.*|presence/.+|directory/room/[^/]+)$"
)


_ROOM_STATE = re.compile(r"/_matrix/client/[^/]+/rooms/[^/]+/state(?:/|$)")


def refuse_if_guest(request: web.Request, requester: Requester) -> None:
    if not requester.is_guest:
        return
    # State may be read, not set, by a guest.
    setting_state = request.method != "GET" and _ROOM_STATE.match(request.path)
    if _GUEST_ALLOWS.match(request.path) and not setting_state:
        return
    raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is not allowed here")


# What a shadow-banned account is told succeeded without anything happening (as in
# Synapse): messages and other room events, invites, typing notifications.
_SHADOW_BANNED_FAKES = re.compile(
    r"/_matrix/client/[^/]+/rooms/[^/]+/(?:(send)/|(invite)$|(typing)/)"
)


def shadow_ban_response(request: web.Request, requester: Requester) -> web.Response | None:
    """The fake success a shadow-banned requester gets instead of the real request."""
    if not requester.shadow_banned or request.method not in ("POST", "PUT"):
        return None
    match = _SHADOW_BANNED_FAKES.match(request.path)
    if match is None:
        return None
    body = {"event_id": "$" + secrets.token_urlsafe(32)} if match.group(1) else {}
    return web.json_response(body)


def require_admin(request: web.Request, requester: Requester) -> None:
    """Refuses (403 M_FORBIDDEN) a requester who is not a server admin."""
    if not get_hs(request).accounts.is_server_admin(requester.user_id, requester.is_admin):
        raise forbidden("You are not a server admin")
