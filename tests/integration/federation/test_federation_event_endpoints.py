"""The room event endpoints over the wire: event, state, state_ids, event_auth, backfill,
get_missing_events. Requests are signed by the asking server's real client; answers are
checked against the spec's OpenAPI schemas."""

from __future__ import annotations

import ssl
from urllib.parse import quote

import aiohttp
import pytest
from yarl import URL

from federation.client import FederationError
from federation.request_auth import authorization_header
from federation.state import auth_chain_ids
from homeserver.events.hashing import compute_event_id
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from tests.federation_rooms import shared_room
from tests.schema import assert_matches_schema

V1 = "/_matrix/federation/v1"
RV = KNOWN_ROOM_VERSIONS["12"]


@pytest.fixture
async def room(make_server, ca):
    return await shared_room(make_server, ca)


def q(value: str) -> str:
    return quote(value, safe="")


async def ask(asker, answerer, path: str, query=None, body=None):
    client = asker.hs.federation.client
    if body is not None:
        return await client.post_json(answerer.server_name, V1 + path, body, query=query)
    return await client.get_json(answerer.server_name, V1 + path, query=query)


async def refused(asker, answerer, path, query=None, body=None) -> tuple[int, str]:
    with pytest.raises(FederationError) as err:
        await ask(asker, answerer, path, query, body)
    return err.value.status, err.value.errcode


def ids_of(pdus: list[dict]) -> list[str]:
    return [compute_event_id(p, RV) for p in pdus]


async def test_event_state_and_auth_chain(room):
    hs1, hs2 = room.hs1, room.hs2
    msg = await room.say(room.alice, "hello")
    stored = await hs1.hs.event_store.get_event(msg)

    answer = await ask(hs2, hs1, f"/event/{q(msg)}")
    assert_matches_schema("server-server/events.yaml", "/event/{eventId}", "get", 200, answer)
    assert answer["origin"] == hs1.server_name
    assert answer["pdus"] == [stored.event]

    state = (await hs1.hs.event_store.state_groups([stored.state_group_before]))[
        stored.state_group_before
    ]
    chain = await auth_chain_ids(hs1.hs, state.values())
    answer = await ask(hs2, hs1, f"/state_ids/{q(room.room_id)}", {"event_id": msg})
    assert_matches_schema("server-server/events.yaml", "/state_ids/{roomId}", "get", 200, answer)
    assert set(answer["pdu_ids"]) == set(state.values())
    assert set(answer["auth_chain_ids"]) == chain
    # (v12: the create event is never an auth event, so it is not in the chain.)
    assert state[("m.room.member", room.alice.user_id)] in chain

    answer = await ask(hs2, hs1, f"/state/{q(room.room_id)}", {"event_id": msg})
    assert_matches_schema("server-server/events.yaml", "/state/{roomId}", "get", 200, answer)
    assert set(ids_of(answer["pdus"])) == set(state.values())
    assert set(ids_of(answer["auth_chain"])) == chain

    answer = await ask(hs2, hs1, f"/event_auth/{q(room.room_id)}/{q(msg)}")
    assert_matches_schema(
        "server-server/event_auth.yaml", "/event_auth/{roomId}/{eventId}", "get", 200, answer
    )
    assert set(ids_of(answer["auth_chain"])) == await auth_chain_ids(hs1.hs, [msg])


async def test_backfill_and_get_missing_events_walk_the_dag(room):
    hs1, hs2 = room.hs1, room.hs2
    m = [await room.say(room.alice, f"m{i}") for i in range(6)]

    answer = await ask(hs2, hs1, f"/backfill/{q(room.room_id)}", {"v": [m[5]], "limit": "3"})
    assert_matches_schema("server-server/backfill.yaml", "/backfill/{roomId}", "get", 200, answer)
    assert ids_of(answer["pdus"]) == [m[5], m[4], m[3]]

    body = {"earliest_events": [m[1]], "latest_events": [m[5]], "limit": 10}
    answer = await ask(hs2, hs1, f"/get_missing_events/{q(room.room_id)}", body=body)
    assert_matches_schema(
        "server-server/backfill.yaml", "/get_missing_events/{roomId}", "post", 200, answer
    )
    assert ids_of(answer["events"]) == [m[2], m[3], m[4]]
    depth = (await hs1.hs.event_store.get_event(m[4])).event["depth"]
    body["min_depth"] = depth
    answer = await ask(hs2, hs1, f"/get_missing_events/{q(room.room_id)}", body=body)
    assert ids_of(answer["events"]) == [m[4]]


async def test_a_server_outside_the_room_gets_nothing(room):
    hs1, hs3 = room.hs1, room.hs3
    msg = await room.say(room.alice, "members only")
    rid = q(room.room_id)
    forbidden = (403, "M_FORBIDDEN")
    assert await refused(hs3, hs1, f"/state_ids/{rid}", {"event_id": msg}) == forbidden
    assert await refused(hs3, hs1, f"/state/{rid}", {"event_id": msg}) == forbidden
    assert await refused(hs3, hs1, f"/event_auth/{rid}/{q(msg)}") == forbidden
    assert await refused(hs3, hs1, f"/backfill/{rid}", {"v": [msg], "limit": "5"}) == forbidden
    body = {"earliest_events": [], "latest_events": [msg]}
    assert await refused(hs3, hs1, f"/get_missing_events/{rid}", body=body) == forbidden
    # Not even whether the event exists.
    assert await refused(hs3, hs1, f"/event/{q(msg)}") == (404, "M_NOT_FOUND")
    # An unknown room looks the same as one we will not show.
    assert await refused(hs3, hs1, f"/backfill/{q('!nope:hs1')}", {"v": ["$x"], "limit": "1"}) == (
        forbidden
    )


async def test_server_acl_closes_the_room_endpoints(room):
    hs1, hs2 = room.hs1, room.hs2
    msg = await room.say(room.alice, "before the ACL")
    acl = {"allow": ["*"], "deny": ["hs2.test.local"]}
    await room.alice.room_put_state(room.room_id, "m.room.server_acl", acl)
    rid = q(room.room_id)
    status, errcode = await refused(hs2, hs1, f"/state_ids/{rid}", {"event_id": msg})
    assert (status, errcode) == (403, "M_FORBIDDEN")
    assert await refused(hs2, hs1, f"/backfill/{rid}", {"v": [msg], "limit": "5"}) == (
        403,
        "M_FORBIDDEN",
    )
    # Even a request with an empty body (SyTest's) meets the ACL, not a body error.
    assert await refused(hs2, hs1, f"/get_missing_events/{rid}", body={}) == (403, "M_FORBIDDEN")


async def test_history_visibility_redacts_what_the_server_may_not_see(make_server, ca):
    secret: list[str] = []

    async def before_join(room):
        secret.append(await room.say(room.alice, "said before hs2 was here"))

    hv = {"type": "m.room.history_visibility", "state_key": "", "content": {}}
    hv["content"]["history_visibility"] = "joined"
    room = await shared_room(make_server, ca, initial_state=[hv], before_join=before_join)
    after = await room.say(room.alice, "said after Bob joined")
    answer = await ask(
        room.hs2, room.hs1, f"/backfill/{q(room.room_id)}", {"v": [after], "limit": "20"}
    )
    by_id = dict(zip(ids_of(answer["pdus"]), answer["pdus"], strict=True))
    assert by_id[after]["content"]["body"] == "said after Bob joined"
    assert by_id[secret[0]]["content"] == {}  # redacted, still hashed and signed
    assert by_id[secret[0]]["signatures"] and by_id[secret[0]]["hashes"]
    join = (await room.state(room.hs1))[("m.room.member", room.bob.user_id)]
    assert by_id[join]["content"]["membership"] == "join"
    answer = await ask(room.hs2, room.hs1, f"/event/{q(secret[0])}")
    assert answer["pdus"][0]["content"] == {}
    # A world-readable room shows everything, also from before the server joined.
    await room.alice.room_put_state(
        room.room_id, "m.room.history_visibility", {"history_visibility": "world_readable"}
    )
    later = await room.say(room.alice, "readable")
    answer = await ask(room.hs2, room.hs1, f"/event/{q(later)}")
    assert answer["pdus"][0]["content"]["body"] == "readable"


async def test_bad_requests_get_matrix_errors(room):
    hs1, hs2 = room.hs1, room.hs2
    msg = await room.say(room.alice, "x")
    rid = q(room.room_id)
    assert await refused(hs2, hs1, f"/backfill/{rid}", {"limit": "5"}) == (400, "M_MISSING_PARAM")
    assert await refused(hs2, hs1, f"/backfill/{rid}", {"v": [msg]}) == (400, "M_MISSING_PARAM")
    assert await refused(hs2, hs1, f"/backfill/{rid}", {"v": [msg], "limit": "many"}) == (
        400,
        "M_INVALID_PARAM",
    )
    assert await refused(hs2, hs1, f"/state_ids/{rid}") == (400, "M_MISSING_PARAM")
    assert await refused(hs2, hs1, f"/state_ids/{rid}", {"event_id": "$unknown"}) == (
        404,
        "M_NOT_FOUND",
    )
    assert await refused(hs2, hs1, f"/event/{q('$unknown')}") == (404, "M_NOT_FOUND")
    gme = f"/get_missing_events/{rid}"
    # Absent lists are empty ones (as Synapse reads them): nothing is missing.
    assert await ask(hs2, hs1, gme, body={"earliest_events": []}) == {"events": []}
    assert await ask(hs2, hs1, gme, body={}) == {"events": []}
    assert await refused(
        hs2, hs1, gme, body={"earliest_events": [], "latest_events": "not a list"}
    ) == (400, "M_BAD_JSON")
    assert await refused(
        hs2, hs1, gme, body={"earliest_events": [], "latest_events": [msg], "limit": "5"}
    ) == (400, "M_BAD_JSON")
    assert await refused(hs2, hs1, gme, body=["not", "an", "object"]) == (400, "M_BAD_JSON")

    # Unsigned, or signed over something else, or not JSON: refused before anything else.
    ctx = ssl.create_default_context(cafile=str(room.hs1.hs.config.federation.ca_bundle))
    url = hs1.federation_url.rstrip("/") + V1 + gme

    async def raw(headers, data):
        async with aiohttp.ClientSession() as http:
            async with http.post(
                URL(url, encoded=True),
                headers=headers,
                data=data,
                ssl=ctx,
                server_hostname="hs1.test.local",
            ) as resp:
                return resp.status, (await resp.json(content_type=None))["errcode"]

    assert await raw({}, b"{}") == (401, "M_UNAUTHORIZED")
    header = authorization_header(
        hs2.hs.signing_key, hs2.server_name, hs1.server_name, "POST", V1 + gme, {"other": 1}
    )
    assert await raw({"Authorization": header}, b"{}") == (401, "M_UNAUTHORIZED")
    assert await raw({"Authorization": header}, b"{not json") == (400, "M_NOT_JSON")
