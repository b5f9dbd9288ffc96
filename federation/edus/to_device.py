"""m.direct_to_device: to-device messages for remote devices, and from remote senders.

Outbound, a /sendToDevice whose recipients include remote users becomes one EDU per
server (stored in the queue: to-device messages carry Olm sessions and room keys, and
must not be lost). Inbound, delivery is idempotent per (origin, message_id): the ID is
recorded in the same transaction that stores the messages.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Collection
from typing import TYPE_CHECKING

from federation.rooms import server_of

if TYPE_CHECKING:
    from federation.service import Federation
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

MAX_MESSAGE_ID_LENGTH = 255
MAX_EVENT_TYPE_LENGTH = 255


def _sender_of(content: dict):
    return [content["sender"]]


class ToDeviceEdus:
    def __init__(self, hs: Homeserver, federation: Federation):
        self.hs = hs
        self.sender = federation.sender

    def handlers(self) -> dict:
        return {"m.direct_to_device": (self.on_direct_to_device, _sender_of)}

    async def queue(self, conn, sender: str, event_type: str, messages: dict) -> list[str]:
        """Stores one EDU per admitted server in the caller's transaction (the one that
        accepts the client's request); returns the servers to `wake` after its commit."""
        by_server: dict[str, dict] = {}
        for user_id, devices in messages.items():
            by_server.setdefault(server_of(user_id), {})[user_id] = devices
        admitted = set(self.sender.admitted(by_server))
        refused = len(by_server) - len(admitted)
        if refused:
            logger.info("not sending to-device messages to %d non-admitted servers", refused)
        queued: list[str] = []
        for server in sorted(admitted):
            content = {
                "sender": sender,
                "type": event_type,
                # Within the spec's 32 characters; unique per message.
                "message_id": secrets.token_urlsafe(18),
                "messages": by_server[server],
            }
            queued += await self.sender.queue_edus(
                conn, [server], [("m.direct_to_device", content)]
            )
        return queued

    def wake(self, servers: Collection[str]) -> None:
        self.sender.wake(servers)

    async def on_direct_to_device(self, origin: str, content: dict) -> None:
        sender = content["sender"]
        event_type = content.get("type")
        message_id = content.get("message_id")
        messages = content.get("messages")
        if (
            not isinstance(event_type, str)
            or not 0 < len(event_type) <= MAX_EVENT_TYPE_LENGTH
            or not isinstance(message_id, str)
            or not 0 < len(message_id) <= MAX_MESSAGE_ID_LENGTH
            or not isinstance(messages, dict)
        ):
            return
        local = {
            user_id: {d: c for d, c in devices.items() if isinstance(c, dict)}
            for user_id, devices in messages.items()
            if server_of(user_id) == self.hs.server_name and isinstance(devices, dict)
        }
        if not local:
            return
        store = self.sender.store

        async def first_time(conn) -> bool:
            now = int(time.time() * 1000)
            return await store.claim_to_device_message(conn, origin, message_id, now)

        await self.hs.e2ee.to_device.deliver_local(sender, event_type, local, claim=first_time)
