"""Relations, threads, edits, reactions and references: GET /v1/rooms/{r}/relations/...,
GET /v1/rooms/{r}/threads and the bundled aggregations on every endpoint serving events
(matrix-nio where it has the call, raw HTTP for the wire and bad input)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import quote

from nio import RoomSendResponse
from nio.api import RelationshipType, ThreadInclusion

from tests.schema import assert_matches_schema

V1 = "/_matrix/client/v1"
V3 = "/_matrix/client/v3"


async def _room(server, *names):
    alice = await server.client(names[0] if names else None)
    others = [await server.client(n) for n in names[1:]]
    room_id = (
        await alice.room_create(name="relations", invite=[c.user_id for c in others])
    ).room_id
    for c in others:
        await c.join(room_id)
    return room_id, alice, *others


async def _send(client, room_id, content, etype="m.room.message") -> str:
    resp = await client.room_send(room_id, etype, content)
    assert isinstance(resp, RoomSendResponse), resp
    return resp.event_id


def _text(body, **rel):
    content = {"msgtype": "m.text", "body": body}
    if rel:
        content["m.relates_to"] = rel
    return content


def _thread(root, body):
    return _text(body, rel_type="m.thread", event_id=root)


def _edit(target, body):
    return {
        "msgtype": "m.text",
        "body": f"* {body}",
        "m.new_content": {"msgtype": "m.text", "body": body},
        "m.relates_to": {"rel_type": "m.replace", "event_id": target},
    }


async def _get(server, client, path):
    return await server.request("GET", path, token=client.access_token)


async def _relations(server, client, room_id, event_id, tail="", query=""):
    path = f"{V1}/rooms/{room_id}/relations/{quote(event_id)}{tail}"
    status, body = await _get(server, client, path + (f"?{query}" if query else ""))
    if status == 200:
        spec_path = "/rooms/{roomId}/relations/{eventId}"
        spec_path += {0: "", 1: "/{relType}", 2: "/{relType}/{eventType}"}[tail.count("/")]
        assert_matches_schema("relations.yaml", spec_path, "get", 200, body)
    return status, body


def _ids(body):
    return [e["event_id"] for e in body["chunk"]]


def _bundle(event):
    return event.get("unsigned", {}).get("m.relations", {})


async def test_thread_with_nio_and_bundles(server):
    room_id, alice, bob, carol = await _room(server, "alice", "bob", "carol")
    root = await _send(alice, room_id, _text("root"))
    replies = [await _send(bob, room_id, _thread(root, "one"))]
    replies.append(await _send(alice, room_id, _thread(root, "two")))
    replies.append(await _send(bob, room_id, _thread(root, "three")))
    # An edit of the latest thread event is bundled inside latest_event.
    edit = await _send(bob, room_id, _edit(replies[-1], "three!"))

    # matrix-nio pages through the thread (limit 2) newest first.
    got = [
        e.event_id
        async for e in bob.room_get_event_relations(room_id, root, RelationshipType.thread, limit=2)
    ]
    assert got == replies[::-1]
    roots = [e.event_id async for e in carol.room_get_threads(room_id)]
    assert roots == [root]
    assert [
        e.event_id async for e in carol.room_get_threads(room_id, ThreadInclusion.participated)
    ] == []
    assert [
        e.event_id async for e in bob.room_get_threads(room_id, ThreadInclusion.participated)
    ] == [root]

    status, ev = await _get(server, carol, f"{V3}/rooms/{room_id}/event/{quote(root)}")
    assert status == 200
    thread = _bundle(ev)["m.thread"]
    assert thread["count"] == 3
    assert thread["current_user_participated"] is False
    assert thread["latest_event"]["event_id"] == replies[-1]
    assert _bundle(thread["latest_event"])["m.replace"]["event_id"] == edit
    status, ev = await _get(server, alice, f"{V3}/rooms/{room_id}/event/{quote(root)}")
    assert _bundle(ev)["m.thread"]["current_user_participated"] is True  # the root's sender

    status, body = await _get(server, carol, f"{V1}/rooms/{room_id}/threads")
    assert status == 200
    assert_matches_schema("threads_list.yaml", "/rooms/{roomId}/threads", "get", 200, body)
    assert _ids(body) == [root]
    assert _bundle(body["chunk"][0])["m.thread"]["count"] == 3

    # /sync timeline carries the bundle too.
    sync = await carol.sync(timeout=0, full_state=True)
    timeline = {e.event_id: e.source for e in sync.rooms.join[room_id].timeline.events}
    assert _bundle(timeline[root])["m.thread"]["count"] == 3

    # Starting a thread off a thread reply is refused, and stores nothing.
    status, body = await server.request(
        "PUT",
        f"{V3}/rooms/{room_id}/send/m.room.message/nested1",
        token=bob.access_token,
        json=_thread(replies[0], "nested"),
    )
    assert (status, body["errcode"]) == (400, "M_UNKNOWN")
    status, body = await _relations(server, bob, room_id, replies[0])
    assert _ids(body) == []


async def test_threads_ordered_by_latest_activity_and_paginated(server):
    room_id, alice, bob = await _room(server, "alice", "bob")
    roots = [await _send(alice, room_id, _text(f"root {i}")) for i in range(3)]
    for root in roots:
        await _send(bob, room_id, _thread(root, "reply"))
    await _send(bob, room_id, _thread(roots[0], "bump"))  # roots[0] is now the most active
    status, page1 = await _get(server, alice, f"{V1}/rooms/{room_id}/threads?limit=2")
    assert status == 200
    assert _ids(page1) == [roots[0], roots[2]]
    status, page2 = await _get(
        server, alice, f"{V1}/rooms/{room_id}/threads?limit=2&from={page1['next_batch']}"
    )
    assert _ids(page2) == [roots[1]]
    assert "next_batch" not in page2


async def test_edits_follow_the_spec_everywhere(server):
    room_id, alice, bob = await _room(server, "alice", "bob")
    original = await _send(alice, room_id, _text("cake"))
    await _send(alice, room_id, _edit(original, "chocolate cake"))
    latest = await _send(alice, room_id, _edit(original, "lemon cake"))
    await _send(bob, room_id, _edit(original, "bob's cake"))  # another sender: not an edit
    no_new_content = _text("* x", rel_type="m.replace", event_id=original)
    await _send(alice, room_id, no_new_content)  # no m.new_content: not an edit
    await _send(alice, room_id, _edit(original, "wrong type"), etype="org.example.other")

    def check(event):
        edit = _bundle(event)["m.replace"]
        assert edit["event_id"] == latest
        assert edit["content"]["m.new_content"]["body"] == "lemon cake"
        assert event["content"]["body"] == "cake"  # the original content is left intact

    status, ev = await _get(server, bob, f"{V3}/rooms/{room_id}/event/{quote(original)}")
    check(ev)
    status, msgs = await _get(server, bob, f"{V3}/rooms/{room_id}/messages?dir=b&limit=50")
    check(next(e for e in msgs["chunk"] if e["event_id"] == original))
    status, ctx = await _get(server, bob, f"{V3}/rooms/{room_id}/context/{quote(original)}")
    check(ctx["event"])
    sync = await bob.sync(timeout=0, full_state=True)
    check(
        next(e.source for e in sync.rooms.join[room_id].timeline.events if e.event_id == original)
    )
    # /relations lists every m.replace child, valid or not.
    status, body = await _relations(server, bob, room_id, original, "/m.replace")
    assert len(body["chunk"]) == 5 and "next_batch" not in body

    # A redacted original has no edit bundled.
    await alice.room_redact(room_id, original)
    status, ev = await _get(server, bob, f"{V3}/rooms/{room_id}/event/{quote(original)}")
    assert "m.replace" not in _bundle(ev)


async def test_reactions_served_not_bundled_and_references_bundled(server):
    room_id, alice, bob = await _room(server, "alice", "bob")
    target = await _send(alice, room_id, _text("react to me"))
    reaction = {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": "👍"}}
    r1 = await _send(bob, room_id, reaction, etype="m.reaction")
    r2 = await _send(alice, room_id, reaction, etype="m.reaction")
    ref = await _send(bob, room_id, _text("see above", rel_type="m.reference", event_id=target))

    status, body = await _relations(server, alice, room_id, target, "/m.annotation")
    assert _ids(body) == [r2, r1]
    status, body = await _relations(server, alice, room_id, target, "/m.annotation/m.reaction")
    assert _ids(body) == [r2, r1]
    status, body = await _relations(server, alice, room_id, target, "/m.annotation/m.room.message")
    assert _ids(body) == []
    status, body = await _relations(server, alice, room_id, target, query="limit=10")
    assert _ids(body) == [ref, r2, r1]

    status, ev = await _get(server, alice, f"{V3}/rooms/{room_id}/event/{quote(target)}")
    assert _bundle(ev) == {"m.reference": {"chunk": [{"event_id": ref}]}}

    # The same user, type and key twice is refused, until the first is redacted.
    path = f"{V3}/rooms/{room_id}/send/m.reaction/again"
    status, body = await server.request("PUT", path, token=bob.access_token, json=reaction)
    assert (status, body["errcode"]) == (400, "M_DUPLICATE_ANNOTATION")
    status, body = await _relations(server, alice, room_id, target, "/m.annotation")
    assert _ids(body) == [r2, r1]
    await bob.room_redact(room_id, r1)
    status, body = await server.request("PUT", path, token=bob.access_token, json=reaction)
    assert status == 200
    status, body = await _relations(server, alice, room_id, target, "/m.annotation")
    assert _ids(body) == [body["chunk"][0]["event_id"], r2] and r1 not in _ids(body)


async def test_recurse_and_pagination_both_directions(server):
    room_id, alice = await _room(server, "alice")
    root = await _send(alice, room_id, _text("root"))
    children = []
    for i in range(5):
        children.append(await _send(alice, room_id, _thread(root, f"reply {i}")))
    edit = await _send(alice, room_id, _edit(children[1], "edited reply"))

    status, body = await _relations(server, alice, room_id, root, query="limit=100")
    assert _ids(body) == children[::-1] and "recursion_depth" not in body
    status, body = await _relations(server, alice, room_id, root, query="recurse=true&limit=100")
    assert _ids(body) == [edit, *children[::-1]]
    assert body["recursion_depth"] == 3
    status, body = await _relations(
        server, alice, room_id, root, "/m.replace", query="recurse=true"
    )
    assert _ids(body) == [edit]

    # Backwards in pages of 2, then forwards in pages of 2: the same events, both ways.
    seen, token = [], None
    while True:
        q = "limit=2" + (f"&from={token}" if token else "")
        status, body = await _relations(server, alice, room_id, root, "/m.thread", q)
        assert status == 200
        seen += _ids(body)
        if token:
            assert body["prev_batch"] == token
        token = body.get("next_batch")
        if token is None:
            break
    assert seen == children[::-1]
    seen, token = [], None
    while True:
        q = "dir=f&limit=2" + (f"&from={token}" if token else "")
        status, body = await _relations(server, alice, room_id, root, "/m.thread", q)
        seen += _ids(body)
        token = body.get("next_batch")
        if token is None:
            break
    assert seen == children

    # `to` stops a page: from the start of page 1 back to the end of page 1 is page 1.
    status, page1 = await _relations(server, alice, room_id, root, "/m.thread", "limit=2")
    status, rest = await _relations(
        server, alice, room_id, root, "/m.thread", f"limit=10&to={page1['next_batch']}"
    )
    assert _ids(rest) == _ids(page1)
    # A /messages token is accepted as `from`.
    status, msgs = await _get(server, alice, f"{V3}/rooms/{room_id}/messages?dir=b&limit=1")
    status, body = await _relations(
        server, alice, room_id, root, "/m.thread", f"from={msgs['start']}&limit=100"
    )
    assert _ids(body) == children[::-1]


async def test_redaction_breaks_the_relation(server):
    room_id, alice, bob = await _room(server, "alice", "bob")
    root = await _send(alice, room_id, _text("root"))
    first = await _send(bob, room_id, _thread(root, "first"))
    second = await _send(bob, room_id, _thread(root, "second"))
    await bob.room_redact(room_id, second)
    status, body = await _relations(server, alice, room_id, root)
    assert _ids(body) == [first]
    status, ev = await _get(server, alice, f"{V3}/rooms/{room_id}/event/{quote(root)}")
    thread = _bundle(ev)["m.thread"]
    assert (thread["count"], thread["latest_event"]["event_id"]) == (1, first)
    await bob.room_redact(room_id, first)
    status, body = await _get(server, alice, f"{V1}/rooms/{room_id}/threads")
    assert body["chunk"] == []
    status, ev = await _get(server, alice, f"{V3}/rooms/{room_id}/event/{quote(root)}")
    assert "m.relations" not in ev["unsigned"]


async def _relation_rows(server):
    async with server.db.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM event_relations ORDER BY event_id")
        threads = await conn.fetch("SELECT * FROM threads ORDER BY root_id")
    return [dict(r) for r in rows], [dict(r) for r in threads]


async def test_bad_input_answers_errors_and_changes_nothing(server):
    room_id, alice, bob = await _room(server, "alice", "bob")
    outsider = await server.client("outsider")
    root = await _send(alice, room_id, _text("root"))
    await _send(bob, room_id, _thread(root, "reply"))
    before = await _relation_rows(server)

    status, body = await _relations(server, alice, room_id, root, "/org.example.unknown")
    assert (status, body["chunk"]) == (200, [])
    status, body = await _relations(server, alice, room_id, root, query="limit=5000")
    assert status == 200 and len(body["chunk"]) == 1  # clamped, not refused
    for query in ("limit=-1", "limit=x", "dir=sideways", "from=nonsense", "recurse=maybe"):
        status, body = await _relations(server, alice, room_id, root, query=query)
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), query
    # An event the user cannot see: not in the room, unknown event, unknown room.
    status, body = await _relations(server, outsider, room_id, root)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await _relations(server, alice, room_id, "$nope")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await _relations(server, alice, "!nope:test", root)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")

    for query in ("limit=0", "limit=-3", "include=mine", "from=nonsense"):
        status, body = await _get(server, alice, f"{V1}/rooms/{room_id}/threads?{query}")
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), query
    status, body = await _get(server, outsider, f"{V1}/rooms/{room_id}/threads")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await _get(server, alice, f"{V1}/rooms/{room_id}/threads?limit=1000")
    assert status == 200 and _ids(body) == [root]

    assert await _relation_rows(server) == before


async def test_migration_backfills_existing_events(server):
    """The migration indexes events stored before it: wiped and re-run, it rebuilds the
    rows persistence wrote."""
    room_id, alice = await _room(server, "alice")
    root = await _send(alice, room_id, _text("root"))
    await _send(alice, room_id, _thread(root, "reply"))
    await _send(alice, room_id, _edit(root, "root!"))
    reaction = {"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "🎉"}}
    await _send(alice, room_id, reaction, etype="m.reaction")
    await _send(alice, room_id, {"m.relates_to": {"rel_type": 5, "event_id": root}})  # ignored
    # U+0000 elsewhere in the content is no obstacle; in the relation it makes none.
    await _send(alice, room_id, _thread(root, "nul \x00 in the body"))
    await _send(alice, room_id, _thread(root + "\x00", "nul in the parent"))
    written = await _relation_rows(server)
    assert len(written[0]) == 4 and len(written[1]) == 1
    assert {r["key"] for r in written[0]} == {None, "🎉"}
    sql = (Path(__file__).parents[3] / "storage/migrations/1200_relations.sql").read_text()
    backfill = sql[sql.index("-- Existing events") :]
    async with server.db.acquire() as conn:
        await conn.execute("TRUNCATE event_relations, threads")
        await conn.execute(backfill)
    assert await _relation_rows(server) == written


async def _counts(server, client, room_id, by_thread: bool):
    """(room counts, per-thread counts) from a raw initial /sync."""
    timeline = {"unread_thread_notifications": True} if by_thread else {}
    flt = quote(json.dumps({"room": {"timeline": timeline}}))
    status, body = await _get(server, client, f"{V3}/sync?timeout=0&filter={flt}")
    assert status == 200
    room = body["rooms"]["join"][room_id]
    counts = room["unread_notifications"]["notification_count"]
    threads = {
        k: v["notification_count"] for k, v in room.get("unread_thread_notifications", {}).items()
    }
    return counts, threads, room


async def test_threaded_receipts_and_unread_thread_notifications(server):
    room_id, alice, bob = await _room(server, "alice", "bob")
    root = await _send(alice, room_id, _text("root"))
    await _send(alice, room_id, _thread(root, "in thread 1"))
    last_in_thread = await _send(alice, room_id, _thread(root, "in thread 2"))
    main = await _send(alice, room_id, _text("main timeline"))

    assert (await _counts(server, bob, room_id, False))[:2] == (4, {})
    assert (await _counts(server, bob, room_id, True))[:2] == (2, {root: 2})

    # A receipt in the thread reads the thread only.
    status, _ = await server.request(
        "POST",
        f"{V3}/rooms/{room_id}/receipt/m.read/{quote(last_in_thread)}",
        token=bob.access_token,
        json={"thread_id": root},
    )
    assert status == 200
    assert (await _counts(server, bob, room_id, True))[:2] == (2, {})
    assert (await _counts(server, bob, room_id, False))[:2] == (2, {})
    # ... and is served with its thread_id in the m.receipt EDU.
    _, _, room = await _counts(server, alice, room_id, False)
    receipts = [e for e in room["ephemeral"]["events"] if e["type"] == "m.receipt"]
    assert receipts[0]["content"][last_in_thread]["m.read"][bob.user_id]["thread_id"] == root

    # A receipt in a thread for an event outside it (or under an event that is no thread
    # root), and a threaded m.fully_read, are refused and change nothing.
    for event_id, thread_id in ((main, root), (last_in_thread, main)):
        status, body = await server.request(
            "POST",
            f"{V3}/rooms/{room_id}/receipt/m.read/{quote(event_id)}",
            token=bob.access_token,
            json={"thread_id": thread_id},
        )
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await server.request(
        "POST",
        f"{V3}/rooms/{room_id}/receipt/m.fully_read/{quote(main)}",
        token=bob.access_token,
        json={"thread_id": "main"},
    )
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    assert (await _counts(server, bob, room_id, True))[:2] == (2, {})

    # A 'main' receipt reads the main timeline, not new thread events.
    await server.request(
        "POST",
        f"{V3}/rooms/{room_id}/receipt/m.read/{quote(main)}",
        token=bob.access_token,
        json={"thread_id": "main"},
    )
    newer = await _send(alice, room_id, _thread(root, "in thread 3"))
    assert (await _counts(server, bob, room_id, True))[:2] == (0, {root: 1})
    # An unthreaded receipt reads everything up to it.
    await server.request(
        "POST",
        f"{V3}/rooms/{room_id}/receipt/m.read/{quote(newer)}",
        token=bob.access_token,
        json={},
    )
    assert (await _counts(server, bob, room_id, True))[:2] == (0, {})


async def test_event_redacted_before_it_arrives_relates_to_nothing(server):
    """Over federation a redaction may come before its target; when the target is stored
    its relation is not indexed. (The target is built here and stored through the path
    federated events take, after a redactions row for it.)"""
    room_id, alice = await _room(server, "alice")
    root = await _send(alice, room_id, _text("root"))
    hs = server.hs
    item, state = await hs.events.prepare_event(
        alice.user_id, room_id, "m.room.message", _thread(root, "redacted already")
    )
    async with server.db.acquire() as conn:
        await conn.execute(
            "INSERT INTO redactions (redacts, redaction_id) VALUES ($1, '$redaction')",
            item.event_id,
        )
    await hs.events.persist_federated(
        room_id, item.event, item.event_id, state_before=state, federated=False
    )
    assert await _relation_rows(server) == ([], [])
    status, body = await _relations(server, alice, room_id, root)
    assert body["chunk"] == []


async def test_bundling_costs_the_same_queries_for_any_number_of_events(server, monkeypatch):
    """One batch per response, not a query per event (no N+1)."""
    room_id, alice = await _room(server, "alice")
    roots = []
    for i in range(8):
        roots.append(await _send(alice, room_id, _text(f"root {i}")))
        reply = await _send(alice, room_id, _thread(roots[-1], "reply"))
        await _send(alice, room_id, _edit(reply, "reply!"))
        await _send(alice, room_id, _edit(roots[-1], f"root {i}!"))
    hs = server.hs
    events = await hs.event_store.get_events(roots)
    hs.event_store.cache = type(hs.event_store.cache)()  # nothing cached: the worst case
    calls = []
    fetch = hs.db.fetch

    test_task = asyncio.current_task()

    async def counting_fetch(query, *args):
        # Background tasks (the pusher, housekeeping) share the pool: count ours only.
        if asyncio.current_task() is test_task:
            calls.append(query)
        return await fetch(query, *args)

    monkeypatch.setattr(hs.db, "fetch", counting_fetch)
    queries = []
    for subset in (roots[:1], roots):
        calls.clear()
        bundles = await hs.relations.bundle([events[r] for r in subset], alice.user_id)
        queries.append(len(calls))
        assert all(
            b["m.thread"]["count"] == 1
            and "m.replace" in b["m.thread"]["latest_event"]["unsigned"]["m.relations"]
            and "m.replace" in b
            for b in bundles.values()
        )
        assert len(bundles) == len(subset)
    assert queries[0] == queries[1] <= 3
