"""Relations of events received over federation are indexed like local ones: a thread
written on two servers shows whole on both (/relations and the bundled aggregation)."""

from __future__ import annotations

from urllib.parse import quote

from nio import JoinResponse, RoomCreateResponse, RoomPreset, RoomVisibility

from tests.federation_ca import start_federating_server

V1 = "/_matrix/client/v1"
V3 = "/_matrix/client/v3"


async def _wait_for_count(server, client, room_id, root, count, rounds=40):
    """Long-polls the client's /sync until the root's thread has `count` events."""
    for _ in range(rounds):
        status, ev = await server.request(
            "GET", f"{V3}/rooms/{room_id}/event/{quote(root)}", token=client.access_token
        )
        thread = (
            ev.get("unsigned", {}).get("m.relations", {}).get("m.thread") if status == 200 else None
        )
        if thread and thread["count"] == count:
            return thread
        await client.sync(timeout=1000)
    raise AssertionError("the thread did not arrive")


async def test_thread_across_two_servers(make_server, ca):
    hs1 = await start_federating_server(make_server, ca, "hs1.test.local", ["hs2.test.local"])
    hs2 = await start_federating_server(make_server, ca, "hs2.test.local", ["hs1.test.local"])
    alice = await hs1.client("alice")
    bob = await hs2.client("bob")
    created = await alice.room_create(
        visibility=RoomVisibility.public, preset=RoomPreset.public_chat, alias="threads"
    )
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id
    assert isinstance(await bob.join(f"#threads:{hs1.server_name}"), JoinResponse)

    root = (
        await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "r"})
    ).event_id
    rel = {"rel_type": "m.thread", "event_id": root}
    mine = (
        await alice.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": "a", "m.relates_to": rel}
        )
    ).event_id
    await _wait_for_count(hs2, bob, room_id, root, 1)
    theirs = (
        await bob.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": "b", "m.relates_to": rel}
        )
    ).event_id
    thread = await _wait_for_count(hs1, alice, room_id, root, 2)
    assert thread["latest_event"]["event_id"] == theirs
    for server, client in ((hs1, alice), (hs2, bob)):
        status, body = await server.request(
            "GET",
            f"{V1}/rooms/{room_id}/relations/{quote(root)}/m.thread",
            token=client.access_token,
        )
        assert status == 200
        assert [e["event_id"] for e in body["chunk"]] == [theirs, mine]
