"""Membership changes: join, invite, leave, kick, ban, unban, forget."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from homeserver.http.errors import MatrixError, forbidden, not_found
from homeserver.rooms.successor import carry_over, predecessor, transfer_listing

if TYPE_CHECKING:
    from homeserver.app import Homeserver

_USER_ID = re.compile(r"@[^:\s]+:[A-Za-z0-9.\-\[\]:]+")  # whole string: fullmatch


def valid_user_id(user_id: str) -> bool:
    return bool(_USER_ID.fullmatch(user_id)) and len(user_id) <= 255


async def member_content(
    hs: Homeserver, user_id: str, membership: str, reason: str | None = None
) -> dict[str, Any]:
    content: dict[str, Any] = {"membership": membership}
    if membership in ("join", "invite", "knock"):
        row = await hs.accounts.profiles.get(user_id)
        if row is not None:
            if row["displayname"] is not None:
                content["displayname"] = row["displayname"]
            if row["avatar_url"] is not None:
                content["avatar_url"] = row["avatar_url"]
    if reason is not None:
        content["reason"] = reason
    return content


def _server_of(identifier: str) -> str:
    return identifier.split(":", 1)[1] if ":" in identifier else ""


async def resolve_room(
    hs: Homeserver, room_id_or_alias: str, servers: list[str] | None = None
) -> tuple[str, list[str]]:
    """(room ID, servers to join through): `servers` as given (via / server_name), and
    for another server's alias, the servers its directory names."""
    servers = list(servers or [])
    if room_id_or_alias.startswith("#"):
        if _server_of(room_id_or_alias) != hs.server_name and hs.federation.policy.federates:
            room_id, alias_servers = await hs.federation.membership.remote.resolve_alias(
                room_id_or_alias
            )
            return room_id, servers + alias_servers
        row = await hs.directory.alias(room_id_or_alias)
        if row is None and await hs.appservices.query_alias(room_id_or_alias):
            row = await hs.directory.alias(room_id_or_alias)  # the appservice made it
        if row is None:
            raise not_found("Room alias not found")
        return row["room_id"], servers
    if not room_id_or_alias.startswith("!"):
        raise MatrixError(400, "M_INVALID_PARAM", "Not a room ID or alias")
    return room_id_or_alias, servers


async def room_exists(hs: Homeserver, room_id: str) -> bool:
    return await hs.event_store.room_exists(room_id)


async def joins_locally(hs: Homeserver, room_id: str) -> bool:
    """Whether joining or knocking needs no other server: we know the room and one of our
    users is in it, or nobody is (our copy of its state is all there is), or we do not
    federate. Otherwise a resident server must help (federation.membership.remote)."""
    if not await room_exists(hs, room_id):
        return False
    servers = await hs.events.servers_in_room(room_id)
    return hs.server_name in servers or not servers or not hs.federation.policy.federates


async def _through_other_server(
    hs: Homeserver,
    user_id: str,
    room_id: str,
    membership: str,
    reason: str | None,
    servers: list[str],
) -> None:
    """A join or knock through a server that is in the room."""
    if not hs.federation.policy.federates:
        raise not_found("No known room with that ID")
    content = await member_content(hs, user_id, membership, reason)
    remote = hs.federation.membership.remote
    candidates = await remote.candidates(user_id, room_id, servers)
    handshake = remote.join if membership == "join" else remote.knock
    await handshake(user_id, room_id, candidates, content)


async def join(
    hs: Homeserver,
    user_id: str,
    room_id: str,
    reason: str | None = None,
    servers: list[str] | None = None,
    *,
    guest: bool = False,
    extra: dict[str, Any] | None = None,
) -> str:
    """`guest`: the joiner is a guest account; `extra`: the client's own keys for the
    member event's content (as Synapse keeps them)."""
    if await hs.admin.store.blocked_by(room_id) is not None:
        raise forbidden("This room has been blocked on this server")
    remote = not await joins_locally(hs, room_id)
    if remote:
        if guest and not await guests_may_join_remote(hs, user_id, room_id):
            raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guests may not join this room")
        await _through_other_server(hs, user_id, room_id, "join", reason, servers or [])
    else:
        if guest and not await guests_can_join(hs, room_id):
            raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guests may not join this room")
        current = await hs.events.current_state_event(room_id, "m.room.member", user_id)
        content = {
            **await member_content(hs, user_id, "join", reason),
            **(extra or {}),
            "membership": "join",
        }
        if current is not None and current.content == content:
            return room_id
        await hs.events.create_and_send(user_id, room_id, "m.room.member", content, user_id)
    await hs.membership_store.unforget(user_id, room_id)
    old_room_id = await predecessor(hs, room_id)
    if old_room_id is not None:
        if remote:
            await transfer_listing(hs, old_room_id, room_id)
        await carry_over(hs, user_id, old_room_id, room_id)
    return room_id


async def guests_can_join(hs: Homeserver, room_id: str) -> bool:
    ev = await hs.events.current_state_event(room_id, "m.room.guest_access")
    return ev is not None and ev.content.get("guest_access") == "can_join"


async def guests_may_join_remote(hs: Homeserver, user_id: str, room_id: str) -> bool:
    """A guest's join through another server: only into a room that we know lets guests
    join (spec, "Guest access": the m.room.guest_access event must be present and say
    can_join), from the stripped state of the guest's invite (or knock), else from our
    own, older copy of the room. Guests are our concept; the resident server cannot tell
    a guest from anyone else, so this is checked before asking it (as Synapse does)."""
    pending = await hs.out_of_band.get(user_id, room_id)
    if pending is not None and pending.stripped_state:
        for event in pending.stripped_state:
            if event.get("type") == "m.room.guest_access" and event.get("state_key") == "":
                content = event.get("content")
                return isinstance(content, dict) and content.get("guest_access") == "can_join"
        return False
    if not await room_exists(hs, room_id):
        return False
    try:
        return await guests_can_join(hs, room_id)
    except MatrixError:  # known only from outliers: no state of ours to go by
        return False


async def remove_guests(hs: Homeserver, room_id: str) -> None:
    """After guest access was withdrawn: the guests still joined leave (as Synapse does,
    each by their own leave event)."""
    if await guests_can_join(hs, room_id):
        return
    members = await hs.membership_store.members_of([room_id])
    for guest in await hs.accounts.users.guests_among(sorted(members)):
        if await hs.events.membership(room_id, guest) == "join":
            await hs.events.create_and_send(
                guest, room_id, "m.room.member", {"membership": "leave"}, guest
            )


async def set_membership(
    hs: Homeserver,
    sender: str,
    room_id: str,
    target: str,
    membership: str,
    reason: str | None = None,
) -> None:
    if not valid_user_id(target):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid user ID")
    if (
        sender == target
        and membership == "leave"
        and await _invited_out_of_band(hs, room_id, sender)
    ):
        # Rejecting an invite, or retracting a knock, in a room we are not in.
        content = await member_content(hs, sender, "leave", reason)
        await hs.federation.membership.remote.leave(sender, room_id, content)
        return
    if not await room_exists(hs, room_id):
        raise not_found("Unknown room")
    if membership == "invite" and _server_of(target) != hs.server_name:
        if not hs.federation.policy.federates:
            raise forbidden("This server does not federate")
        content = await member_content(hs, target, "invite", reason)
        await hs.federation.membership.invites.send(sender, room_id, target, content)
        return
    if membership == "invite" and target.split(":", 1)[1] == hs.server_name:
        # An unknown user in an appservice's namespace: the appservice may create it.
        if not await hs.accounts.users.is_active(target) and not (
            await hs.appservices.query_user(target) and await hs.accounts.users.is_active(target)
        ):
            raise not_found("No such user")
    if membership == "leave" and sender != target:
        # Kicking someone who is not in the room is refused by the spec's errors, not auth.
        current = await hs.events.membership(room_id, target)
        if current not in ("join", "invite", "knock", "ban"):
            raise forbidden("The user is not in the room")
    if sender == target and membership == "leave":
        current = await hs.events.membership(room_id, target)
        if current is None or current == "leave":
            raise forbidden("You are not in this room")
    content = await member_content(hs, target, membership, reason)
    await hs.events.create_and_send(sender, room_id, "m.room.member", content, target)


async def knock(
    hs: Homeserver,
    user_id: str,
    room_id: str,
    reason: str | None = None,
    servers: list[str] | None = None,
) -> None:
    if not await joins_locally(hs, room_id):
        await _through_other_server(hs, user_id, room_id, "knock", reason, servers or [])
        return
    content = await member_content(hs, user_id, "knock", reason)
    await hs.events.create_and_send(user_id, room_id, "m.room.member", content, user_id)


async def _invited_out_of_band(hs: Homeserver, room_id: str, user_id: str) -> bool:
    """The user's latest membership is an invite or knock we only know out of band
    (storage/out_of_band.py), in a room we are not in."""
    oob = await hs.out_of_band.get(user_id, room_id)
    if oob is None or oob.membership not in ("invite", "knock"):
        return False
    if not await room_exists(hs, room_id):
        return True
    if hs.server_name in await hs.events.servers_in_room(room_id):
        return False
    ordering = await hs.membership_store.member_event_ordering(room_id, user_id)
    return ordering is None or ordering < oob.stream_ordering


async def forget(hs: Homeserver, user_id: str, room_id: str) -> None:
    membership = (
        await hs.events.membership(room_id, user_id) if await room_exists(hs, room_id) else None
    )
    if membership in ("join", "invite", "knock"):
        raise MatrixError(400, "M_UNKNOWN", "Leave the room before forgetting it")
    await hs.membership_store.forget(user_id, room_id)
