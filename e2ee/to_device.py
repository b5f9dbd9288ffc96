"""Send-to-device messaging: stored per recipient device, relayed as given, deleted
once the recipient's next /sync acknowledges it (its `since` covers the position;
homeserver/sync/streams/to_device.py)."""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, Protocol

from e2ee.keys import server_of
from e2ee.signatures import require_dict
from homeserver.http.errors import bad_json, invalid_param
from storage.e2ee_to_device import ToDeviceStore

if TYPE_CHECKING:
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

MAX_TXN_ID_LENGTH = 255
MAX_EVENT_TYPE_LENGTH = 255


class RemoteToDevice(Protocol):
    """Messages for users of other servers (the federation package): `queue` stores
    them in the caller's transaction and returns the servers to `wake` after commit."""

    async def queue(
        self, conn: Any, sender: str, event_type: str, messages: dict
    ) -> Collection[str]: ...

    def wake(self, servers: Collection[str]) -> None: ...


class ToDevice:
    def __init__(self, hs: Homeserver, store: ToDeviceStore, remote: RemoteToDevice | None = None):
        self.hs = hs
        self.store = store
        # Federation's, when this server federates.
        self.remote = remote

    @staticmethod
    def check(event_type: str, txn_id: str, body: dict) -> dict[str, dict[str, dict]]:
        if not event_type or len(event_type) > MAX_EVENT_TYPE_LENGTH:
            raise invalid_param("Invalid event type")
        if not txn_id or len(txn_id) > MAX_TXN_ID_LENGTH:
            raise invalid_param("Invalid transaction ID")
        messages = require_dict(body.get("messages"), "messages")
        for user_id, devices in messages.items():
            if not user_id.startswith("@") or ":" not in user_id:
                raise invalid_param(f"Invalid user ID {user_id!r}")
            for content in require_dict(devices, "messages").values():
                if not isinstance(content, dict):
                    raise bad_json("Each to-device message must be a JSON object")
        return messages

    async def send(
        self, sender: str, sender_device: str, event_type: str, txn_id: str, messages: dict
    ) -> None:
        local = {u: d for u, d in messages.items() if server_of(u) == self.hs.server_name}
        remote = {u: d for u, d in messages.items() if u not in local}
        rows = await self._expand_local(local)
        if remote and self.remote is None:
            logger.info("dropping to-device messages for %d remote users", len(remote))
            remote = {}
        servers: Collection[str] = ()
        appservices: Collection[str] = ()
        try:
            # Messages for other servers are queued in the transaction that accepts the
            # request (an outbox): a crash after the commit cannot lose them.
            if rows:
                # The stream write's transaction is the outermost one: the notifier hears
                # of the position when it ends, which must be at commit.
                async with self.hs.streams.write("to_device", len(rows)) as w:
                    if not await self.store.claim_txn(w.conn, sender, sender_device, txn_id):
                        raise _AlreadySent
                    await self.store.add_messages(w.conn, w.positions, sender, event_type, rows)
                    appservices = await self.hs.appservices.queue_to_device(
                        w.conn, sender, event_type, rows
                    )
                    if remote and self.remote is not None:
                        servers = await self.remote.queue(w.conn, sender, event_type, remote)
                    w.wake(users={user_id for user_id, _, _ in rows})
            else:
                async with self.hs.db.acquire() as conn, conn.transaction():
                    if not await self.store.claim_txn(conn, sender, sender_device, txn_id):
                        raise _AlreadySent
                    if remote and self.remote is not None:
                        servers = await self.remote.queue(conn, sender, event_type, remote)
        except _AlreadySent:
            return  # a retry of a transaction already handled: rolled back, nothing sent
        self.hs.appservices.events_committed(appservices)
        if servers and self.remote is not None:
            self.remote.wake(servers)

    async def deliver_local(self, sender: str, event_type: str, messages: dict, claim=None) -> None:
        """For the federation package: messages from a remote sender to local devices.

        `claim(conn)`, when given, runs first in the same transaction; if it returns False
        (these messages were delivered before) nothing is stored.
        """
        rows = await self._expand_local(messages)
        if not rows:
            return
        try:
            async with self.hs.streams.write("to_device", len(rows)) as w:
                if claim is not None and not await claim(w.conn):
                    raise _AlreadySent
                await self.store.add_messages(w.conn, w.positions, sender, event_type, rows)
                appservices = await self.hs.appservices.queue_to_device(
                    w.conn, sender, event_type, rows
                )
                w.wake(users={user_id for user_id, _, _ in rows})
        except _AlreadySent:
            return
        self.hs.appservices.events_committed(appservices)

    async def _expand_local(self, messages: dict) -> list[tuple[str, str, dict]]:
        """(user, device, content) per existing recipient device; `*` means all of them."""
        if not messages:
            return []
        devices = await self.hs.accounts.devices.devices_of(list(messages))
        rows: list[tuple] = []
        for user_id, by_device in messages.items():
            known = devices.get(user_id, set())
            if "*" in by_device:
                rows.extend((user_id, d, by_device["*"]) for d in sorted(known))
                continue
            rows.extend((user_id, d, c) for d, c in by_device.items() if d in known)
        return rows


class _AlreadySent(Exception):
    """Rolls back a send whose transaction ID this device has used before."""
