"""EDUs in a room really shared over federation (joined through make_join/send_join):
typing, read receipts, presence and device-list changes reach the other server's
clients."""

from __future__ import annotations

from nio import (
    JoinResponse,
    PresenceEvent,
    ReceiptEvent,
    RoomCreateResponse,
    RoomPreset,
    RoomVisibility,
    SyncResponse,
    TypingNoticeEvent,
)

from tests.integration.e2ee.test_e2ee_chat import (
    e2e_client,
    e2e_login,
    settle,
)


async def public_room(client, alias: str, initial_state=()) -> str:
    resp = await client.room_create(
        visibility=RoomVisibility.public,
        preset=RoomPreset.public_chat,
        alias=alias,
        initial_state=list(initial_state),
    )
    assert isinstance(resp, RoomCreateResponse), resp
    return resp.room_id


async def sync_until(client, found, rounds: int = 30):
    """Long-polls /sync until `found(response)` gives something (bounded in rounds; each
    round returns as soon as anything arrives for the client)."""
    for _ in range(rounds):
        resp = await client.sync(timeout=2000)
        assert isinstance(resp, SyncResponse), resp
        value = found(resp)
        if value:
            return value
    raise AssertionError("the expected data did not arrive")


def ephemeral(resp: SyncResponse, room_id: str, kind) -> list:
    room = resp.rooms.join.get(room_id)
    return [e for e in room.ephemeral if isinstance(e, kind)] if room else []


async def test_typing_receipts_presence_and_device_lists_cross_servers(pair, tmp_path):
    hs1, hs2 = pair
    alice = await e2e_client(hs1, tmp_path, "alice")
    room_id = await public_room(alice, "lobby")
    bob = await e2e_client(hs2, tmp_path, "bob")
    assert isinstance(await bob.join(f"#lobby:{hs1.server_name}"), JoinResponse)
    await settle(alice)
    await settle(bob)

    await bob.room_typing(room_id, True, timeout=30_000)
    typing = await sync_until(alice, lambda r: ephemeral(r, room_id, TypingNoticeEvent))
    assert typing[-1].users == [bob.user_id]

    sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "x"})
    await sync_until(
        bob, lambda r: r.rooms.join.get(room_id) and r.rooms.join[room_id].timeline.events
    )
    await bob.room_read_markers(room_id, sent.event_id, read_event=sent.event_id)

    def bobs_receipt(resp):
        return [
            r
            for e in ephemeral(resp, room_id, ReceiptEvent)
            for r in e.receipts
            if r.user_id == bob.user_id and r.event_id == sent.event_id
        ]

    [receipt] = await sync_until(alice, bobs_receipt)
    assert receipt.receipt_type == "m.read"

    await bob.set_presence("unavailable", "away from desk")

    def bobs_presence(resp):
        return [
            e
            for e in resp.presence_events
            if isinstance(e, PresenceEvent) and e.user_id == bob.user_id
        ]

    presence = await sync_until(alice, bobs_presence)
    assert (presence[-1].presence, presence[-1].status_msg) == ("unavailable", "away from desk")

    # Bob signs in on another device: alice's server hears of it (m.device_list_update)
    # and tells alice, whose next key query shows the new device.
    bob2 = await e2e_login(hs2, tmp_path, "bob")
    await sync_until(alice, lambda r: bob.user_id in r.device_list.changed)
    status, body = await hs1.request(
        "POST",
        "/_matrix/client/v3/keys/query",
        token=alice.access_token,
        json={"device_keys": {bob.user_id: []}},
    )
    assert status == 200, body
    assert set(body["device_keys"][bob.user_id]) == {bob.device_id, bob2.device_id}
