"""AdminService: what admin handlers do that is more than one store call — server
notices, shutting rooms down, purging, making someone a room admin. It calls the same
services as the client routes (events, membership, accounts) so no rule is skipped."""

from __future__ import annotations

import logging
import math
import secrets
from typing import TYPE_CHECKING, Any

from homeserver.accounts.tags import update_tags
from homeserver.events.auth import get_power_level
from homeserver.http.errors import MatrixError, forbidden, not_found
from homeserver.rooms import membership
from homeserver.rooms.creation import create_room
from storage.admin import AdminStore

if TYPE_CHECKING:
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

SERVER_NOTICE_TAG = "m.server_notice"
DEFAULT_SHUTDOWN_MESSAGE = (
    "Sharing illegal content on this server is not permitted and rooms in violation"
    " will be blocked."
)


def new_task_id() -> str:
    return secrets.token_urlsafe(12)


class AdminService:
    def __init__(self, hs: Homeserver):
        self.hs = hs
        self.store = AdminStore(hs.db, hs.server_name, hs.config.admins)

    @property
    def notices_user(self) -> str:
        return f"@{self.hs.config.server_notices_localpart}:{self.hs.server_name}"

    # -- server notices -------------------------------------------------------------------

    async def send_server_notice(
        self,
        user_id: str,
        event_type: str,
        content: dict[str, Any],
        state_key: str | None,
        txn: tuple[str, str] | None = None,
    ) -> str:
        """Sends the notice into the user's server-notices room (made, and the user
        invited, on first use; the user is invited again if they left it). `txn`
        (a key of the caller's session, the transaction ID) makes a retry send nothing
        new."""
        room_id = await self._notice_room(user_id)
        return await self.hs.events.create_and_send(
            self.notices_user, room_id, event_type, content, state_key, txn
        )

    async def _notice_room(self, user_id: str) -> str:
        hs = self.hs
        room_id = await self.store.server_notice_room(user_id)
        if room_id is not None and await hs.event_store.room_exists(room_id):
            current = await hs.events.membership(room_id, user_id)
            if current in ("join", "invite"):
                return room_id
            if current == "leave" and await hs.events.membership(room_id, self.notices_user) == (
                "join"
            ):
                await membership.set_membership(hs, self.notices_user, room_id, user_id, "invite")
                return room_id
        await self._ensure_notices_user()
        created = await create_room(
            hs,
            self.notices_user,
            {
                "preset": "private_chat",
                "name": "Server Notices",
                "invite": [user_id],
                # Only the server speaks here.
                "power_level_content_override": {"events_default": 100, "invite": 100},
            },
        )
        room_id = created["room_id"]
        await self.store.set_server_notice_room(user_id, room_id)
        await update_tags(
            hs, user_id, room_id, lambda tags: tags.__setitem__(SERVER_NOTICE_TAG, {})
        )
        return room_id

    async def _ensure_notices_user(self) -> None:
        accounts = self.hs.accounts
        if await accounts.users.user_exists(self.notices_user):
            return
        async with self.hs.db.acquire() as conn, conn.transaction():
            await accounts.users.create_user(conn, self.notices_user, None, False, "Server Notices")

    # -- rooms ----------------------------------------------------------------------------

    async def shutdown_room(
        self,
        room_id: str,
        *,
        block: bool,
        purge: bool,
        new_room_user_id: str | None,
        room_name: str | None,
        message: str | None,
    ) -> dict[str, Any]:
        """Synapse's room deletion: optionally block the room, move its local members to a
        new room with a message, make every local member leave, take its aliases off the
        directory, and optionally purge it from the database."""
        hs = self.hs
        result: dict[str, Any] = {
            "kicked_users": [],
            "failed_to_kick_users": [],
            "local_aliases": [],
            "new_room_id": None,
        }
        if block:
            await self.store.block(room_id, new_room_user_id or self.notices_user)
        if not await hs.event_store.room_exists(room_id):
            return result
        new_room_id = None
        if new_room_user_id is not None:
            created = await create_room(
                hs,
                new_room_user_id,
                {
                    "preset": "public_chat",
                    "name": room_name or "Content Violation Notification",
                    # The moved users may read the explanation, not speak (as in Synapse).
                    "power_level_content_override": {"users_default": -10},
                },
            )
            new_room_id = created["room_id"]
            await hs.events.create_and_send(
                new_room_user_id,
                new_room_id,
                "m.room.message",
                {"msgtype": "m.text", "body": message or DEFAULT_SHUTDOWN_MESSAGE},
            )
            result["new_room_id"] = new_room_id
        for user_id in await self.store.joined_members(room_id):
            if user_id.split(":", 1)[1] != hs.server_name:
                continue
            try:
                await hs.events.create_and_send(
                    user_id, room_id, "m.room.member", {"membership": "leave"}, user_id
                )
                await hs.membership_store.forget(user_id, room_id)
                if new_room_id is not None and user_id != new_room_user_id:
                    await membership.set_membership(
                        hs, new_room_user_id or "", new_room_id, user_id, "invite"
                    )
                    await membership.join(hs, user_id, new_room_id)
                result["kicked_users"].append(user_id)
            except MatrixError as err:
                logger.info("room shutdown: %s could not be moved: %s", user_id, err.errcode)
                result["failed_to_kick_users"].append(user_id)
        for alias in await hs.directory.room_aliases(room_id):
            await hs.directory.delete_alias(alias)
            result["local_aliases"].append(alias)
            if new_room_id is not None and new_room_user_id is not None:
                await hs.directory.create_alias(alias, new_room_id, new_room_user_id)
        await hs.directory.set_public(room_id, False)
        if purge:
            await self.purge_room(room_id)
        return result

    async def purge_room(self, room_id: str) -> None:
        event_ids = await self.store.purge_room(room_id)
        self._forget_events(room_id, event_ids)

    def _forget_events(self, room_id: str, event_ids: list[str]) -> None:
        for event_id in event_ids:
            self.hs.event_store.cache.invalidate(event_id)
        self.hs.events.drop_head(room_id)

    def start_room_deletion(self, room_id: str, task_id: str, **options: Any) -> None:
        """Runs shutdown_room after the request answers; its status is the task's row."""

        async def run() -> None:
            await self.store.update_task(task_id, "active")
            try:
                result = await self.shutdown_room(room_id, **options)
            except Exception as err:
                logger.exception("room deletion %s failed", task_id)
                await self.store.update_task(task_id, "failed", error=type(err).__name__)
                return
            await self.store.update_task(task_id, "complete", result)

        self.hs.run_in_background(run())

    def start_history_purge(
        self, room_id: str, task_id: str, before_ordering: int, delete_local_events: bool
    ) -> None:
        async def run() -> None:
            await self.store.update_task(task_id, "active")
            try:
                event_ids = await self.store.purge_history(
                    room_id, before_ordering, delete_local_events
                )
            except Exception as err:
                logger.exception("history purge %s failed", task_id)
                await self.store.update_task(task_id, "failed", error=type(err).__name__)
                return
            for event_id in event_ids:
                self.hs.event_store.cache.invalidate(event_id)
            await self.store.update_task(task_id, "complete", {"purged": len(event_ids)})

        self.hs.run_in_background(run())

    async def clear_extremities(self, room_id: str) -> int:
        """Deletes every forward extremity but the deepest, latest one (Synapse's fix for
        rooms slowed by too many extremities); how many went."""
        rows = await self.store.forward_extremities(room_id)
        extra = [r["event_id"] for r in rows[1:]]
        if not extra:
            return 0
        deleted = await self.store.delete_extremities(room_id, extra)
        self.hs.events.drop_head(room_id)
        return deleted

    async def make_room_admin(self, room_id: str, user_id: str) -> None:
        """Gives `user_id` the highest power a local member of the room has (that member
        sends the power levels event), joining them first (invited by that member when
        the room is not public)."""
        hs = self.hs
        if not await hs.event_store.room_exists(room_id):
            raise not_found("Room not found")
        version = await hs.events.room_version(room_id)
        state = await hs.events.current_state(room_id)
        auth_state = {k: v.event for k, v in state.items()}
        create = auth_state.get(("m.room.create", ""))
        local_members = [
            key[1]
            for key, ev in state.items()
            if key[0] == "m.room.member"
            and ev.content.get("membership") == "join"
            and key[1].split(":", 1)[1] == hs.server_name
        ]
        if not local_members:
            raise MatrixError(400, "M_UNKNOWN", "No local user in the room could grant power")
        levels = {u: get_power_level(version, u, auth_state, create) for u in local_members}
        granter = max(local_members, key=lambda u: levels[u])
        pl_event = state.get(("m.room.power_levels", ""))
        pl = dict(pl_event.content) if pl_event is not None else {}
        users = dict(pl.get("users") or {})
        grant = levels[granter]
        if math.isinf(grant):
            # A v12 creator: the highest finite level in the room.
            grant = max([100, *(v for v in users.values() if isinstance(v, int))])
        target_level = get_power_level(version, user_id, auth_state, create)
        if user_id not in levels:
            join_rule = state.get(("m.room.join_rules", ""))
            if join_rule is None or join_rule.content.get("join_rule") != "public":
                if await hs.events.membership(room_id, user_id) != "invite":
                    await membership.set_membership(hs, granter, room_id, user_id, "invite")
            await membership.join(hs, user_id, room_id)
        if target_level >= grant:
            return
        users[user_id] = int(grant)
        pl["users"] = users
        try:
            await hs.events.create_and_send(granter, room_id, "m.room.power_levels", pl, "")
        except MatrixError as err:
            raise forbidden(f"No local member may grant that power: {err.error}") from None
