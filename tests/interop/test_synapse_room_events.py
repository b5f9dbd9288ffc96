"""What happens in a room shared with Synapse, each test run twice: with the room created
on our server and joined from Synapse, and the other way round (the `shared_room` fixture).
State changes, power, redactions, kicks and bans, typing and receipts."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import orjson
from nio import (
    JoinResponse,
    ReceiptEvent,
    RedactedEvent,
    RoomGetStateEventResponse,
    RoomGetStateResponse,
    RoomMessagesResponse,
    RoomMessageText,
    TypingNoticeEvent,
)

from tests.integration.federation.helpers import (
    start_federation_listener,
    stop_federation_listener,
)
from tests.interop.helpers import public_room, send_text, sync_until, wait_for_texts


async def _state(client, room_id: str, event_type: str, state_key: str = "") -> dict:
    resp = await client.room_get_state_event(room_id, event_type, state_key)
    assert isinstance(resp, RoomGetStateEventResponse), resp
    return resp.content


async def _put_state(client, room_id: str, event_type: str, content: dict) -> str:
    resp = await client.room_put_state(room_id, event_type, content)
    assert getattr(resp, "event_id", None), resp
    return resp.event_id


async def test_state_changes_from_both_sides(shared_room):
    room_id, host, guest = shared_room.room_id, shared_room.host, shared_room.guest
    await _put_state(host, room_id, "m.room.topic", {"topic": "set by the host"})
    await sync_until(guest, lambda _: guest.rooms[room_id].topic == "set by the host", "topic")
    assert (await _state(guest, room_id, "m.room.topic"))["topic"] == "set by the host"

    # Without power, the guest's own server refuses its name change...
    refused = await guest.room_put_state(room_id, "m.room.name", {"name": "too early"})
    assert getattr(refused, "status_code", None) == "M_FORBIDDEN", refused
    # ... and with it (granted by the host, carried over federation), both servers accept it.
    levels = await _state(host, room_id, "m.room.power_levels")
    levels.setdefault("users", {})[guest.user_id] = 50
    await _put_state(host, room_id, "m.room.power_levels", levels)
    await sync_until(
        guest,
        lambda _: guest.rooms[room_id].power_levels.get_user_level(guest.user_id) == 50,
        "the power level",
    )
    await _put_state(guest, room_id, "m.room.name", {"name": "named by the guest"})
    await sync_until(host, lambda _: host.rooms[room_id].name == "named by the guest", "name")
    assert (await _state(host, room_id, "m.room.name"))["name"] == "named by the guest"


async def test_redactions_both_ways(shared_room):
    room_id, host, guest = shared_room.room_id, shared_room.host, shared_room.guest
    from_guest = await send_text(guest, room_id, "guest: regrettable")
    from_host = await send_text(host, room_id, "host: regrettable")
    await wait_for_texts(host, room_id, ["guest: regrettable"])
    await wait_for_texts(guest, room_id, ["host: regrettable"])

    for client, event_id, reader in ((guest, from_guest, host), (host, from_host, guest)):
        assert getattr(await client.room_redact(room_id, event_id), "event_id", None)
        await sync_until(
            reader,
            lambda resp, event_id=event_id: _redacted_in(resp, room_id, event_id),
            f"the redaction of {event_id}",
        )
        page = await reader.room_messages(room_id, reader.next_batch, limit=20)
        assert isinstance(page, RoomMessagesResponse), page
        [redacted] = [e for e in page.chunk if e.event_id == event_id]
        assert isinstance(redacted, RedactedEvent), (
            reader.user_id,
            redacted.source.get("unsigned"),
            redacted.source.get("redacts"),
        )
        assert redacted.source["content"] == {}


def _redacted_in(resp, room_id: str, event_id: str) -> bool:
    room = resp.rooms.join.get(room_id)
    if room is None:
        return False
    return any(getattr(e, "redacts", None) == event_id for e in room.timeline.events)


async def test_kick_then_ban_across(shared_room):
    room_id, host, guest = shared_room.room_id, shared_room.host, shared_room.guest
    await host.room_kick(room_id, guest.user_id, reason="cool off")
    await sync_until(guest, lambda resp: room_id in resp.rooms.leave, "the kick")
    # A kick is not a ban: the guest comes back through its own server.
    assert isinstance(await guest.join(shared_room.alias), JoinResponse)
    await sync_until(host, lambda _: guest.user_id in host.rooms[room_id].users, "the rejoin")

    await host.room_ban(room_id, guest.user_id, reason="enough")
    await sync_until(guest, lambda resp: room_id in resp.rooms.leave, "the ban")
    again = await guest.join(shared_room.alias)
    assert not isinstance(again, JoinResponse)
    assert again.status_code == "M_FORBIDDEN", again
    await send_text(host, room_id, "after the ban")
    await host.sync(timeout=0)
    assert guest.user_id not in host.rooms[room_id].users


async def test_typing_and_read_receipts_both_ways(shared_room):
    room_id, host, guest = shared_room.room_id, shared_room.host, shared_room.guest
    for typist, watcher in ((host, guest), (guest, host)):
        await typist.room_typing(room_id, True, timeout=30_000)
        await sync_until(
            watcher,
            lambda resp, typist=typist: _typing(resp, room_id) == [typist.user_id],
            f"{typist.user_id} typing",
        )
        await typist.room_typing(room_id, False)
        await sync_until(watcher, lambda resp: _typing(resp, room_id) == [], "typing stopped")

    for sender, reader in ((host, guest), (guest, host)):
        event_id = await send_text(sender, room_id, f"read me, {reader.user_id}")
        await wait_for_texts(reader, room_id, [f"read me, {reader.user_id}"])
        await reader.update_receipt_marker(room_id, event_id)
        await sync_until(
            sender,
            lambda resp, event_id=event_id, reader=reader: (
                (reader.user_id, event_id) in _receipts(resp, room_id)
            ),
            "the read receipt",
        )


def _typing(resp, room_id: str) -> list[str] | None:
    room = resp.rooms.join.get(room_id)
    events = [e for e in room.ephemeral if isinstance(e, TypingNoticeEvent)] if room else []
    return events[-1].users if events else None


def _receipts(resp, room_id: str) -> set[tuple[str, str]]:
    room = resp.rooms.join.get(room_id)
    found = set()
    for e in room.ephemeral if room else []:
        if isinstance(e, ReceiptEvent):
            found |= {(r.user_id, r.event_id) for r in e.receipts if r.receipt_type == "m.read"}
    return found


async def test_messages_cross_in_order(shared_room):
    room_id, host, guest = shared_room.room_id, shared_room.host, shared_room.guest
    sent = [f"burst {i}" for i in range(20)]
    for body in sent:
        await send_text(guest, room_id, body)
    seen = await wait_for_texts(host, room_id, sent)
    assert [b for b in seen if b.startswith("burst")] == sent
    page = await host.room_messages(room_id, host.next_batch, limit=30)
    texts = [e.body for e in reversed(page.chunk) if isinstance(e, RoomMessageText)]
    assert texts[-20:] == sent


async def test_presence_both_ways(shared_room):
    """Presence of users who share a room crosses as m.presence EDUs."""
    host, guest = shared_room.host, shared_room.guest
    for user, watcher, status in ((host, guest, "at the host"), (guest, host, "a guest")):
        await user.set_presence("online", status_msg=status)
        await sync_until(
            watcher,
            lambda resp, user=user, status=status: any(
                p.user_id == user.user_id and p.presence == "online" and p.status_msg == status
                for p in resp.presence_events
            ),
            f"{user.user_id}'s presence",
        )
        got = await watcher.get_presence(user.user_id)
        assert (got.presence, got.status_msg) == ("online", status), got


async def _synapse_marked_down(synapse_peer, destination: str) -> None:
    """Waits (bounded) until Synapse has recorded a failed send to `destination`."""
    path = f"/_synapse/admin/v1/federation/destinations/{quote(destination)}"
    for _ in range(150):
        status, body = await synapse_peer.admin_get(path)
        if status == 200 and body.get("failure_ts"):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"Synapse never failed to reach {destination}: {status} {body}")


async def test_catch_up_after_our_server_was_unreachable(shared_room, ours, synapse_peer):
    """While our federation listener is down Synapse's sends fail and it backs off; once we
    talk to it again it catches up, and we fill the gap (get_missing_events)."""
    room_id, alice, bob = shared_room.room_id, shared_room.alice, shared_room.bob
    await stop_federation_listener(ours)
    try:
        missed = [f"while you were away {i}" for i in range(3)]
        for body in missed:
            await send_text(bob, room_id, body)
        await _synapse_marked_down(synapse_peer, ours.server_name)
    finally:
        await start_federation_listener(ours)
    await send_text(alice, room_id, "back again")
    seen = await wait_for_texts(alice, room_id, missed)
    assert [b for b in seen if b in missed] == missed
    await wait_for_texts(bob, room_id, ["back again"])


async def _answer_for(server, origin: str, event_id: str) -> dict:
    """Our /send answer for `event_id` from `origin`, once a transaction carried it
    (bounded wait)."""
    for _ in range(150):
        rows = await server.db.fetch(
            "SELECT response_json FROM federation_inbound_txns WHERE origin = $1", origin
        )
        for row in rows:
            answer = orjson.loads(row["response_json"]).get("pdus", {})
            if event_id in answer:
                return answer[event_id]
        await asyncio.sleep(0.2)
    raise AssertionError(f"no transaction from {origin} carried {event_id}")


async def test_our_server_acl_shuts_synapse_out(ours, synapse_peer):
    """A room of ours whose m.room.server_acl denies IP-literal server names: Synapse's
    events for it are refused, and nothing of them enters the room."""
    alice = await ours.client("alice")
    bob = await synapse_peer.client()
    try:
        room_id, alias = await public_room(alice, "acl")
        assert isinstance(await bob.join(alias), JoinResponse)
        before = await send_text(bob, room_id, "before the ACL")
        assert await _answer_for(ours, synapse_peer.server_name, before) == {}
        acl = {"allow": ["*"], "deny": [], "allow_ip_literals": False}
        await _put_state(alice, room_id, "m.room.server_acl", acl)
        after = await send_text(bob, room_id, "after the ACL")
        refused = await _answer_for(ours, synapse_peer.server_name, after)
        assert "error" in refused, refused
        assert await ours.db.fetchval("SELECT 1 FROM events WHERE event_id = $1", after) is None
    finally:
        await bob.close()


TRICKY = 'é 日本語 😀 \u2028\u2029 \x7f \t "quoted" back\\slash \u0001 \ufeff end'


async def test_content_that_tests_canonical_json_crosses_both_ways(shared_room):
    """Hashes and signatures cover canonical JSON: characters it escapes or not, and an
    event near the 64 KiB limit, must come out the same on both servers or the other
    side rejects the event."""
    room_id, host, guest = shared_room.room_id, shared_room.host, shared_room.guest
    for sender, reader in ((host, guest), (guest, host)):
        big = sender.user_id + "x" * 60_000
        content = {
            "msgtype": "m.text",
            "body": f"{TRICKY} from {sender.user_id}",
            "org.example.numbers": [0, -1, 2**53 - 1, -(2**53) + 1],
            "org.example.nested": {"b": [], "a": {"": None}},
        }
        tricky = await sender.room_send(room_id, "m.room.message", content)
        assert getattr(tricky, "event_id", None), tricky
        large = await send_text(sender, room_id, big)
        seen = await wait_for_texts(reader, room_id, [content["body"], big])
        assert seen.index(content["body"]) < seen.index(big)
        got = await reader.room_get_event(room_id, tricky.event_id)
        assert got.event.source["content"] == content
        assert large


async def test_display_name_changes_reach_the_room(shared_room):
    """A profile change is a new member event in each room the user is in."""
    room_id, host, guest = shared_room.room_id, shared_room.host, shared_room.guest
    for user, watcher in ((host, guest), (guest, host)):
        name = f"renamed {user.user_id[1:6]}"
        await user.set_displayname(name)
        await sync_until(
            watcher,
            lambda _, user=user, name=name, watcher=watcher: (
                watcher.rooms[room_id].user_name(user.user_id) == name
            ),
            f"{user.user_id}'s new name",
        )


async def test_the_guest_leaves_and_comes_back(shared_room):
    room_id, host, guest = shared_room.room_id, shared_room.host, shared_room.guest
    await guest.room_leave(room_id)
    await sync_until(host, lambda _: guest.user_id not in host.rooms[room_id].users, "leave")
    await send_text(host, room_id, "said while the guest was out")
    assert isinstance(await guest.join(shared_room.alias), JoinResponse)
    await sync_until(host, lambda _: guest.user_id in host.rooms[room_id].users, "the return")
    await send_text(guest, room_id, "back")
    await wait_for_texts(host, room_id, ["back"])


async def _state_ids(client, room_id: str) -> dict[tuple[str, str], str]:
    resp = await client.room_get_state(room_id)
    assert isinstance(resp, RoomGetStateResponse), resp
    return {(e["type"], e["state_key"]): e["event_id"] for e in resp.events}


async def _fork(shared_room, ours, host_change, guest_change) -> None:
    """Cuts federation both ways, lets each side make its change, then reconnects and has
    each side send a message, so that both servers see both branches and merge them."""
    room_id, host, guest = shared_room.room_id, shared_room.host, shared_room.guest
    await stop_federation_listener(ours)
    await ours.hs.federation.sender.stop()
    try:
        await host_change()
        await guest_change()
    finally:
        await start_federation_listener(ours)
        await ours.hs.federation.sender.start()
    # Each message's prev_events name that side's branch; the other side fetches the
    # branch it lacks (get_missing_events), and the next messages merge both.
    for round_ in range(2):
        for sender in (shared_room.alice, shared_room.bob):
            await send_text(sender, room_id, f"merge {round_} {sender.user_id}")
        wanted = [f"merge {round_} {c.user_id}" for c in (shared_room.alice, shared_room.bob)]
        await wait_for_texts(host, room_id, wanted)
        await wait_for_texts(guest, room_id, wanted)


async def test_concurrent_state_changes_resolve_the_same_on_both_servers(shared_room, ours):
    """A fork: each side changes the topic while federation is cut. Both servers must
    resolve it (state resolution v2) to the same current state."""
    room_id, host, guest = shared_room.room_id, shared_room.host, shared_room.guest
    levels = await _state(host, room_id, "m.room.power_levels")
    levels.setdefault("users", {})[guest.user_id] = 50
    await _put_state(host, room_id, "m.room.power_levels", levels)
    await sync_until(
        guest,
        lambda _: guest.rooms[room_id].power_levels.get_user_level(guest.user_id) == 50,
        "the power level",
    )

    async def host_topic():
        await _put_state(host, room_id, "m.room.topic", {"topic": "the host's"})

    async def guest_topic():
        await _put_state(guest, room_id, "m.room.topic", {"topic": "the guest's"})

    await _fork(shared_room, ours, host_topic, guest_topic)
    host_state, guest_state = await _state_ids(host, room_id), await _state_ids(guest, room_id)
    assert host_state == guest_state
    topic = (await _state(host, room_id, "m.room.topic"))["topic"]
    assert topic in ("the host's", "the guest's")
    assert (await _state(guest, room_id, "m.room.topic"))["topic"] == topic


async def test_a_demotion_beats_a_concurrent_change_that_needed_the_power(shared_room, ours):
    """State resolution v2 applies power events first: the host demotes the guest while
    the guest, concurrently, renames the room with the power it is losing. Both servers
    must end with the demotion and without the new name."""
    room_id, host, guest = shared_room.room_id, shared_room.host, shared_room.guest
    levels = await _state(host, room_id, "m.room.power_levels")
    levels.setdefault("users", {})[guest.user_id] = 50
    await _put_state(host, room_id, "m.room.power_levels", levels)
    await sync_until(
        guest,
        lambda _: guest.rooms[room_id].power_levels.get_user_level(guest.user_id) == 50,
        "the power level",
    )
    name_before = (await _state(host, room_id, "m.room.name"))["name"]

    async def demote():
        demoted = await _state(host, room_id, "m.room.power_levels")
        demoted["users"][guest.user_id] = 0
        await _put_state(host, room_id, "m.room.power_levels", demoted)

    async def rename():
        await _put_state(guest, room_id, "m.room.name", {"name": "renamed by the guest"})

    await _fork(shared_room, ours, demote, rename)
    host_state, guest_state = await _state_ids(host, room_id), await _state_ids(guest, room_id)
    assert host_state == guest_state
    for client in (host, guest):
        assert (await _state(client, room_id, "m.room.name"))["name"] == name_before
        levels = await _state(client, room_id, "m.room.power_levels")
        assert levels["users"].get(guest.user_id, 0) == 0


async def test_a_redacted_state_event_is_emptied_on_both_servers(shared_room):
    room_id, host, guest = shared_room.room_id, shared_room.host, shared_room.guest
    topic_id = await _put_state(host, room_id, "m.room.topic", {"topic": "soon gone"})
    await sync_until(guest, lambda _: guest.rooms[room_id].topic == "soon gone", "topic")
    assert getattr(await host.room_redact(room_id, topic_id), "event_id", None)
    await sync_until(
        guest,
        lambda resp: _redacted_in(resp, room_id, topic_id),
        "the redaction of the topic",
    )
    for client in (host, guest):
        assert await _state(client, room_id, "m.room.topic") == {}
