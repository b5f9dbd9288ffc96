"""One bad event must not fail other users' events (issue 17, item 1).

Events sent at once are persisted in one transaction (group commit). An event that
PostgreSQL refuses must be refused before it joins a batch; and if a batch fails anyway,
it is retried event by event so that only the guilty request fails.

To make sure the events share a batch, the tests hold the `events` stream row locked
(as a slow commit would) while the requests queue up behind the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import quote

import aiohttp
import asyncpg

V3 = "/_matrix/client/v3"
POISON = "org.example.poison"


async def _users_with_rooms(server, count: int) -> list[tuple[str, str]]:
    """(access token, room ID) of `count` users, each in a room of their own."""

    async def one() -> tuple[str, str]:
        client = await server.client()
        status, body = await server.request(
            "POST", f"{V3}/createRoom", token=client.access_token, json={}
        )
        assert status == 200, body
        return client.access_token, body["room_id"]

    return list(await asyncio.gather(*(one() for _ in range(count))))


@contextlib.asynccontextmanager
async def _writer_held(server):
    """The event writer blocks on its next commit until the block ends."""
    conn = await asyncpg.connect(server.hs.db.dsn)
    tx = conn.transaction()
    await tx.start()
    await conn.execute("SELECT pos FROM stream_positions WHERE stream = 'events' FOR UPDATE")
    try:
        yield
    finally:
        await tx.rollback()
        await conn.close()


def _queued_types(server) -> list[str]:
    return [p.item.event["type"] for p in list(server.hs.events._queue._queue)]


def _queued_rooms(server) -> list[str]:
    return [p.item.room_id for p in list(server.hs.events._queue._queue)]


async def _until(condition) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


async def _send(server, token: str, room_id: str, etype: str, txn: str, content: dict):
    path = f"{V3}/rooms/{quote(room_id, safe='')}/send/{quote(etype, safe='')}/{txn}"
    # A session per request: the shared one allows 100 connections, and these wait.
    async with aiohttp.ClientSession() as http:
        async with http.put(
            server.base_url.rstrip("/") + path,
            json=content,
            headers={"Authorization": f"Bearer {token}"},
        ) as resp:
            return resp.status, await resp.json(content_type=None)


async def test_bad_events_are_refused_before_they_join_a_batch(server):
    users = await _users_with_rooms(server, 11)
    (bad_token, bad_room), others = users[0], users[1:]
    message = {"msgtype": "m.text", "body": "fine"}
    bad = [
        # U+0000 where PostgreSQL stores the value in a text column of its own
        ("PUT", f"/rooms/{quote(bad_room)}/send/m.room%00message/b1", message),
        ("PUT", f"/rooms/{quote(bad_room)}/state/m.room.topic/a%00", {"topic": "x"}),
        ("PUT", f"/rooms/{quote(bad_room)}/state/m.room.member/x", {"membership": "jo\0in"}),
        # not canonical JSON (the default room version requires it)
        ("PUT", f"/rooms/{quote(bad_room)}/send/m.room.message/b2", {"body": "x", "n": 1.5}),
        ("PUT", f"/rooms/{quote(bad_room)}/send/m.room.message/b3", b'{"n": 18446744073709551616}'),
        ("PUT", f"/rooms/{quote(bad_room)}/send/m.room.message/b4", {"n": 2**53}),
    ]
    async with _writer_held(server):
        good = [
            asyncio.create_task(_send(server, token, room_id, "m.room.message", f"g{i}", message))
            for token, room_id in others
            for i in range(10)
        ]
        await _until(lambda: len(_queued_types(server)) >= 50)
        answers = []
        for method, path, body in bad:
            kw = {"data": body} if isinstance(body, bytes) else {"json": body}
            request = asyncio.create_task(server.request(method, V3 + path, token=bad_token, **kw))
            # Refused at once, or it joined the queue that waits for the held writer.
            await _until(lambda r=request: r.done() or bad_room in _queued_rooms(server))
            assert bad_room not in _queued_rooms(server), f"{path} joined a batch"
            answers.append(await request)
    results = await asyncio.gather(*good)
    assert [status for status, _ in results] == [200] * 100, results
    for status, body in answers:
        assert 400 <= status < 500 and body.get("errcode"), (status, body)
    stored = await server.db.fetchval(
        "SELECT count(*) FROM events WHERE room_id = $1 AND type = 'm.room.message'", bad_room
    )
    assert stored == 0


async def test_a_failing_batch_is_retried_event_by_event(server):
    """A database constraint refuses one event (as PostgreSQL would any value it cannot
    store): its request fails, and so does the one built on it in the same room; the
    other users' events in the batch are stored, and the room carries on from its head
    as stored, with one forward extremity."""
    await server.db.execute(
        f"ALTER TABLE events ADD CONSTRAINT hostile_poison CHECK (type <> '{POISON}')"
    )
    users = await _users_with_rooms(server, 11)
    (bad_token, bad_room), others = users[0], users[1:]
    message = {"msgtype": "m.text", "body": "fine"}
    async with _writer_held(server):
        good = [
            asyncio.create_task(_send(server, token, room_id, "m.room.message", f"g{i}", message))
            for token, room_id in others
            for i in range(10)
        ]
        await _until(lambda: len(_queued_types(server)) >= 50)
        poison = asyncio.create_task(_send(server, bad_token, bad_room, POISON, "p1", {}))
        await _until(lambda: POISON in _queued_types(server))
        follower = asyncio.create_task(
            _send(server, bad_token, bad_room, "m.room.message", "f1", message)
        )
        await _until(lambda: len(_queued_types(server)) > _queued_types(server).index(POISON) + 1)
    results = await asyncio.gather(*good)
    assert [status for status, _ in results] == [200] * 100, results
    status, body = await poison
    assert (status, body["errcode"]) == (500, "M_UNKNOWN")
    status, body = await follower
    assert status == 500, body  # its prev_event is the poison

    status, body = await _send(server, bad_token, bad_room, "m.room.message", "a1", message)
    assert status == 200, body
    extremities = await server.db.fetch(
        "SELECT event_id FROM room_forward_extremities WHERE room_id = $1", bad_room
    )
    assert [r["event_id"] for r in extremities] == [body["event_id"]]
    count = await server.db.fetchval("SELECT count(*) FROM events WHERE type = 'm.room.message'")
    assert count == 101
