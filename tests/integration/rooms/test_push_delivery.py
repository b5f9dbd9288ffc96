"""Notifications sent to push gateways and listed by GET /notifications: a real HTTP push
gateway (an aiohttp server on loopback standing in for Sygnal) records what it is sent;
matrix-nio clients talk in rooms."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from nio import JoinResponse, RoomCreateResponse, RoomSendResponse

V3 = "/_matrix/client/v3"
NOTIFY = "/_matrix/push/v1/notify"


class Gateway:
    """Records each notification; answers `rejected` for the pushkeys in `reject`."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[dict] = asyncio.Queue()
        self.reject: set[str] = set()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _notify(self, request: web.Request) -> web.Response:
        body = await request.json()
        await self.received.put(body["notification"])
        keys = {d["pushkey"] for d in body["notification"]["devices"]}
        return web.json_response({"rejected": sorted(keys & self.reject)})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(NOTIFY, self._notify)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}{NOTIFY}"

    async def next(self) -> dict:
        # Bounded so a missing delivery fails the test instead of hanging it.
        return await asyncio.wait_for(self.received.get(), 30)


@pytest.fixture
async def gateway():
    gw = Gateway()
    await gw.start()
    yield gw
    assert gw.runner is not None
    await gw.runner.cleanup()


async def _pusher(server, client, url: str, pushkey: str, **data) -> tuple[int, dict]:
    return await server.request(
        "POST",
        f"{V3}/pushers/set",
        token=client.access_token,
        json={
            "kind": "http",
            "app_id": "org.example.app",
            "pushkey": pushkey,
            "app_display_name": "App",
            "device_display_name": "Phone",
            "lang": "en",
            "data": {"url": url, **data},
        },
    )


async def _room_of_two(alice, bob) -> str:
    created = await alice.room_create(invite=[bob.user_id])
    assert isinstance(created, RoomCreateResponse), created
    joined = await bob.join(created.room_id)
    assert isinstance(joined, JoinResponse), joined
    return created.room_id


async def _say(client, room_id: str, text: str) -> str:
    resp = await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": text})
    assert isinstance(resp, RoomSendResponse), resp
    return resp.event_id


async def _pushed_for(gateway: Gateway, event_id: str) -> dict:
    """The gateway's notification of `event_id` (earlier ones, e.g. the invite, skipped)."""
    while True:
        notification = await gateway.next()
        if notification["event_id"] == event_id:
            return notification


async def test_message_is_pushed_and_listed(server, gateway):
    alice, bob = await server.client(), await server.client()
    await bob.set_displayname("Bob")
    status, body = await _pusher(server, alice, gateway.url, "key-1", format="full", extra="x")
    assert status == 200, body
    room_id = await _room_of_two(alice, bob)
    event_id = await _say(bob, room_id, "hello alice")

    pushed = await _pushed_for(gateway, event_id)
    assert pushed["room_id"] == room_id
    assert pushed["type"] == "m.room.message"
    assert pushed["sender"] == bob.user_id
    assert pushed["sender_display_name"] == "Bob"
    assert pushed["content"] == {"msgtype": "m.text", "body": "hello alice"}
    assert pushed["counts"]["unread"] >= 1
    [device] = pushed["devices"]
    assert device["app_id"] == "org.example.app" and device["pushkey"] == "key-1"
    # The gateway is not told its own URL or the format back.
    assert device["data"] == {"extra": "x"}
    assert device["tweaks"] == {"sound": "default"}

    status, body = await server.request("GET", f"{V3}/notifications", token=alice.access_token)
    assert status == 200, body
    [first, *_] = body["notifications"]
    assert first["event"]["event_id"] == event_id and first["room_id"] == room_id
    assert first["read"] is False and "profile_tag" in first
    assert "notify" in first["actions"]
    # Nothing of this highlights alice.
    status, body = await server.request(
        "GET", f"{V3}/notifications?only=highlight", token=alice.access_token
    )
    assert status == 200 and body["notifications"] == []
    # Read up to it: listed as read.
    resp = await alice.room_read_markers(room_id, event_id, event_id)
    status, body = await server.request("GET", f"{V3}/notifications", token=alice.access_token)
    assert status == 200 and body["notifications"][0]["read"] is True, resp
    # Bob, the sender, has nothing.
    status, body = await server.request("GET", f"{V3}/notifications", token=bob.access_token)
    assert status == 200 and all(n["event"]["event_id"] != event_id for n in body["notifications"])


async def test_event_id_only_format_leaves_the_event_out(server, gateway):
    alice, bob = await server.client(), await server.client()
    status, body = await _pusher(server, alice, gateway.url, "key-2", format="event_id_only")
    assert status == 200, body
    room_id = await _room_of_two(alice, bob)
    event_id = await _say(bob, room_id, "secret words")
    pushed = await _pushed_for(gateway, event_id)
    assert pushed["room_id"] == room_id
    assert "content" not in pushed and "sender" not in pushed and "type" not in pushed
    assert pushed["devices"][0]["pushkey"] == "key-2"


async def test_rejected_pushkey_deletes_the_pusher(server, gateway):
    alice, bob = await server.client(), await server.client()
    gateway.reject.add("stale-key")
    status, body = await _pusher(server, alice, gateway.url, "stale-key")
    assert status == 200, body
    room_id = await _room_of_two(alice, bob)
    event_id = await _say(bob, room_id, "anyone there?")
    await _pushed_for(gateway, event_id)
    # Deleted once the answer is handled: wait for the pusher list to empty (bounded).
    for _ in range(300):
        status, body = await server.request("GET", f"{V3}/pushers", token=alice.access_token)
        if body["pushers"] == []:
            break
        await asyncio.sleep(0.05)
    assert status == 200 and body["pushers"] == []


async def test_only_allowed_gateways_and_bad_tokens(make_server, gateway):
    allowed = gateway.url.rsplit("/_matrix", 1)[0] + "/"
    server = await make_server(push={"allowed_gateways": [allowed]})
    alice = await server.client()
    status, body = await _pusher(server, alice, "http://127.0.0.2:9/_matrix/push/v1/notify", "k")
    assert status == 403 and body["errcode"] == "M_FORBIDDEN", body
    status, body = await server.request("GET", f"{V3}/pushers", token=alice.access_token)
    assert status == 200 and body["pushers"] == []
    status, body = await _pusher(server, alice, gateway.url, "k")
    assert status == 200, body
    status, body = await server.request("GET", f"{V3}/pushers", token=alice.access_token)
    assert [p["pushkey"] for p in body["pushers"]] == ["k"]

    status, body = await server.request(
        "GET", f"{V3}/notifications?from=nonsense", token=alice.access_token
    )
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM", body
    status, body = await server.request(
        "GET", f"{V3}/notifications?limit=-1", token=alice.access_token
    )
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM", body


async def test_read_receipt_sends_the_lowered_badge(server, gateway):
    alice, bob = await server.client(), await server.client()
    status, body = await _pusher(server, alice, gateway.url, "key-3")
    assert status == 200, body
    room_id = await _room_of_two(alice, bob)
    event_id = await _say(bob, room_id, "read me")
    pushed = await _pushed_for(gateway, event_id)
    assert pushed["counts"]["unread"] >= 1
    await alice.room_read_markers(room_id, event_id, event_id)
    while True:
        badge = await gateway.next()
        if "event_id" not in badge:
            break
    assert badge["counts"] == {"unread": 0}
    assert badge["devices"][0]["pushkey"] == "key-3"


async def test_room_without_name_is_named_by_its_alias(server, gateway):
    alice, bob = await server.client(), await server.client()
    status, body = await _pusher(server, alice, gateway.url, "key-4")
    assert status == 200, body
    created = await bob.room_create(alias="pushhall", invite=[alice.user_id])
    assert isinstance(created, RoomCreateResponse), created
    assert isinstance(await alice.join(created.room_id), JoinResponse)
    event_id = await _say(bob, created.room_id, "in the hall")
    pushed = await _pushed_for(gateway, event_id)
    alias = f"#pushhall:{server.server_name}"
    assert pushed["room_alias"] == alias and pushed["room_name"] == alias


async def _notified_of(server, client, event_id: str) -> None:
    """Waits (bounded) until the push worker has stored `event_id`'s notification for
    `client`: it works through the events stream in order, so everything before is done."""
    for _ in range(300):
        status, body = await server.request("GET", f"{V3}/notifications", token=client.access_token)
        assert status == 200, body
        if any(n["event"]["event_id"] == event_id for n in body["notifications"]):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the push worker never reached the event")


def _evaluations() -> float:
    from homeserver.metrics import REGISTRY

    value = REGISTRY.get_sample_value("matrix_push_rule_evaluations_total")
    assert value is not None
    return value


async def test_membership_changes_are_evaluated_for_their_target_only(server):
    """A join or invite is evaluated for the user it concerns, a message for every other
    local member: filling a large room must not cost members x joins evaluations."""
    alice, bob, carol, dave = [await server.client() for _ in range(4)]
    created = await alice.room_create(invite=[bob.user_id, carol.user_id])
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id
    for member in (bob, carol):
        assert isinstance(await member.join(room_id), JoinResponse)
    await _notified_of(server, bob, await _say(alice, room_id, "settled"))
    before = _evaluations()

    invited = await alice.room_invite(room_id, dave.user_id)
    assert not hasattr(invited, "status_code"), invited
    assert isinstance(await dave.join(room_id), JoinResponse)
    message = await _say(alice, room_id, "welcome dave")
    await _notified_of(server, bob, message)
    await _notified_of(server, dave, message)

    # The invite: dave alone; dave's own join: no one (the sender is not notified of
    # their own event); the message: bob, carol and dave. Evaluating memberships for
    # every member would have made it 3 + 3 + 3.
    assert _evaluations() - before == 1 + 0 + 3
