"""AppServices: the registered application services, who they are when they call us, and
what of ours they are interested in.

Built once by homeserver.app as `hs.appservices`. Calls from an appservice carry its
`as_token`; `requester` turns one into the user (and device) it acts as. What must reach
an appservice goes through the outbox (storage/appservice.py): room events are queued by
`queue_events` inside EventService's persisting transaction, to-device messages inside
the to-device transaction; typing, receipts, presence and the MSC3202 "keys changed"
markers in a transaction of their own right after their change (they are ephemeral).
`AppServiceSender` (sender.py) delivers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from homeserver.appservice.client import AppServiceClient
from homeserver.appservice.registration import AppService
from homeserver.appservice.sender import AppServiceSender
from homeserver.appservice.thirdparty import ThirdPartyNetworks
from homeserver.http.errors import MatrixError, forbidden
from storage.appservice import AppServiceStore

if TYPE_CHECKING:
    from homeserver.app import Homeserver
    from homeserver.http.auth import Requester
    from storage.events import PersistItem

logger = logging.getLogger(__name__)

# Query parameters naming the device an appservice acts with: the spec's (v1.17) and
# MSC3202's unstable one, which mautrix sends.
_DEVICE_PARAMS = ("device_id", "org.matrix.msc3202.device_id")


def _now_ms() -> int:
    return int(time.time() * 1000)


def exclusive_error(message: str = "This ID is reserved by an application service") -> MatrixError:
    return MatrixError(400, "M_EXCLUSIVE", message)


class AppServices:
    def __init__(self, hs: Homeserver):
        self.hs = hs
        self.services: tuple[AppService, ...] = hs.config.app_services
        self._by_token = {svc.as_token: svc for svc in self.services}
        self.by_id = {svc.id: svc for svc in self.services}
        self.store = AppServiceStore(hs.db)
        self.client = AppServiceClient(hs.config.app_services_ca_bundle)
        self.sender = AppServiceSender(hs, self.store, self.services, self.client)
        self.thirdparty = ThirdPartyNetworks(self.services, self.client)
        self._suffix = ":" + hs.server_name

    # --- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if not self.services:
            return
        # Each appservice's own user (sender_localpart) exists from the start: it is who
        # an appservice acts as when it names no user.
        for svc in self.services:
            if not await self.hs.accounts.users.user_exists(svc.sender):
                async with self.hs.db.acquire() as conn, conn.transaction():
                    await self.hs.accounts.users.create_user(
                        conn, svc.sender, None, False, svc.sender[1:].split(":", 1)[0]
                    )
        self.hs.presence.on_local_change.append(self.on_presence)
        await self.sender.start()

    async def stop(self) -> None:
        await self.sender.stop()
        await self.client.close()

    # --- who is calling ---------------------------------------------------------------

    def by_token(self, token: str) -> AppService | None:
        return self._by_token.get(token)

    def _local(self, user_id: str) -> bool:
        return user_id.endswith(self._suffix)

    def exclusive_owner(self, user_id: str) -> AppService | None:
        """The appservice whose exclusive namespace holds this local user, if any."""
        if not self._local(user_id):
            return None
        for svc in self.services:
            if svc.is_user(user_id, exclusive_only=True):
                return svc
        return None

    def alias_owner(self, alias: str) -> AppService | None:
        for svc in self.services:
            if svc.is_alias(alias, exclusive_only=True):
                return svc
        return None

    def check_alias_claim(self, alias: str, user_id: str) -> None:
        """400 M_EXCLUSIVE when an appservice reserved this alias and `user_id` is not one
        of its users (its sender or a user in its namespaces)."""
        owner = self.alias_owner(alias)
        if owner is not None and not owner.is_user(user_id):
            raise exclusive_error("This alias is reserved by an application service")

    async def requester(self, request: web.Request, svc: AppService) -> Requester:
        """The user (and device) an appservice acts as: `?user_id=` inside its namespace
        (403 M_EXCLUSIVE outside it), else its own sender; `?device_id=` one of that
        user's devices (400 M_UNKNOWN_DEVICE otherwise)."""
        from homeserver.http.auth import Requester

        user_id = request.query.get("user_id") or svc.sender
        if user_id != svc.sender and not (self._local(user_id) and svc.is_user(user_id)):
            raise MatrixError(
                403, "M_EXCLUSIVE", "Application service cannot masquerade as this user"
            )
        user = await self.hs.accounts.users.get_user(user_id)
        if user is None:
            raise forbidden("Application service has not registered this user")
        if user["deactivated"]:
            raise MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated")
        device_id = ""
        for name in _DEVICE_PARAMS:
            asked = request.query.get(name)
            if asked:
                if await self.hs.accounts.devices.get_device(user_id, asked) is None:
                    raise MatrixError(400, "M_UNKNOWN_DEVICE", "Unknown device for this user")
                device_id = asked
                break
        from homeserver.http.auth import hash_token

        return Requester(user_id, device_id, False, hash_token(svc.as_token), appservice=svc)

    def rate_limited(self, requester: Requester) -> bool:
        """Whether the requester's requests count against rate limits: not those of an
        appservice registered with rate_limited: false, nor its own sender's."""
        svc = requester.appservice
        if svc is None:
            return True
        return svc.rate_limited and requester.user_id != svc.sender

    # --- interest ---------------------------------------------------------------------

    def _user_interest(self, svc: AppService, user_id: Any) -> bool:
        return isinstance(user_id, str) and self._local(user_id) and svc.is_user(user_id)

    async def _rooms_interest(self, room_ids: Collection[str], conn=None) -> dict[str, set[str]]:
        """room -> IDs of the appservices interested in everything in it: by room ID, by
        one of its aliases, or by a joined member in a users namespace."""
        if not self.services or not room_ids:
            return {}
        members = await self.hs.membership_store.joined_members_by_room(room_ids, conn)
        aliases: dict[str, list[str]] = {}
        if any(svc.aliases for svc in self.services):
            for room_id in room_ids:
                aliases[room_id] = await self.hs.directory.room_aliases(room_id)
        result: dict[str, set[str]] = {}
        for room_id in room_ids:
            interested = result.setdefault(room_id, set())
            for svc in self.services:
                if (
                    svc.is_room(room_id)
                    or any(svc.is_alias(a) for a in aliases.get(room_id, ()))
                    or any(self._user_interest(svc, m) for m in members.get(room_id, ()))
                ):
                    interested.add(svc.id)
        return result

    # --- the outbox -------------------------------------------------------------------

    async def queue_events(self, conn, items: Sequence[PersistItem]) -> list[str]:
        """Called by EventService in the transaction that persists `items` (before they
        are written): queues each event for the appservices interested in it; returns
        their IDs, for `events_committed` after the commit."""
        if not self.services:
            return []
        rooms = await self._rooms_interest({it.room_id for it in items}, conn)
        rows: list[tuple[str, str, str | None, str | None]] = []
        for it in items:
            event = it.event
            interested = rooms.setdefault(it.room_id, set())
            target = event.get("state_key") if event.get("type") == "m.room.member" else None
            for svc in self.services:
                if svc.id in interested:
                    pass
                elif self._user_interest(svc, event.get("sender")) or self._user_interest(
                    svc, target
                ):
                    if (event.get("content") or {}).get("membership") == "join":
                        # Joined now: the events after it in the batch concern it too.
                        interested.add(svc.id)
                else:
                    continue
                rows.append((svc.id, "event", it.event_id, None))
        await self.store.enqueue(conn, rows, _now_ms())
        return sorted({r[0] for r in rows})

    def events_committed(self, as_ids: Iterable[str]) -> None:
        self.sender.wake(as_ids)

    async def _queue_own(self, rows: list[tuple[str, str, str | None, str | None]]) -> None:
        if not rows:
            return
        async with self.hs.db.acquire() as conn, conn.transaction():
            await self.store.enqueue(conn, rows, _now_ms())
        self.sender.wake({r[0] for r in rows})

    async def _ephemeral(self, room_id: str, edu: dict, only_users: str | None = None) -> None:
        """Queues an ephemeral event of a room for the appservices that want them (and,
        with `only_users`, only those whose namespace holds that user)."""
        wanting = [svc for svc in self.services if svc.receive_ephemeral]
        if not wanting:
            return
        interested = (await self._rooms_interest([room_id])).get(room_id, set())
        content = orjson.dumps(edu).decode()
        await self._queue_own(
            [
                (svc.id, "ephemeral", None, content)
                for svc in wanting
                if svc.id in interested
                and (only_users is None or self._user_interest(svc, only_users))
            ]
        )

    async def on_typing(self, room_id: str) -> None:
        if not any(svc.receive_ephemeral for svc in self.services):
            return
        now = _now_ms()
        typing = await self.hs.ephemeral_store.typing_changes([room_id], None, 2**62, now, [])
        users = typing.get(room_id, [])
        await self._ephemeral(
            room_id, {"type": "m.typing", "room_id": room_id, "content": {"user_ids": users}}
        )

    async def on_receipt(
        self,
        room_id: str,
        user_id: str,
        receipt_type: str,
        event_id: str,
        thread_id: str | None,
        ts: int,
    ) -> None:
        data: dict[str, Any] = {"ts": ts}
        if thread_id:
            data["thread_id"] = thread_id
        edu = {
            "type": "m.receipt",
            "room_id": room_id,
            "content": {event_id: {receipt_type: {user_id: data}}},
        }
        # Private receipts only reach the appservice whose user made them (spec).
        private = receipt_type == "m.read.private"
        await self._ephemeral(room_id, edu, only_users=user_id if private else None)

    async def on_presence(self, user_id: str) -> None:
        wanting = [svc for svc in self.services if svc.receive_ephemeral]
        if not wanting:
            return
        from homeserver.presence.service import presence_content

        row = await self.hs.presence.store.get(user_id)
        if row is None:
            return
        content = presence_content(row, _now_ms())
        sharing: set[str] | None = None
        rows: list[tuple[str, str, str | None, str | None]] = []
        for svc in wanting:
            if not self._user_interest(svc, user_id):
                if sharing is None:
                    sharing = await self.hs.membership_store.users_sharing_room_with(user_id)
                if not any(self._user_interest(svc, u) for u in sharing):
                    continue
            edu = {"type": "m.presence", "sender": user_id, "content": content}
            rows.append((svc.id, "ephemeral", None, orjson.dumps(edu).decode()))
        await self._queue_own(rows)

    async def queue_to_device(
        self, conn, sender: str, event_type: str, rows: Iterable[tuple[str, str, dict]]
    ) -> list[str]:
        """MSC4203: to-device messages for the users of appservices that asked for them,
        queued in the caller's transaction ((user, device, content) rows); returns the
        appservice IDs for `events_committed`."""
        wanting = [svc for svc in self.services if svc.receive_to_device]
        if not wanting:
            return []
        queued = []
        for user_id, device_id, content in rows:
            for svc in wanting:
                if self._user_interest(svc, user_id):
                    message = {
                        "type": event_type,
                        "sender": sender,
                        "content": content,
                        "to_user_id": user_id,
                        "to_device_id": device_id,
                    }
                    queued.append((svc.id, "to_device", None, orjson.dumps(message).decode()))
        await self.store.enqueue(conn, queued, _now_ms())
        return sorted({r[0] for r in queued})

    async def keys_claimed(self, user_ids: Iterable[str]) -> None:
        """One-time keys of these users were claimed: the MSC3202 appservices owning them
        get a transaction with the new counts."""
        users = set(user_ids)
        await self._queue_own(
            [
                (svc.id, "keys", None, None)
                for svc in self.services
                if svc.msc3202 and any(self._user_interest(svc, u) for u in users)
            ]
        )

    # --- asking the appservice ----------------------------------------------------------

    async def query_user(self, user_id: str) -> bool:
        """Asks the appservices whose namespace holds an unknown local user whether it
        exists (they create it then); True if one said yes."""
        if not self._local(user_id):
            return False
        for svc in self.services:
            if svc.url and svc.is_user(user_id):
                if await self.client.query(svc, "users", user_id):
                    return True
        return False

    async def query_alias(self, alias: str) -> bool:
        """Same for an unknown alias (the appservice creates the room and alias)."""
        for svc in self.services:
            if svc.url and svc.is_alias(alias):
                if await self.client.query(svc, "rooms", alias):
                    return True
        return False
