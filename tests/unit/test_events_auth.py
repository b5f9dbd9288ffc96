"""Authorisation rules per room version family (v1, v6, v10, v12 and friends)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json

from homeserver.events.auth import (
    AuthError,
    auth_types_for_event,
    check_auth,
    check_auth_events_list,
    get_power_level,
    get_required_level,
)
from homeserver.events.hashing import compute_event_id, room_id_from_create_event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS

V = KNOWN_ROOM_VERSIONS
ALL_VERSIONS = sorted(KNOWN_ROOM_VERSIONS, key=int)
FAMILIES = ["1", "6", "10", "12"]

ALICE = "@alice:a.test"  # the creator
MOD = "@mod:b.test"  # power 50
BOB = "@bob:b.test"  # power 0
CAROL = "@carol:c.test"  # not in the room


class Room:
    """A room's state built event by event, each event checked as it is added."""

    def __init__(self, version: str, create_content: dict[str, Any] | None = None):
        self.rv = V[version]
        self._counter = 0
        content = {"room_version": version, **(create_content or {})}
        if not self.rv.v11_redactions_and_creator:
            content.setdefault("creator", ALICE)
        create: dict[str, Any] = {
            "type": "m.room.create",
            "state_key": "",
            "sender": ALICE,
            "content": content,
            "origin_server_ts": 0,
            "depth": 1,
            "prev_events": [],
            "auth_events": [],
            "hashes": {"sha256": "x"},
        }
        if self.rv.room_id_is_create_event_hash:
            self.room_id = room_id_from_create_event(create, self.rv)
        else:
            self.room_id = "!room:a.test"
            create["room_id"] = self.room_id
        if self.rv.event_ids_carry_domain:
            create["event_id"] = "$create:a.test"
        check_auth(self.rv, create, {})
        self.create = create
        self.state: dict[tuple[str, str], dict[str, Any]] = {}
        if not self.rv.room_id_is_create_event_hash:
            self.state[("m.room.create", "")] = create

    def event(self, event_type, sender, content, state_key=None, **extra) -> dict[str, Any]:
        self._counter += 1
        event = {
            "type": event_type,
            "room_id": self.room_id,
            "sender": sender,
            "content": content,
            "origin_server_ts": self._counter,
            "depth": self._counter + 1,
            "prev_events": ["$prev"],
            "auth_events": [],
            "hashes": {"sha256": "x"},
            **extra,
        }
        if state_key is not None:
            event["state_key"] = state_key
        if self.rv.event_ids_carry_domain:
            event.setdefault("event_id", f"${self._counter}:{sender.split(':')[1]}")
        return event

    def member(self, sender, target, membership, **content) -> dict[str, Any]:
        return self.event("m.room.member", sender, {"membership": membership, **content}, target)

    def check(self, event, **kwargs) -> None:
        create = self.create if self.rv.room_id_is_create_event_hash else None
        check_auth(self.rv, event, self.state, create, **kwargs)

    def allowed(self, event, **kwargs) -> bool:
        try:
            self.check(event, **kwargs)
        except AuthError:
            return False
        return True

    def apply(self, event, **kwargs) -> None:
        self.check(event, **kwargs)
        if "state_key" in event:
            self.state[(event["type"], event["state_key"])] = event

    def power(self, user) -> int | float:
        create = self.create if self.rv.room_id_is_create_event_hash else None
        return get_power_level(self.rv, user, self.state, create)


def creator_join(room: Room) -> dict[str, Any]:
    create_id = (
        room.create["event_id"]
        if room.rv.event_ids_carry_domain
        else compute_event_id(room.create, room.rv)
    )
    prev: Any = [create_id, {}] if room.rv.event_ids_carry_domain else create_id
    return room.member(ALICE, ALICE, "join") | {"prev_events": [prev]}


def power_levels_content(room: Room, **overrides) -> dict[str, Any]:
    users = {MOD: 50}
    if not room.rv.creators_have_infinite_power:
        users[ALICE] = 100
    return {
        "users": users,
        "users_default": 0,
        "events": {"m.room.power_levels": 100, "m.room.name": 50},
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 0,
        **overrides,
    }


def make_room(version: str, join_rule: str = "public", **pl_overrides) -> Room:
    """Alice creates and joins; power levels; join rule; Mod and Bob join."""
    room = Room(version)
    room.apply(creator_join(room))
    room.apply(
        room.event("m.room.power_levels", ALICE, power_levels_content(room, **pl_overrides), "")
    )
    room.apply(room.event("m.room.join_rules", ALICE, {"join_rule": "public"}, ""))
    room.apply(room.member(MOD, MOD, "join"))
    room.apply(room.member(BOB, BOB, "join"))
    room.apply(room.event("m.room.join_rules", ALICE, {"join_rule": join_rule}, ""))
    return room


# ------------------------------------------------------------------- create event


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_create_with_prev_events_rejected(version):
    room = Room(version)
    bad = {**room.create, "prev_events": ["$x"]}
    with pytest.raises(AuthError):
        check_auth(room.rv, bad, {})


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_create_with_unknown_room_version_rejected(version):
    room = Room(version)
    bad = {**room.create, "content": {**room.create["content"], "room_version": "999"}}
    with pytest.raises(AuthError, match="room version"):
        check_auth(room.rv, bad, {})


@pytest.mark.parametrize(("version", "needs_creator"), [("1", True), ("10", True), ("11", False)])
def test_create_creator_property_required_before_v11(version, needs_creator):
    room = Room(version)
    content = {k: v for k, v in room.create["content"].items() if k != "creator"}
    event = {**room.create, "content": content}
    if needs_creator:
        with pytest.raises(AuthError, match="creator"):
            check_auth(room.rv, event, {})
    else:
        check_auth(room.rv, event, {})


@pytest.mark.parametrize("version", ["1", "6", "11"])
def test_create_room_id_domain_must_match_sender(version):
    room = Room(version)
    with pytest.raises(AuthError):
        check_auth(room.rv, {**room.create, "room_id": "!room:evil.test"}, {})


def test_v12_create_must_not_have_room_id():
    room = Room("12")
    with pytest.raises(AuthError, match="room_id"):
        check_auth(room.rv, {**room.create, "room_id": room.room_id}, {})


@pytest.mark.parametrize(
    ("additional", "ok"),
    [([MOD], True), ([MOD, BOB], True), (["not-a-user"], False), ("@mod:b.test", False)],
)
def test_v12_additional_creators_must_be_user_ids(additional, ok):
    rv = V["12"]
    room = Room("12")
    event = {**room.create, "content": {"room_version": "12", "additional_creators": additional}}
    if ok:
        check_auth(rv, event, {})
    else:
        with pytest.raises(AuthError, match="additional_creators"):
            check_auth(rv, event, {})


def test_v12_event_must_use_room_id_derived_from_create():
    room = make_room("12")
    event = room.event("m.room.message", BOB, {"body": "hi"})
    room.check(event)
    with pytest.raises(AuthError, match="room_id"):
        room.check({**event, "room_id": "!other"})
    with pytest.raises(AuthError, match="create"):
        check_auth(room.rv, event, room.state)  # v12 needs create_event passed in


@pytest.mark.parametrize("version", ["1", "11"])
def test_missing_create_event_rejected(version):
    room = make_room(version)
    state = {k: v for k, v in room.state.items() if k[0] != "m.room.create"}
    with pytest.raises(AuthError, match="create"):
        check_auth(room.rv, room.event("m.room.message", BOB, {}), state)
    # ...but the create event may also be passed explicitly in any version.
    check_auth(room.rv, room.event("m.room.message", BOB, {}), state, room.create)


# ------------------------------------------------------------------------ joining


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_creator_joins_right_after_create(version):
    room = Room(version)
    room.check(creator_join(room))
    # Someone else cannot join a room without join rules (the default is invite).
    with pytest.raises(AuthError):
        room.check(
            room.member(BOB, BOB, "join") | {"prev_events": creator_join(room)["prev_events"]}
        )


def test_v12_additional_creator_does_not_use_the_creator_join_shortcut():
    room = Room("12", {"additional_creators": [MOD]})
    join = creator_join(room)
    room.check(join)
    with pytest.raises(AuthError):
        room.check(room.member(MOD, MOD, "join") | {"prev_events": join["prev_events"]})


@pytest.mark.parametrize("version", FAMILIES)
def test_join_public_and_invite_rules(version):
    room = make_room(version, join_rule="public")
    assert room.allowed(room.member(CAROL, CAROL, "join"))
    assert not room.allowed(room.member(BOB, CAROL, "join")), "cannot join someone else"
    room = make_room(version, join_rule="invite")
    assert not room.allowed(room.member(CAROL, CAROL, "join"))
    room.apply(room.member(BOB, CAROL, "invite"))
    assert room.allowed(room.member(CAROL, CAROL, "join"))


@pytest.mark.parametrize("version", FAMILIES)
def test_banned_user_cannot_join(version):
    room = make_room(version)
    room.apply(room.member(MOD, CAROL, "ban"))
    assert not room.allowed(room.member(CAROL, CAROL, "join"))


@pytest.mark.parametrize("version", ["1", "6", "11", "12"])
def test_m_federate_false_keeps_other_servers_out(version):
    room = Room(version, {"m.federate": False})
    room.apply(creator_join(room))
    room.apply(room.event("m.room.join_rules", ALICE, {"join_rule": "public"}, ""))
    assert not room.allowed(room.member(BOB, BOB, "join"))
    assert room.allowed(room.member("@ann:a.test", "@ann:a.test", "join"))


# ---------------------------------------------------------------- sending events


@pytest.mark.parametrize("version", FAMILIES)
def test_non_member_cannot_send(version):
    room = make_room(version)
    assert room.allowed(room.event("m.room.message", BOB, {"body": "hi"}))
    assert not room.allowed(room.event("m.room.message", CAROL, {"body": "hi"}))
    room.apply(room.member(BOB, BOB, "leave"))
    assert not room.allowed(room.event("m.room.message", BOB, {"body": "hi"}))


@pytest.mark.parametrize("version", FAMILIES)
def test_required_power_level_for_state_and_events(version):
    room = make_room(version)
    assert not room.allowed(room.event("m.room.topic", BOB, {"topic": "x"}, ""))  # state 50
    assert room.allowed(room.event("m.room.topic", MOD, {"topic": "x"}, ""))
    assert room.allowed(room.event("m.room.name", MOD, {"name": "x"}, ""))  # events: 50
    assert not room.allowed(room.event("m.room.power_levels", MOD, {}, ""))  # events: 100


@pytest.mark.parametrize("version", FAMILIES)
def test_state_key_that_is_another_user_rejected(version):
    room = make_room(version)
    assert room.allowed(room.event("org.example.mine", MOD, {}, MOD))
    assert not room.allowed(room.event("org.example.mine", MOD, {}, BOB))


@pytest.mark.parametrize("version", FAMILIES)
def test_third_party_invite_event_needs_invite_level(version):
    room = make_room(version, invite=50)
    event = room.event("m.room.third_party_invite", BOB, {"public_key": "x"}, "tok")
    assert not room.allowed(event)
    assert room.allowed({**event, "sender": MOD})


# ------------------------------------------------------------- membership changes


@pytest.mark.parametrize("version", FAMILIES)
def test_invite_needs_invite_level_and_membership(version):
    room = make_room(version, invite=50)
    assert not room.allowed(room.member(BOB, CAROL, "invite"))
    assert room.allowed(room.member(MOD, CAROL, "invite"))
    assert not room.allowed(room.member(MOD, BOB, "invite")), "already joined"
    assert not room.allowed(room.member(CAROL, "@d:c.test", "invite")), "not in room"


@pytest.mark.parametrize("version", FAMILIES)
def test_kick_needs_kick_level_and_higher_power(version):
    room = make_room(version)
    assert room.allowed(room.member(MOD, BOB, "leave"))
    assert not room.allowed(room.member(BOB, MOD, "leave"))
    room.apply(room.member(MOD, "@mod2:b.test", "invite"))
    room.apply(room.member("@mod2:b.test", "@mod2:b.test", "join"))
    levels = power_levels_content(room)
    levels["users"]["@mod2:b.test"] = 50
    room.apply(room.event("m.room.power_levels", ALICE, levels, ""))
    assert not room.allowed(room.member(MOD, "@mod2:b.test", "leave")), "equal power"
    assert room.allowed(room.member(ALICE, MOD, "leave"))


@pytest.mark.parametrize("version", FAMILIES)
def test_ban_and_unban(version):
    room = make_room(version, kick=0)
    assert not room.allowed(room.member(BOB, CAROL, "ban"))
    room.apply(room.member(MOD, CAROL, "ban"))
    # Bob can kick (kick level 0) but not unban (ban level 50).
    assert not room.allowed(room.member(BOB, CAROL, "leave"))
    assert room.allowed(room.member(MOD, CAROL, "leave"))
    assert not room.allowed(room.member(CAROL, CAROL, "leave")), "banned users cannot leave"


@pytest.mark.parametrize("version", FAMILIES)
def test_leave_self_only_from_invite_or_join(version):
    room = make_room(version)
    assert room.allowed(room.member(BOB, BOB, "leave"))
    assert not room.allowed(room.member(CAROL, CAROL, "leave"))
    room.apply(room.member(BOB, CAROL, "invite"))
    assert room.allowed(room.member(CAROL, CAROL, "leave")), "rejecting an invite"


@pytest.mark.parametrize("version", FAMILIES)
def test_unknown_membership_rejected(version):
    room = make_room(version)
    assert not room.allowed(room.member(BOB, BOB, "dance"))
    assert not room.allowed(room.event("m.room.member", BOB, {}, BOB)), "no membership"


@pytest.mark.parametrize(
    ("version", "join_rule", "ok"),
    [
        ("6", "knock", False),
        ("7", "knock", True),
        ("7", "public", False),
        ("9", "knock_restricted", False),
        ("10", "knock_restricted", True),
        ("12", "knock", True),
    ],
)
def test_knock_only_from_v7_and_knock_restricted_from_v10(version, join_rule, ok):
    room = make_room(version, join_rule=join_rule)
    assert room.allowed(room.member(CAROL, CAROL, "knock")) is ok


def test_knock_rules():
    room = make_room("7", join_rule="knock")
    assert not room.allowed(room.member(BOB, CAROL, "knock")), "only for oneself"
    assert not room.allowed(room.member(BOB, BOB, "knock")), "already joined"
    room.apply(room.member(CAROL, CAROL, "knock"))
    assert room.allowed(room.member(CAROL, CAROL, "leave")), "retracting a knock"
    assert not room.allowed(room.member(CAROL, CAROL, "join")), "knock is not an invite"
    room.apply(room.member(BOB, CAROL, "invite"))
    assert room.allowed(room.member(CAROL, CAROL, "join"))


def test_leaving_a_knock_needs_v7():
    # In v6 a knock membership can't exist, so self-leave from it is not allowed.
    room = make_room("6")
    room.state[("m.room.member", CAROL)] = room.member(CAROL, CAROL, "knock")
    assert not room.allowed(room.member(CAROL, CAROL, "leave"))


# ----------------------------------------------------------------- restricted joins


@pytest.mark.parametrize("version", ["8", "9", "10", "12"])
def test_restricted_join_needs_an_authorising_member(version):
    room = make_room(version, join_rule="restricted", invite=50)
    assert not room.allowed(room.member(CAROL, CAROL, "join"))
    via = {"join_authorised_via_users_server": MOD}
    assert room.allowed(room.member(CAROL, CAROL, "join", **via))
    # Bob is joined but below the invite level; Dave is not joined.
    assert not room.allowed(room.member(CAROL, CAROL, "join", join_authorised_via_users_server=BOB))
    assert not room.allowed(
        room.member(CAROL, CAROL, "join", join_authorised_via_users_server="@dave:b.test")
    )
    # The authorising server's signature is checked when a checker is given.
    calls = []

    def verify(event, server_name):
        calls.append(server_name)
        return server_name == "b.test"

    assert room.allowed(room.member(CAROL, CAROL, "join", **via), verify_signature=verify)
    assert calls == ["b.test"]
    assert not room.allowed(
        room.member(CAROL, CAROL, "join", **via), verify_signature=lambda e, s: False
    )
    # Invited users join without an authoriser.
    room.apply(room.member(MOD, CAROL, "invite"))
    assert room.allowed(room.member(CAROL, CAROL, "join"))


def test_restricted_join_rule_unknown_before_v8():
    room = make_room("7", join_rule="restricted")
    assert not room.allowed(room.member(CAROL, CAROL, "join", join_authorised_via_users_server=MOD))


def test_knock_restricted_allows_restricted_join_from_v10():
    via = {"join_authorised_via_users_server": MOD}
    room = make_room("10", join_rule="knock_restricted")
    assert room.allowed(room.member(CAROL, CAROL, "join", **via))
    room = make_room("9", join_rule="knock_restricted")
    assert not room.allowed(room.member(CAROL, CAROL, "join", **via))


# --------------------------------------------------------------- third-party invites


def _third_party_setup(version):
    room = make_room(version)
    is_key = generate_signing_key("0")
    public_key = encode_verify_key_base64(get_verify_key(is_key))
    room.apply(room.event("m.room.third_party_invite", BOB, {"public_key": public_key}, "tok"))
    signed = sign_json({"mxid": CAROL, "token": "tok"}, "id.test", is_key)
    return room, signed


@pytest.mark.parametrize("version", FAMILIES)
def test_third_party_invite_signature(version):
    room, signed = _third_party_setup(version)
    ok = room.member(BOB, CAROL, "invite", third_party_invite={"signed": signed})
    assert room.allowed(ok)
    # Only the user who made the third-party invite may complete it.
    assert not room.allowed({**ok, "sender": MOD})
    # The signature must come from the invite's keys.
    forged = sign_json({"mxid": CAROL, "token": "tok"}, "id.test", generate_signing_key("0"))
    assert not room.allowed(
        room.member(BOB, CAROL, "invite", third_party_invite={"signed": forged})
    )
    # mxid must be the invited user; the token must name an existing invite.
    assert not room.allowed(
        room.member(BOB, "@x:c.test", "invite", third_party_invite={"signed": signed})
    )
    other_token = sign_json({"mxid": CAROL, "token": "nope"}, "id.test", generate_signing_key("0"))
    assert not room.allowed(
        room.member(BOB, CAROL, "invite", third_party_invite={"signed": other_token})
    )
    assert not room.allowed(room.member(BOB, CAROL, "invite", third_party_invite={}))


def test_third_party_invite_keys_in_public_keys_list():
    room = make_room("10")
    is_key = generate_signing_key("0")
    public_key = encode_verify_key_base64(get_verify_key(is_key))
    content = {"public_key": "AAAA", "public_keys": [{"public_key": public_key}]}
    room.apply(room.event("m.room.third_party_invite", BOB, content, "tok"))
    signed = sign_json({"mxid": CAROL, "token": "tok"}, "id.test", is_key)
    assert room.allowed(room.member(BOB, CAROL, "invite", third_party_invite={"signed": signed}))


# -------------------------------------------------------------------- power levels


@pytest.mark.parametrize("version", FAMILIES)
def test_power_level_changes_limited_by_sender_power(version):
    room = make_room(version, events={"m.room.power_levels": 50})

    def pl(**changes):
        return room.event("m.room.power_levels", MOD, power_levels_content(room, **changes), "")

    assert room.allowed(pl(events={"m.room.power_levels": 50}, ban=40)), "lowering to 40"
    assert not room.allowed(pl(events={"m.room.power_levels": 50}, users_default=60))
    assert not room.allowed(pl(events={"m.room.power_levels": 50}, state_default=51))
    # Raising an events entry above one's own level, or touching one above it.
    assert not room.allowed(pl(events={"m.room.power_levels": 50, "m.room.tombstone": 60}))
    users = {MOD: 50, BOB: 50}
    if not room.rv.creators_have_infinite_power:
        users[ALICE] = 100
    assert room.allowed(pl(events={"m.room.power_levels": 50}, users=users)), "up to own level"
    assert not room.allowed(pl(events={"m.room.power_levels": 50}, users={**users, BOB: 51}))
    assert room.allowed(pl(events={"m.room.power_levels": 50}, users={**users, MOD: 10}))


@pytest.mark.parametrize("version", FAMILIES)
def test_cannot_demote_a_peer(version):
    room = make_room(version)
    levels = power_levels_content(room)
    levels["users"][BOB] = 50
    room.apply(room.event("m.room.power_levels", ALICE, levels, ""))
    levels = power_levels_content(room, events={"m.room.power_levels": 50})
    levels["users"][BOB] = 50
    room.apply(room.event("m.room.power_levels", ALICE, levels, ""))
    demote = power_levels_content(room, events={"m.room.power_levels": 50})
    demote["users"][BOB] = 0
    assert not room.allowed(room.event("m.room.power_levels", MOD, demote, ""))
    if not room.rv.creators_have_infinite_power:
        assert room.allowed(room.event("m.room.power_levels", ALICE, demote, ""))


@pytest.mark.parametrize(("version", "ok"), [("1", False), ("5", False), ("6", True), ("12", True)])
def test_notifications_protected_from_v6(version, ok):
    room = make_room(version, events={"m.room.power_levels": 50}, notifications={"room": 100})
    lowered = power_levels_content(
        room, events={"m.room.power_levels": 50}, notifications={"room": 0}
    )
    # Mod (50) changes a value currently above their level: rejected from v6 only.
    assert room.allowed(room.event("m.room.power_levels", MOD, lowered, "")) is not ok


@pytest.mark.parametrize(
    ("version", "accepted"),
    [("1", True), ("6", True), ("9", True), ("10", False), ("12", False)],
)
def test_stringy_power_levels_accepted_only_before_v10(version, accepted):
    room = make_room(version)
    content = power_levels_content(room, ban="50", events={"m.room.power_levels": " +100 "})
    content["users"] = {**content["users"], BOB: "007"}
    event = room.event("m.room.power_levels", ALICE, content, "")
    assert room.allowed(event) is accepted
    if accepted:
        room.apply(event)
        assert room.power(BOB) == 7


@pytest.mark.parametrize(("version", "accepted"), [("1", True), ("5", True), ("6", False)])
def test_float_power_levels_only_before_v6(version, accepted):
    room = make_room(version)
    content = power_levels_content(room)
    content["users"] = {**content["users"], BOB: 50.57}
    event = room.event("m.room.power_levels", ALICE, content, "")
    assert room.allowed(event) is accepted
    if accepted:
        room.apply(event)
        assert room.power(BOB) == 50


@pytest.mark.parametrize("version", FAMILIES)
def test_power_levels_rejects_non_user_keys_and_bools(version):
    room = make_room(version)
    content = power_levels_content(room)
    bad_key = {**content, "users": {**content["users"], "not-a-user": 10}}
    assert not room.allowed(room.event("m.room.power_levels", ALICE, bad_key, ""))
    bad_value = {**content, "users": {**content["users"], BOB: True}}
    assert not room.allowed(room.event("m.room.power_levels", ALICE, bad_value, ""))
    assert not room.allowed(room.event("m.room.power_levels", ALICE, {**content, "kick": "x"}, ""))


def test_v12_creators_cannot_be_listed_and_have_infinite_power():
    room = make_room("12")
    assert room.power(ALICE) == math.inf
    content = power_levels_content(room)
    listed = {**content, "users": {**content["users"], ALICE: 100}}
    assert not room.allowed(room.event("m.room.power_levels", ALICE, listed, ""))
    # The creator can do anything, including setting huge levels.
    huge = {**content, "users": {**content["users"], MOD: 2**40}}
    assert room.allowed(room.event("m.room.power_levels", ALICE, huge, ""))
    assert room.allowed(room.member(ALICE, MOD, "ban"))
    assert not room.allowed(room.member(MOD, ALICE, "ban")), "nobody outranks a creator"


def test_v12_additional_creators():
    room = Room("12", {"additional_creators": [MOD]})
    room.apply(creator_join(room))
    assert room.power(MOD) == math.inf
    room.apply(room.event("m.room.join_rules", ALICE, {"join_rule": "public"}, ""))
    room.apply(room.member(MOD, MOD, "join"))
    listed = {"users": {MOD: 100}}
    assert not room.allowed(room.event("m.room.power_levels", ALICE, listed, ""))
    assert room.allowed(room.event("m.room.power_levels", MOD, {"users": {BOB: 100}}, ""))


@pytest.mark.parametrize("version", ["1", "10", "11"])
def test_pre_v12_creator_is_finite_and_has_100_without_power_levels(version):
    room = Room(version)
    room.apply(creator_join(room))
    assert room.power(ALICE) == 100
    assert room.power(BOB) == 0
    # Without power levels state events need 50 (spec v1.7, Synapse, SyTest
    # 41power-levels): Bob may neither set the topic nor take the room with a power
    # levels event; messages need 0; the creator can kick (50).
    room.apply(room.event("m.room.join_rules", ALICE, {"join_rule": "public"}, ""))
    room.apply(room.member(BOB, BOB, "join"))
    assert not room.allowed(room.event("m.room.topic", BOB, {"topic": "t"}, ""))
    assert not room.allowed(room.event("m.room.power_levels", BOB, {"users": {BOB: 100}}, ""))
    assert room.allowed(room.event("m.room.message", BOB, {"body": "hi"}))
    assert room.allowed(room.event("m.room.topic", ALICE, {"topic": "t"}, ""))
    assert room.allowed(room.member(ALICE, BOB, "leave"))
    assert not room.allowed(room.member(BOB, ALICE, "leave"))


def test_get_required_level_defaults():
    rv = V["10"]
    assert get_required_level(rv, "m.room.topic", True, None) == 50
    assert get_required_level(rv, "m.room.message", False, None) == 0
    assert get_required_level(rv, "m.room.topic", True, {}) == 50
    assert get_required_level(rv, "m.room.message", False, {}) == 0
    content = {"events": {"m.room.topic": 10}, "state_default": 20, "events_default": 30}
    assert get_required_level(rv, "m.room.topic", True, content) == 10
    assert get_required_level(rv, "m.room.name", True, content) == 20
    assert get_required_level(rv, "m.room.message", False, content) == 30
    assert get_required_level(V["9"], "m.room.name", True, {"state_default": "25"}) == 25


# ---------------------------------------------------------------------- aliases


@pytest.mark.parametrize("version", ["1", "5"])
def test_aliases_special_rule_v1_to_v5(version):
    room = make_room(version)
    # Bob (power 0) may set aliases for his own server despite state_default 50...
    assert room.allowed(room.event("m.room.aliases", BOB, {"aliases": []}, "b.test"))
    # ...but not for another server, nor without a state key; and non-members can too.
    assert not room.allowed(room.event("m.room.aliases", BOB, {"aliases": []}, "a.test"))
    assert not room.allowed(room.event("m.room.aliases", BOB, {"aliases": []}))
    assert room.allowed(room.event("m.room.aliases", CAROL, {"aliases": []}, "c.test"))


@pytest.mark.parametrize("version", ["6", "12"])
def test_aliases_are_ordinary_state_from_v6(version):
    room = make_room(version)
    assert not room.allowed(room.event("m.room.aliases", BOB, {"aliases": []}, "b.test"))
    assert room.allowed(room.event("m.room.aliases", MOD, {"aliases": []}, "b.test"))


# --------------------------------------------------------------------- redactions


@pytest.mark.parametrize("version", ["1", "2"])
def test_v1_redaction_needs_redact_level_or_same_server(version):
    room = make_room(version)
    own_server = room.event("m.room.redaction", BOB, {}, redacts="$1:b.test")
    assert room.allowed(own_server)
    other = room.event("m.room.redaction", BOB, {}, redacts="$1:a.test")
    assert not room.allowed(other)
    assert room.allowed(room.event("m.room.redaction", MOD, {}, redacts="$1:a.test"))


@pytest.mark.parametrize("version", ["3", "10", "11", "12"])
def test_v3_redactions_only_need_the_event_level(version):
    room = make_room(version)
    # The redact level is not an auth rule any more: handled when applying the redaction.
    assert room.allowed(room.event("m.room.redaction", BOB, {"redacts": "$x"}, redacts="$x"))
    room = make_room(version, events={"m.room.redaction": 50, "m.room.power_levels": 100})
    assert not room.allowed(room.event("m.room.redaction", BOB, {"redacts": "$x"}))


# ------------------------------------------------------------- auth events selection


def test_auth_types_for_event_selection():
    rv = V["10"]
    message = {"type": "m.room.message", "sender": BOB, "content": {}}
    assert auth_types_for_event(rv, message) == [
        ("m.room.create", ""),
        ("m.room.power_levels", ""),
        ("m.room.member", BOB),
    ]
    assert auth_types_for_event(V["12"], message) == [
        ("m.room.power_levels", ""),
        ("m.room.member", BOB),
    ]
    assert auth_types_for_event(rv, {"type": "m.room.create", "sender": BOB}) == []
    join = {
        "type": "m.room.member",
        "sender": CAROL,
        "state_key": CAROL,
        "content": {"membership": "join", "join_authorised_via_users_server": MOD},
    }
    assert auth_types_for_event(rv, join) == [
        ("m.room.create", ""),
        ("m.room.power_levels", ""),
        ("m.room.member", CAROL),
        ("m.room.join_rules", ""),
        ("m.room.member", MOD),
    ]
    assert ("m.room.member", MOD) not in auth_types_for_event(V["7"], join)
    invite = {
        "type": "m.room.member",
        "sender": BOB,
        "state_key": CAROL,
        "content": {"membership": "invite", "third_party_invite": {"signed": {"token": "t"}}},
    }
    assert auth_types_for_event(rv, invite)[-3:] == [
        ("m.room.member", CAROL),
        ("m.room.join_rules", ""),
        ("m.room.third_party_invite", "t"),
    ]
    leave = {**invite, "content": {"membership": "leave"}}
    assert ("m.room.join_rules", "") not in auth_types_for_event(rv, leave)


def test_check_auth_ignores_state_outside_the_selection():
    room = make_room("10")
    event = room.event("m.room.message", BOB, {"body": "hi"})
    noisy = dict(room.state)
    noisy[("m.room.topic", "")] = {"type": "m.room.topic", "room_id": "!elsewhere:x"}
    check_auth(room.rv, event, noisy)
    # A selected entry from another room is a rejection, though.
    noisy[("m.room.member", BOB)] = {**room.state[("m.room.member", BOB)], "room_id": "!x:y"}
    with pytest.raises(AuthError, match="another room"):
        check_auth(room.rv, event, noisy)


def test_check_auth_events_list():
    room = make_room("10")
    event = room.event("m.room.message", BOB, {})
    create = room.state[("m.room.create", "")]
    pl = room.state[("m.room.power_levels", "")]
    bob = room.state[("m.room.member", BOB)]
    check_auth_events_list(room.rv, event, [create, pl, bob])
    with pytest.raises(AuthError, match="duplicate"):
        check_auth_events_list(room.rv, event, [create, pl, pl])
    with pytest.raises(AuthError, match="may cite"):
        check_auth_events_list(room.rv, event, [create, room.state[("m.room.join_rules", "")]])
    with pytest.raises(AuthError, match="create"):
        check_auth_events_list(room.rv, event, [pl, bob])
    # In v12 the create event must not be cited.
    room12 = make_room("12")
    event12 = room12.event("m.room.message", BOB, {})
    check_auth_events_list(room12.rv, event12, [room12.state[("m.room.member", BOB)]])
    with pytest.raises(AuthError, match="may cite"):
        check_auth_events_list(room12.rv, event12, [room12.create])
