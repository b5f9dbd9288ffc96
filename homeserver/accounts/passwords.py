"""Password hashing with argon2id, always in a worker thread: a hash takes tens of
milliseconds of CPU and would stall every other request if run on the event loop."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from homeserver.http.errors import MatrixError

_hasher = PasswordHasher()
# Verified against when the user does not exist, so that a login for an unknown user
# costs the same time as a wrong password and does not reveal which users exist.
_DUMMY_HASH = _hasher.hash("not a real password")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        await asyncio.to_thread(_verify, _DUMMY_HASH, password)
        return False
    return await asyncio.to_thread(_verify, password_hash, password)


def check_password_strength(password: str, min_length: int) -> None:
    if len(password) < min_length:
        raise MatrixError(
            400, "M_WEAK_PASSWORD", f"Password must be at least {min_length} characters"
        )
    if len(password) > 512:
        raise MatrixError(400, "M_WEAK_PASSWORD", "Password is too long")
