"""Presence when users of two servers first share a room (SyTest "New federated private
chats get full presence information (SYN-115)"): each server sends the other the
presence of its users in the room, so each side's /sync shows both users."""

from __future__ import annotations

from nio import JoinResponse, PresenceEvent, RoomCreateResponse, SyncResponse

from tests.integration.federation.helpers import eventually


async def _presence_senders(client, seen: dict) -> dict:
    resp = await client.sync(timeout=500, set_presence="online")
    assert isinstance(resp, SyncResponse), resp
    for event in resp.presence_events:
        if isinstance(event, PresenceEvent):
            seen[event.user_id] = event.presence
    return seen


async def test_a_new_federated_chat_shows_both_users_presence(pair):
    hs1, hs2 = pair
    alice = await hs1.client("alice")
    bob = await hs2.client("bob")
    seen_by = {alice.user_id: {}, bob.user_id: {}}
    # Both are online (a sync sets it) before they share a room.
    for client in (alice, bob):
        await _presence_senders(client, seen_by[client.user_id])
    created = await alice.room_create()
    assert isinstance(created, RoomCreateResponse), created
    await alice.room_invite(created.room_id, bob.user_id)

    async def invited() -> bool:
        resp = await bob.sync(timeout=500)
        return created.room_id in resp.rooms.invite

    await eventually(invited)
    assert isinstance(await bob.join(created.room_id), JoinResponse)

    for client, other in ((alice, bob), (bob, alice)):

        async def sees_other(client=client, other=other) -> bool:
            seen = await _presence_senders(client, seen_by[client.user_id])
            return seen.get(other.user_id) == "online"

        try:
            await eventually(sees_other, timeout=10)
        except AssertionError:
            raise AssertionError(f"{client.user_id} saw {seen_by[client.user_id]}") from None


async def test_presence_received_just_before_our_join_is_applied_by_it(pair):
    """The resident server sends its members' presence as soon as it has our join, often
    before we have stored the room: kept until the join lands, then applied."""
    hs1, hs2 = pair
    alice = await hs1.client("alice")
    created = await alice.room_create(alias="early")
    assert isinstance(created, RoomCreateResponse), created
    assert await hs1.hs.presence.store.get(alice.user_id) is None  # hs1 sends nothing itself
    edus = hs2.hs.federation.edus.ephemeral
    entry = {"user_id": alice.user_id, "presence": "unavailable", "status_msg": "early"}
    await edus.on_presence(hs1.server_name, {"push": [{**entry, "last_active_ago": 5}]})
    assert await hs2.hs.presence.store.get(alice.user_id) is None  # no room shared yet
    bob = await hs2.client("bob")
    await alice.room_put_state(created.room_id, "m.room.join_rules", {"join_rule": "public"})
    assert isinstance(await bob.join(f"#early:{hs1.server_name}"), JoinResponse)

    async def applied():
        return await hs2.hs.presence.store.get(alice.user_id)

    row = await eventually(applied, timeout=10)
    assert (row.state, row.status_msg) == ("unavailable", "early")
