"""Password hashing with argon2id, always in a worker thread: a hash takes tens of
milliseconds of CPU and would stall every other request if run on the event loop.

Parameters: OWASP's argon2id recommendation (19 MiB, 2 passes, 1 lane). argon2-cffi's
default (64 MiB, 3 passes, 4 lanes) costs 64 MiB per hash in flight: with a thread per
concurrent registration that made registering 3.6x Synapse's peak memory. Hashes made
with other parameters still verify (they carry their parameters). At most one hash runs
per core: more threads than cores only add memory, not throughput."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from homeserver.http.errors import MatrixError

_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="argon2")
# Verified against when the user does not exist, so that a login for an unknown user
# costs the same time as a wrong password and does not reveal which users exist.
_DUMMY_HASH = _hasher.hash("not a real password")


async def _in_thread(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(_pool, fn, *args)


async def hash_password(password: str) -> str:
    return await _in_thread(_hasher.hash, password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        await _in_thread(_verify, _DUMMY_HASH, password)
        return False
    return await _in_thread(_verify, password_hash, password)


def check_password_strength(password: str, min_length: int) -> None:
    if len(password) < min_length:
        raise MatrixError(
            400, "M_WEAK_PASSWORD", f"Password must be at least {min_length} characters"
        )
    if len(password) > 512:
        raise MatrixError(400, "M_WEAK_PASSWORD", "Password is too long")
