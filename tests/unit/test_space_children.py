"""Which m.space.child links count and in what order (homeserver/spaces/summary.py), with
the spec's own example ("Ordering of children within a space")."""

from __future__ import annotations

from homeserver.spaces.summary import children_of, user_may_see


def _child(room: str, ts: int, **content) -> dict:
    return {
        "type": "m.space.child",
        "state_key": room,
        "sender": "@alice:example.org",
        "origin_server_ts": ts,
        "content": {"via": ["example.org"], **content},
    }


def test_the_spec_example_order():
    children = [
        _child("!b:example.org", 1640341000000, order=" "),
        _child("!a:example.org", 1640141000000, order="aaaa"),
        _child("!c:example.org", 1640841000000, order="first"),
        _child("!e:example.org", 1640641000000),
        _child("!d:example.org", 1640741000000),
    ]
    ordered = [c["state_key"] for c in children_of(reversed(children), suggested_only=False)]
    assert ordered == [
        "!b:example.org",
        "!a:example.org",
        "!c:example.org",
        "!e:example.org",
        "!d:example.org",
    ]


def test_invalid_orders_ties_and_void_links():
    children = [
        _child("!long:x", 5, order="a" * 51),  # too long: ordered as if it had none
        _child("!ctrl:x", 5, order="\x19"),  # outside \x20-\x7E
        _child("!num:x", 1, order=3),  # not a string
        _child("!z:x", 2, order="m"),
        _child("!y:x", 1, order="m"),  # same order: the older event first
        _child("!tie2:x", 9),
        _child("!tie1:x", 9),  # same timestamp: by room ID
        {**_child("!void:x", 0), "content": {}},  # no via: removed from the space
        {**_child("!badvia:x", 0), "content": {"via": "example.org"}},
        {**_child("!emptyvia:x", 0), "content": {"via": []}},
    ]
    ordered = [c["state_key"] for c in children_of(children, suggested_only=False)]
    assert ordered == ["!y:x", "!z:x", "!num:x", "!ctrl:x", "!long:x", "!tie1:x", "!tie2:x"]
    suggested = [_child("!s:x", 1, suggested=True), _child("!n:x", 0, suggested="yes")]
    assert [c["state_key"] for c in children_of(suggested, suggested_only=True)] == ["!s:x"]


def test_who_sees_a_room():
    public = {"join_rule": "public", "world_readable": False}
    invite = {"join_rule": "invite", "world_readable": False}
    readable = {"join_rule": "invite", "world_readable": True}
    restricted = {"join_rule": "restricted", "world_readable": False, "allowed_room_ids": ["!a"]}
    knock = {"join_rule": "knock_restricted", "world_readable": False, "allowed_room_ids": []}
    assert user_may_see(public, None, set()) and user_may_see(readable, "leave", set())
    assert user_may_see(knock, None, set())
    assert not user_may_see(invite, None, set()) and not user_may_see(invite, "leave", set())
    assert user_may_see(invite, "invite", set()) and user_may_see(invite, "join", set())
    assert not user_may_see(public, "ban", set())
    assert not user_may_see(restricted, None, {"!b"}) and user_may_see(restricted, None, {"!a"})
