"""Access tokens: random, stored as SHA-256, accepted as a Bearer header or query parameter."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from aiohttp import web

from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, forbidden
from storage.devices import DeviceStore


@dataclass(frozen=True)
class Requester:
    user_id: str
    device_id: str
    is_admin: bool
    token_hash: bytes


def new_access_token() -> str:
    return "hs_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def token_from_request(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise MatrixError(401, "M_MISSING_TOKEN", "Malformed Authorization header")
        return value.strip()
    # Dropped from the spec, but matrix-nio and older clients still send it.
    return request.query.get("access_token") or None


async def requester_for_token(db, token: str) -> Requester:
    row = await DeviceStore(db).session_of_token(hash_token(token))
    if row is None:
        raise MatrixError(
            401, "M_UNKNOWN_TOKEN", "Unknown or expired access token", soft_logout=False
        )
    return Requester(row["user_id"], row["device_id"], row["is_admin"], hash_token(token))


async def authenticate(request: web.Request, db) -> Requester:
    token = token_from_request(request)
    if token is None:
        raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token")
    return await requester_for_token(db, token)


def require_admin(request: web.Request, requester: Requester) -> None:
    """Refuses (403 M_FORBIDDEN) a requester who is not a server admin."""
    if not get_hs(request).accounts.is_server_admin(requester.user_id, requester.is_admin):
        raise forbidden("You are not a server admin")
