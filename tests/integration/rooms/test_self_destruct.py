"""MSC2228 self-destructing events (`org.matrix.self_destruct_after`): with
`ephemeral_messages.enabled`, the server redacts the event's content once the time has
passed, through the housekeeping task `self_destruct` (SyTest 30rooms/04messages and
50federation/31room-send "Ephemeral messages ... are correctly expired")."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

V3 = "/_matrix/client/v3"
ON = {"ephemeral_messages": {"enabled": True}}


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _send(server, client, room_id: str, body: str, after_ms: int | None) -> str:
    content = {"msgtype": "m.text", "body": body}
    if after_ms is not None:
        content["org.matrix.self_destruct_after"] = after_ms
    resp = await client.room_send(room_id, "m.room.message", content)
    return resp.event_id


async def _content(server, client, room_id: str, event_id: str) -> dict:
    status, body = await server.request(
        "GET", f"{V3}/rooms/{room_id}/event/{quote(event_id)}", token=client.access_token
    )
    assert status == 200, body
    return body["content"]


async def _search(server, client, term: str) -> list[str]:
    status, body = await server.request(
        "POST",
        f"{V3}/search",
        token=client.access_token,
        json={"search_categories": {"room_events": {"search_term": term}}},
    )
    assert status == 200, body
    return [r["result"]["event_id"] for r in body["search_categories"]["room_events"]["results"]]


async def test_expired_message_content_is_redacted_by_timer(make_server):
    server = await make_server(**ON)
    alice = await server.client()
    room_id = (await alice.room_create()).room_id
    doomed = await _send(server, alice, room_id, "vanishing lemurs", _now_ms() + 1000)
    kept = await _send(server, alice, room_id, "lasting lemurs", None)
    assert (await _content(server, alice, room_id, doomed))["body"] == "vanishing lemurs"
    assert await _search(server, alice, "vanishing") == [doomed]

    deadline = time.monotonic() + 10
    while (await _content(server, alice, room_id, doomed)) != {}:
        assert time.monotonic() < deadline, "not expired"
        await asyncio.sleep(0.2)
    status, page = await server.request(
        "GET",
        f"{V3}/rooms/{room_id}/messages?dir=b&limit=5&filter="
        + quote('{"types":["m.room.message"]}'),
        token=alice.access_token,
    )
    assert status == 200
    assert [(e["event_id"], e["content"]) for e in page["chunk"]] == [
        (kept, {"msgtype": "m.text", "body": "lasting lemurs"}),
        (doomed, {}),
    ]
    assert await _search(server, alice, "vanishing") == []
    assert await server.db.fetchval("SELECT count(*) FROM event_expiry") == 0


async def test_expiry_survives_the_process_and_runs_in_another(make_server, fresh_dsn):
    """The expiry is a row committed with the event: a second process on the same database
    (or the same one after a restart) runs the task and redacts it."""
    first = await make_server(**ON)
    alice = await first.client()
    room_id = (await alice.room_create()).room_id
    later = _now_ms() + 3_600_000
    doomed = await _send(first, alice, room_id, "an hour", later)
    first.hs.housekeeping.self_destruct.stop()  # as if this process went away

    second = await make_server(dsn=fresh_dsn, **ON)
    runner = second.hs.housekeeping.runner
    assert await runner.run_task("self_destruct", later - 1000) == 0
    assert await runner.run_task("self_destruct", later + 1) == 1
    assert await _content(second, alice, room_id, doomed) == {}


async def test_off_by_default_and_state_events_never_expire(make_server):
    server = await make_server()
    alice = await server.client()
    room_id = (await alice.room_create()).room_id
    event_id = await _send(server, alice, room_id, "stays", _now_ms() - 1)
    assert await server.hs.housekeeping.runner.run_task("self_destruct") == 0
    assert (await _content(server, alice, room_id, event_id))["body"] == "stays"
    assert await server.db.fetchval("SELECT count(*) FROM event_expiry") == 0

    on = await make_server(**ON)
    bob = await on.client()
    room_id = (await bob.room_create()).room_id
    await bob.room_put_state(
        room_id, "m.room.topic", {"topic": "t", "org.matrix.self_destruct_after": _now_ms() - 1}
    )
    assert await on.db.fetchval("SELECT count(*) FROM event_expiry") == 0
