"""POST /v3/search over room events on real PostgreSQL: rooms and messages set up with
matrix-nio (which has no search call), searches and bad input over raw HTTP, every 200
validated against the spec's search.yaml."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from nio import RoomCreateResponse, RoomSendResponse

from homeserver.config import ConfigError
from tests.schema import assert_matches_schema

V3 = "/_matrix/client/v3"


async def _send(client, room_id, body) -> str:
    resp = await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})
    assert isinstance(resp, RoomSendResponse), resp
    return resp.event_id


async def _room(client, *members, **kw) -> str:
    resp = await client.room_create(invite=[m.user_id for m in members], **kw)
    assert isinstance(resp, RoomCreateResponse), resp
    for m in members:
        await m.join(resp.room_id)
    return resp.room_id


async def _search(server, client, criteria, next_batch=None):
    path = f"{V3}/search" + (f"?next_batch={quote(next_batch)}" if next_batch else "")
    status, body = await server.request(
        "POST",
        path,
        token=client.access_token,
        json={"search_categories": {"room_events": criteria}},
    )
    if status == 200:
        assert_matches_schema("search.yaml", "/search", "post", 200, body)
        return body["search_categories"]["room_events"]
    return status, body


def _ids(result):
    return [r["result"]["event_id"] for r in result["results"]]


async def _index_rows(server) -> int:
    return await server.db.fetchval("SELECT count(*) FROM event_search")


async def test_search_ranks_orders_paginates_and_shows_context(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    room = await _room(alice, bob, name="Martian council", topic="about martians")
    other = await _room(alice, name="elsewhere")
    first = await _send(alice, room, "the martians have landed")
    noise = await _send(bob, room, "nothing to see here")
    second = await _send(bob, room, "martians martians everywhere, martians")
    third = await _send(alice, other, "a martian? no, martians")
    await _send(bob, room, "after the second")

    # rank: the message saying it three times first; names and topics are searched too.
    result = await _search(server, alice, {"search_term": "martians", "keys": ["content.body"]})
    assert result["count"] == 3
    assert set(_ids(result)) == {first, second, third}
    assert _ids(result)[0] == second
    assert "martians" in result["highlights"]
    ranks = [r["rank"] for r in result["results"]]
    assert ranks == sorted(ranks, reverse=True)
    assert "next_batch" not in result

    everything = await _search(server, alice, {"search_term": "martian council"})
    assert [r["result"]["type"] for r in everything["results"]] == ["m.room.name"]
    topic = await _search(server, alice, {"search_term": "martians", "keys": ["content.topic"]})
    assert [r["result"]["content"]["topic"] for r in topic["results"]] == ["about martians"]

    # recent: newest first, paged by next_batch with limit 1.
    criteria = {
        "search_term": "martians",
        "order_by": "recent",
        "keys": ["content.body"],
        "filter": {"limit": 1},
    }
    pages, token = [], None
    for _ in range(5):
        page = await _search(server, bob, criteria, token)
        pages.extend(_ids(page))
        token = page.get("next_batch")
        if token is None:
            break
    # Bob is not in `other`: he never sees the third message.
    assert pages == [second, first]

    # Rank order pages too, without repeats.
    ranked, token = [], None
    for _ in range(5):
        page = await _search(server, alice, {**criteria, "order_by": "rank"}, token)
        ranked.extend(_ids(page))
        token = page.get("next_batch")
        if token is None:
            break
    assert ranked[0] == second and sorted(ranked) == sorted([first, second, third])

    # Context, profiles, state and groups.
    result = await _search(
        server,
        bob,
        {
            "search_term": "everywhere",
            "event_context": {"before_limit": 2, "after_limit": 1, "include_profile": True},
            "include_state": True,
            "groupings": {"group_by": [{"key": "room_id"}, {"key": "sender"}]},
        },
    )
    (hit,) = result["results"]
    ctx = hit["context"]
    assert [e["event_id"] for e in ctx["events_before"]] == [noise, first]
    assert [e["content"]["body"] for e in ctx["events_after"]] == ["after the second"]
    assert ctx["start"] and ctx["end"]
    assert set(ctx["profile_info"]) == {alice.user_id, bob.user_id}
    assert ctx["profile_info"][bob.user_id]["displayname"] == "bob"
    assert {e["type"] for e in result["state"][room]} >= {"m.room.create", "m.room.name"}
    assert result["groups"]["room_id"][room]["results"] == [second]
    assert result["groups"]["sender"][bob.user_id]["order"] == 1

    # The context's tokens page /messages.
    resp = await bob.room_messages(room, ctx["start"], limit=10)
    assert first not in [e.event_id for e in resp.chunk]


async def test_recent_order_walks_rooms_with_many_matches(server, monkeypatch):
    """Recent order over many matches walks the rooms holding a page of them from their
    newest rows (storage/search.py): paged through, it returns what reading every match
    returns, in the same order, whether a walk found its page (dense rooms) or gave up
    (sparse ones, read through the index instead)."""
    from storage import search

    alice = await server.client("alice")
    dense, sparse, few = [await _room(alice, name=n) for n in ("dense", "sparse", "few")]
    for i in range(8):
        await _send(alice, dense, f"orbit report {i}")
        if i % 2:
            await _send(alice, sparse, f"orbit sighting {i}")
        for k in range(3):
            await _send(alice, sparse, f"nothing {i} {k}")
    await _send(alice, few, "one orbit")
    # Two matches newer than all but one of the dense room's: a walk (3 rows for a page
    # of 3) finds the second only, and must not take the room as done.
    for body in ("late orbit", "nothing", "nothing", "later orbit", "nothing", "nothing"):
        await _send(alice, sparse, body)
    await _send(alice, dense, "the newest orbit")
    criteria = {"search_term": "orbit", "order_by": "recent", "filter": {"limit": 3}}

    async def paged() -> list[tuple[str, float]]:
        out, token = [], None
        for _ in range(20):
            page = await _search(server, alice, criteria, token)
            out += [(r["result"]["event_id"], r["rank"]) for r in page["results"]]
            assert page["count"] == 16
            token = page.get("next_batch")
            if token is None:
                return out
        raise AssertionError("no end of pages")

    read_all = await paged()
    assert len(read_all) == 16 and all(rank > 0 for _, rank in read_all)
    walks = []
    real_walk = search.SearchStore._walk

    async def counted_walk(self, *args):
        found = await real_walk(self, *args)
        walks.append({room: len(hits) for room, hits in found.items()})
        return found

    monkeypatch.setattr(search, "_WALK_ABOVE", 0)
    monkeypatch.setattr(search, "_WALK_ROWS_PER_MATCH", 1)  # 3 rows per room per page
    monkeypatch.setattr(search.SearchStore, "_walk", counted_walk)
    assert await paged() == read_all
    # The dense room's walks found their page; the sparse room's gave up at times.
    assert any(w.get(dense, 0) >= 3 for w in walks)
    assert any(w.get(sparse, 0) == 1 for w in walks)


async def test_filter_and_group_next_batch(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    room_a = await _room(alice, bob)
    room_b = await _room(alice, bob)
    a1 = await _send(alice, room_a, "budget draft one")
    b1 = await _send(bob, room_b, "budget draft two")
    a2 = await _send(bob, room_a, "budget draft three")
    term = {"search_term": "budget", "order_by": "recent"}

    assert _ids(await _search(server, alice, {**term, "filter": {"rooms": [room_a]}})) == [a2, a1]
    assert _ids(await _search(server, alice, {**term, "filter": {"not_rooms": [room_a]}})) == [b1]
    assert _ids(await _search(server, alice, {**term, "filter": {"senders": [bob.user_id]}})) == [
        a2,
        b1,
    ]
    assert _ids(
        await _search(server, alice, {**term, "filter": {"not_senders": [bob.user_id]}})
    ) == [a1]
    assert _ids(await _search(server, alice, {**term, "filter": {"types": ["m.room.name"]}})) == []

    # A group's next_batch continues within the group alone.
    page = await _search(
        server,
        alice,
        {**term, "filter": {"limit": 1}, "groupings": {"group_by": [{"key": "room_id"}]}},
    )
    assert _ids(page) == [a2]
    group_token = page["groups"]["room_id"][room_a]["next_batch"]
    rest = await _search(server, alice, {**term, "filter": {"limit": 5}}, group_token)
    assert _ids(rest) == [a1]


async def test_history_visibility_and_leaving(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    room = await _room(
        alice,
        initial_state=[
            {
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": "joined"},
            }
        ],
    )
    before = await _send(alice, room, "secret plans before bob")
    await alice.room_invite(room, bob.user_id)
    await bob.join(room)
    during = await _send(alice, room, "secret plans with bob")
    assert _ids(await _search(server, bob, {"search_term": "secret", "order_by": "recent"})) == [
        during
    ]
    await bob.room_leave(room)
    await _send(alice, room, "secret plans after bob")
    assert _ids(await _search(server, bob, {"search_term": "secret", "order_by": "recent"})) == [
        during
    ]
    everything = await _search(server, alice, {"search_term": "secret", "order_by": "recent"})
    assert before in _ids(everything) and len(_ids(everything)) == 3
    # A stranger finds nothing.
    carol = await server.client("carol")
    assert (await _search(server, carol, {"search_term": "secret"}))["results"] == []


async def test_encrypted_rooms_and_redactions_are_not_indexed(server):
    alice = await server.client("alice")
    plain = await _room(alice)
    kept = await _send(alice, plain, "quarterly report")
    gone = await _send(alice, plain, "quarterly mistake")
    await alice.room_redact(plain, gone)
    assert _ids(await _search(server, alice, {"search_term": "quarterly"})) == [kept]
    assert (
        await server.db.fetchval("SELECT count(*) FROM event_search WHERE event_id = $1", gone) == 0
    )

    encrypted = await _room(
        alice,
        initial_state=[
            {
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }
        ],
        name="quarterly encrypted",
    )
    # Even a plaintext message (a misbehaving client) in an encrypted room is not indexed.
    await _send(alice, encrypted, "quarterly plaintext")
    assert (
        await server.db.fetchval("SELECT count(*) FROM event_search WHERE room_id = $1", encrypted)
        == 0
    )

    # Turning encryption on later removes what the room had indexed.
    later = await _room(alice)
    await _send(alice, later, "quarterly before encryption")
    assert (
        await server.db.fetchval("SELECT count(*) FROM event_search WHERE room_id = $1", later) == 1
    )
    await alice.room_put_state(later, "m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2"})
    await _send(alice, later, "quarterly after encryption")
    assert (
        await server.db.fetchval("SELECT count(*) FROM event_search WHERE room_id = $1", later) == 0
    )
    assert _ids(await _search(server, alice, {"search_term": "quarterly"})) == [kept]


async def test_ignored_users_are_hidden_from_search(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    room = await _room(alice, bob)
    mine = await _send(alice, room, "lunch at noon")
    await _send(bob, room, "lunch is cancelled")
    status, _ = await server.request(
        "PUT",
        f"{V3}/user/{quote(alice.user_id)}/account_data/m.ignored_user_list",
        token=alice.access_token,
        json={"ignored_users": {bob.user_id: {}}},
    )
    assert status == 200
    result = await _search(server, alice, {"search_term": "lunch"})
    assert _ids(result) == [mine] and result["count"] == 1


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({}, "M_BAD_JSON"),
        ({"search_categories": []}, "M_BAD_JSON"),
        ({"search_categories": {"room_events": {}}}, "M_BAD_JSON"),
        ({"search_categories": {"room_events": {"search_term": 5}}}, "M_BAD_JSON"),
        (
            {"search_categories": {"room_events": {"search_term": "x", "order_by": "oldest"}}},
            "M_INVALID_PARAM",
        ),
        (
            {"search_categories": {"room_events": {"search_term": "x", "filter": {"rooms": "!a"}}}},
            "M_BAD_JSON",
        ),
        (
            {"search_categories": {"room_events": {"search_term": "x", "filter": {"limit": -1}}}},
            "M_BAD_JSON",
        ),
        (
            {"search_categories": {"room_events": {"search_term": "x", "filter": []}}},
            "M_BAD_JSON",
        ),
        (
            {"search_categories": {"room_events": {"search_term": "x", "keys": ["content.url"]}}},
            "M_INVALID_PARAM",
        ),
        (
            {
                "search_categories": {
                    "room_events": {"search_term": "x", "event_context": {"before_limit": "5"}}
                }
            },
            "M_BAD_JSON",
        ),
        (
            {
                "search_categories": {
                    "room_events": {
                        "search_term": "x",
                        "groupings": {"group_by": [{"key": "type"}]},
                    }
                }
            },
            "M_INVALID_PARAM",
        ),
    ],
)
async def test_bad_input_is_refused_and_changes_nothing(server, body, errcode):
    alice = await server.client("alice")
    room = await _room(alice)
    await _send(alice, room, "x marks the spot")
    rows = await _index_rows(server)
    status, answer = await server.request(
        "POST", f"{V3}/search", token=alice.access_token, json=body
    )
    assert (status, answer["errcode"]) == (400, errcode), answer
    assert await _index_rows(server) == rows


async def test_bad_next_batch_and_no_auth(server):
    alice = await server.client("alice")
    criteria = {"search_categories": {"room_events": {"search_term": "x"}}}
    for token in ("not-a-token", "e30"):  # garbage; base64 of {}
        status, body = await server.request(
            "POST", f"{V3}/search?next_batch={token}", token=alice.access_token, json=criteria
        )
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await server.request("POST", f"{V3}/search", json=criteria)
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")
    status, body = await server.request(
        "POST", f"{V3}/search", token=alice.access_token, data=b"{not json"
    )
    assert (status, body["errcode"]) == (400, "M_NOT_JSON")


async def test_search_language_is_checked_against_postgres(make_server):
    with pytest.raises(ConfigError, match="search.language"):
        await make_server(search={"language": "klingon"})


async def test_english_stems(make_server):
    server = await make_server(search={"language": "english"})
    alice = await server.client("alice")
    room = await _room(alice)
    hit = await _send(alice, room, "The martians were landing")
    result = await _search(server, alice, {"search_term": "martian lands"})
    assert _ids(result) == [hit]
    assert "martian" in result["highlights"]


async def test_text_index_pending_list_is_bounded(server):
    """Every search reads the text index's pending list in full: its size is capped
    (migration 1892) below PostgreSQL's 4 MB default."""
    options = await server.db.fetchval(
        "SELECT reloptions FROM pg_class WHERE relname = 'event_search_vector'"
    )
    assert "gin_pending_list_limit=256" in (options or [])
