"""EDUs both ways: typing, receipts, presence, device lists, signing keys, to-device.

`Edus` registers a handler per EDU type in `hs.federation.edu_handlers` (other parts
may add their own) and, per type, which users an EDU speaks for: an EDU that speaks for
a user of another server than its origin is dropped before its handler runs. Outbound,
it hooks the local services (typing, receipts, presence, device lists, to-device,
remote key queries) to the sender.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

import asyncpg

from federation.edus.device_lists import DeviceListEdus
from federation.edus.ephemeral import EphemeralEdus
from federation.edus.to_device import ToDeviceEdus
from federation.rooms import server_of

if TYPE_CHECKING:
    from federation.service import Federation
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

EduHandler = Callable[[str, dict], Awaitable[None]]
UsersOf = Callable[[dict], Iterable[str]]

# Failures that say nothing about the EDU (the database is unreachable or busy): the
# transaction fails (500) and the origin retries it; every handler is idempotent.
# Anything else is taken to be the EDU's fault and it is dropped: an EDU that always
# fails must not make its origin retry the transaction for ever.
_TRANSIENT = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.TooManyConnectionsError,
    OSError,
    TimeoutError,
)


class Edus:
    def __init__(self, hs: Homeserver, federation: Federation):
        self.hs = hs
        self.handlers: dict[str, EduHandler] = federation.edu_handlers
        self.users_of: dict[str, UsersOf] = {}
        self.ephemeral = EphemeralEdus(hs, federation)
        self.device_lists = DeviceListEdus(hs, federation)
        self.to_device = ToDeviceEdus(hs, federation)
        for part in (self.ephemeral, self.device_lists, self.to_device):
            for edu_type, (handler, users_of) in part.handlers().items():
                self.register(edu_type, handler, users_of)

    def register(self, edu_type: str, handler: EduHandler, users_of: UsersOf | None) -> None:
        self.handlers[edu_type] = handler
        if users_of is not None:
            self.users_of[edu_type] = users_of

    async def dispatch(self, origin: str, edus: list[dict]) -> None:
        for edu in edus:
            edu_type, content = edu["edu_type"], edu["content"]
            handler = self.handlers.get(edu_type)
            if handler is None:
                continue  # unknown types are ignored, as the spec asks
            if not speaks_only_for(origin, self.users_of.get(edu_type), content):
                logger.info(
                    "dropping a %s EDU from %s about another server's user", edu_type, origin
                )
                continue
            try:
                await handler(origin, content)
            except _TRANSIENT:
                raise
            except Exception:
                logger.exception(
                    "dropping a %s EDU from %s that could not be handled", edu_type, origin
                )


def speaks_only_for(origin: str, users_of: UsersOf | None, content: dict) -> bool:
    """Whether every user an EDU speaks for is a user of its origin server."""
    if users_of is None:
        return True
    try:
        users = list(users_of(content))
    except (TypeError, AttributeError, KeyError, ValueError):
        return False  # too malformed to tell whose it is
    return all(isinstance(u, str) and server_of(u) == origin for u in users)
