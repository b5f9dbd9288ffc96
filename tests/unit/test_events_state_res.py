"""State resolution v1, v2 and the v12 variant on small hand-built DAGs."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.events.hashing import compute_event_id, room_id_from_create_event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, STATE_RES_V2_1
from homeserver.events.state_res import auth_chain_from_event_map, resolve_state

ALICE, BOB, CAROL = "@alice:a.test", "@bob:b.test", "@carol:c.test"


class Dag:
    """Events with real (hash) ids; each state event updates a running state map."""

    def __init__(self, version: str):
        self.rv = KNOWN_ROOM_VERSIONS[version]
        self.events: dict[str, dict[str, Any]] = {}
        self.ts = 0
        content = {"room_version": version}
        if not self.rv.v11_redactions_and_creator:
            content["creator"] = ALICE
        create = self._event("m.room.create", ALICE, content, "", [], [])
        if self.rv.room_id_is_create_event_hash:
            self.room_id = room_id_from_create_event(create, self.rv)
        else:
            self.room_id = "!r:a.test"
            create["room_id"] = self.room_id
        self.create_id = self._store(create)
        self.state = {("m.room.create", ""): self.create_id}

    def _event(self, event_type, sender, content, state_key, prev, auth) -> dict[str, Any]:
        self.ts += 1
        event = {
            "type": event_type,
            "sender": sender,
            "content": content,
            "origin_server_ts": self.ts,
            "depth": self.ts,
            "prev_events": prev,
            "auth_events": auth,
            "hashes": {"sha256": "x"},
        }
        if state_key is not None:
            event["state_key"] = state_key
        return event

    def _store(self, event) -> str:
        if self.rv.event_ids_carry_domain:
            event["event_id"] = f"${len(self.events)}:{event['sender'].split(':')[1]}"
        event_id = event.get("event_id") or compute_event_id(event, self.rv)
        self.events[event_id] = event
        return event_id

    def add(self, event_type, sender, content, state_key, state=None, prev=None) -> str:
        """Add an event authorised by ``state`` (default: the running state)."""
        state = self.state if state is None else state
        keys = [("m.room.power_levels", ""), ("m.room.member", sender)]
        if not self.rv.room_id_is_create_event_hash:
            keys.insert(0, ("m.room.create", ""))
        if event_type == "m.room.member":
            keys += [("m.room.member", state_key), ("m.room.join_rules", "")]
        auth = list(dict.fromkeys(state[k] for k in keys if k in state))
        event = self._event(event_type, sender, content, state_key, prev or [], auth)
        event["room_id"] = self.room_id
        event_id = self._store(event)
        if state_key is not None:
            state[(event_type, state_key)] = event_id
        return event_id

    def setup(self) -> None:
        self.add("m.room.member", ALICE, {"membership": "join"}, ALICE, prev=[self.create_id])
        users = {BOB: 50} if self.rv.creators_have_infinite_power else {ALICE: 100, BOB: 50}
        self.add("m.room.power_levels", ALICE, {"users": users}, "")
        self.add("m.room.join_rules", ALICE, {"join_rule": "public"}, "")
        self.add("m.room.member", BOB, {"membership": "join"}, BOB)
        self.add("m.room.member", CAROL, {"membership": "join"}, CAROL)

    def resolve(self, *state_sets):
        return resolve_state(
            self.rv, list(state_sets), self.events, auth_chain_from_event_map(self.events)
        )


VERSIONS = ["2", "10", "12"]


@pytest.mark.parametrize("version", ["1", *VERSIONS])
def test_unconflicted_state_passes_through(version):
    dag = Dag(version)
    dag.setup()
    assert dag.resolve(dict(dag.state), dict(dag.state)) == dag.state


@pytest.mark.parametrize("version", ["1", *VERSIONS])
def test_concurrent_topics_resolve_to_the_later_one(version):
    dag = Dag(version)
    dag.setup()
    fork_a, fork_b = dict(dag.state), dict(dag.state)
    first = dag.add("m.room.topic", ALICE, {"topic": "a"}, "", state=fork_a)
    second = dag.add("m.room.topic", BOB, {"topic": "b"}, "", state=fork_b)
    # Same mainline position, so origin_server_ts decides and the later one is applied last.
    assert dag.resolve(fork_a, fork_b)[("m.room.topic", "")] == second
    assert dag.resolve(fork_b, fork_a)[("m.room.topic", "")] == second
    assert first != second
    # Everything not in conflict is kept, whatever state the algorithm started from.
    resolved = dag.resolve(fork_a, fork_b)
    assert {k: v for k, v in resolved.items() if k != ("m.room.topic", "")} == dag.state


@pytest.mark.parametrize("version", VERSIONS)
def test_ban_beats_concurrent_action_of_the_banned_user(version):
    dag = Dag(version)
    dag.setup()
    fork_a, fork_b = dict(dag.state), dict(dag.state)
    # Bob (power 50) changes the topic; concurrently, and later by the clock, Alice bans
    # him. Power events are applied first, so the ban undoes the topic.
    dag.add("m.room.topic", BOB, {"topic": "mine"}, "", state=fork_b)
    ban = dag.add("m.room.member", ALICE, {"membership": "ban"}, BOB, state=fork_a)
    resolved = dag.resolve(fork_a, fork_b)
    assert resolved[("m.room.member", BOB)] == ban
    assert ("m.room.topic", "") not in resolved


@pytest.mark.parametrize("version", VERSIONS)
def test_demotion_beats_concurrent_power_change(version):
    dag = Dag(version)
    dag.setup()
    fork_a, fork_b = dict(dag.state), dict(dag.state)
    creator_users = {} if dag.rv.creators_have_infinite_power else {ALICE: 100}
    demote = dag.add(
        "m.room.power_levels", ALICE, {"users": {**creator_users, BOB: 0}}, "", state=fork_a
    )
    # Bob concurrently raises Carol to 50, which needs the power the demotion removes.
    dag.add(
        "m.room.power_levels",
        BOB,
        {"users": {**creator_users, BOB: 50, CAROL: 50}},
        "",
        state=fork_b,
    )
    assert dag.resolve(fork_a, fork_b)[("m.room.power_levels", "")] == demote


# ---- v1 (room version 1) ----------------------------------------------------------------


def test_v1_a_key_one_state_lacks_is_not_in_conflict():
    """SyTest "Should not be able to take over the room by pretending there is no PL
    event": a state without the power levels does not remove them."""
    dag = Dag("1")
    dag.setup()
    pretended = {k: v for k, v in dag.state.items() if k != ("m.room.power_levels", "")}
    topic = dag.add("m.room.topic", BOB, {"topic": "t"}, "", state=dict(dag.state))
    pretended[("m.room.topic", "")] = topic
    resolved = dag.resolve(dict(dag.state), pretended)
    assert resolved == {**dag.state, ("m.room.topic", ""): topic}
    assert dag.resolve(pretended, dict(dag.state)) == resolved


def test_v1_power_levels_apply_in_depth_order_while_allowed():
    dag = Dag("1")
    dag.setup()
    fork_a, fork_b = dict(dag.state), dict(dag.state)
    demote = dag.add("m.room.power_levels", ALICE, {"users": {ALICE: 100, BOB: 0}}, "", fork_a)
    # Later (deeper), Bob raises Carol: not allowed once the demotion is applied.
    raise_ = dag.add(
        "m.room.power_levels", BOB, {"users": {ALICE: 100, BOB: 50, CAROL: 50}}, "", fork_b
    )
    assert dag.events[raise_]["depth"] > dag.events[demote]["depth"]
    for sets in ((fork_a, fork_b), (fork_b, fork_a)):
        assert dag.resolve(*sets)[("m.room.power_levels", "")] == demote
    # An allowed later change wins: Alice raises Carol after Bob's change.
    fork_c = dict(dag.state)
    promote = dag.add("m.room.power_levels", ALICE, {"users": {ALICE: 100, CAROL: 50}}, "", fork_c)
    assert dag.resolve(fork_b, fork_c)[("m.room.power_levels", "")] == promote


def test_v1_join_rules_and_members_are_checked_against_the_resolved_power():
    dag = Dag("1")
    dag.setup()
    fork_a, fork_b = dict(dag.state), dict(dag.state)
    rules = dag.add("m.room.join_rules", ALICE, {"join_rule": "invite"}, "", fork_a)
    # Carol (power 0) may not change the join rules: the earlier event stays.
    dag.add("m.room.join_rules", CAROL, {"join_rule": "public"}, "", fork_b)
    kick = dag.add("m.room.member", ALICE, {"membership": "leave"}, CAROL, fork_a)
    left = dag.add("m.room.member", CAROL, {"membership": "leave"}, CAROL, fork_b)
    resolved = dag.resolve(fork_a, fork_b)
    assert resolved[("m.room.join_rules", "")] == rules
    # The kick comes first; Carol, no longer in the room, cannot leave it after that.
    assert resolved[("m.room.member", CAROL)] == kick
    assert dag.events[left]["depth"] > dag.events[kick]["depth"]


def test_v1_other_state_takes_the_deepest_allowed_event():
    dag = Dag("1")
    dag.setup()
    fork_a, fork_b, fork_c = dict(dag.state), dict(dag.state), dict(dag.state)
    bob = dag.add("m.room.topic", BOB, {"topic": "bob"}, "", fork_a)
    alice = dag.add("m.room.topic", ALICE, {"topic": "alice"}, "", fork_b)
    carol = dag.add("m.room.topic", CAROL, {"topic": "carol"}, "", fork_c)  # power 0
    assert dag.resolve(fork_a, fork_b, fork_c)[("m.room.topic", "")] == alice
    assert dag.resolve(fork_c, fork_a)[("m.room.topic", "")] == bob
    assert carol not in dag.resolve(fork_a, fork_b, fork_c).values()


@pytest.mark.parametrize("version", VERSIONS)
def test_power_events_ordered_by_sender_power_before_time(version):
    dag = Dag(version)
    dag.setup()
    fork_a, fork_b = dict(dag.state), dict(dag.state)
    by_bob = dag.add("m.room.join_rules", BOB, {"join_rule": "invite"}, "", state=fork_b)
    dag.add("m.room.join_rules", ALICE, {"join_rule": "knock"}, "", state=fork_a)
    # Alice outranks Bob, so her change is applied first and Bob's, still allowed, last:
    # a pure timestamp order would have let Alice's later event win instead.
    assert dag.resolve(fork_a, fork_b)[("m.room.join_rules", "")] == by_bob


# ---- the published scenarios (Synapse's tests/state/test_v2.py, also run by Ruma and
# Conduit), rebuilt on Dag with real event ids; each also runs as v10 and v12 --------------

EVELYN = "@evelyn:e.test"
PL, JR, TOPIC = ("m.room.power_levels", ""), ("m.room.join_rules", ""), ("m.room.topic", "")


def _levels(dag: Dag, users: dict[str, int], **extra) -> dict[str, Any]:
    """Power levels content; v12 creators have infinite power and may not be listed."""
    if dag.rv.creators_have_infinite_power:
        users = {u: level for u, level in users.items() if u != ALICE}
    return {"users": users, **extra}


def _member(user: str) -> tuple[str, str]:
    return ("m.room.member", user)


@pytest.mark.parametrize("version", VERSIONS)
def test_ban_vs_power_levels(version):
    """Bob re-sends the power levels while Alice bans him: the ban (a power event by the
    more powerful sender) is applied first and Bob's event then fails auth."""
    dag = Dag(version)
    dag.setup()
    pa = dag.add("m.room.power_levels", ALICE, _levels(dag, {ALICE: 100, BOB: 50}), "")
    fork_b = dict(dag.state)
    ma = dag.add("m.room.member", ALICE, {"membership": "join"}, ALICE)
    mb = dag.add("m.room.member", ALICE, {"membership": "ban"}, BOB)
    dag.add("m.room.power_levels", BOB, _levels(dag, {ALICE: 100, BOB: 50}), "", state=fork_b)
    resolved = dag.resolve(dag.state, fork_b)
    assert resolved[PL] == pa
    assert resolved[_member(ALICE)] == ma
    assert resolved[_member(BOB)] == mb


@pytest.mark.parametrize("version", VERSIONS)
def test_join_rule_evasion(version):
    """Evelyn joins on a branch that does not have the room going invite-only: the
    join_rules change is a power event, resolved first, and her join then fails."""
    dag = Dag(version)
    dag.setup()
    fork_b = dict(dag.state)
    jr = dag.add("m.room.join_rules", ALICE, {"join_rule": "invite"}, "")
    dag.add("m.room.member", EVELYN, {"membership": "join"}, EVELYN, state=fork_b)
    resolved = dag.resolve(dag.state, fork_b)
    assert resolved[JR] == jr
    assert _member(EVELYN) not in resolved


@pytest.mark.parametrize("version", VERSIONS)
def test_offtopic_power_levels(version):
    """A chain of power level changes (Bob raises Carol, Carol lowers herself) against a
    branch that only has the first: the auth DAG order wins over sender power, and each
    step is checked against the one before it."""
    dag = Dag(version)
    dag.setup()
    dag.add("m.room.power_levels", ALICE, _levels(dag, {ALICE: 100, BOB: 50}), "")
    fork_b = dict(dag.state)
    dag.add("m.room.power_levels", BOB, _levels(dag, {ALICE: 100, BOB: 50, CAROL: 50}), "")
    pc = dag.add("m.room.power_levels", CAROL, _levels(dag, {ALICE: 100, BOB: 50, CAROL: 0}), "")
    assert dag.resolve(dag.state, fork_b)[PL] == pc


@pytest.mark.parametrize("version", VERSIONS)
def test_topic_basic(version):
    """Alice demotes Bob while Bob re-asserts his level and sets a topic: the demotion
    wins (power ordering), and Bob's topic then fails in the mainline phase."""
    dag = Dag(version)
    dag.setup()
    dag.add("m.room.topic", ALICE, {"topic": "t1"}, "")
    dag.add("m.room.power_levels", ALICE, _levels(dag, {ALICE: 100, BOB: 50}), "")
    fork_b = dict(dag.state)
    t2 = dag.add("m.room.topic", ALICE, {"topic": "t2"}, "")
    pa2 = dag.add("m.room.power_levels", ALICE, _levels(dag, {ALICE: 100, BOB: 0}), "")
    dag.add("m.room.power_levels", BOB, _levels(dag, {ALICE: 100, BOB: 50}), "", state=fork_b)
    dag.add("m.room.topic", BOB, {"topic": "t3"}, "", state=fork_b)
    resolved = dag.resolve(dag.state, fork_b)
    assert (resolved[PL], resolved[TOPIC]) == (pa2, t2)


@pytest.mark.parametrize("version", VERSIONS)
def test_topic_reset(version):
    """Bob sets a topic and is then banned; a branch from before both merges in. The ban
    holds, so Bob's topic fails and the topic goes back to the earlier one (T1) rather
    than disappearing: mainline ordering puts T1 (older power levels) first."""
    dag = Dag(version)
    dag.setup()
    t1 = dag.add("m.room.topic", ALICE, {"topic": "t1"}, "")
    fork_b = dict(dag.state)
    pa = dag.add("m.room.power_levels", ALICE, _levels(dag, {ALICE: 100, BOB: 50}), "")
    dag.add("m.room.topic", BOB, {"topic": "t2"}, "")
    mb = dag.add("m.room.member", ALICE, {"membership": "ban"}, BOB)
    resolved = dag.resolve(dag.state, fork_b)
    assert (resolved[TOPIC], resolved[PL], resolved[_member(BOB)]) == (t1, pa, mb)


@pytest.mark.parametrize("version", VERSIONS)
def test_topic_after_a_merge(version):
    """test_topic_basic, then a message merging both branches and a new topic by Alice on
    the merged state: resolving the merge point against the newer state keeps the new
    topic and the demotion."""
    dag = Dag(version)
    dag.setup()
    dag.add("m.room.topic", ALICE, {"topic": "t1"}, "")
    dag.add("m.room.power_levels", ALICE, _levels(dag, {ALICE: 100, BOB: 50}), "")
    fork_b = dict(dag.state)
    dag.add("m.room.topic", ALICE, {"topic": "t2"}, "")
    pa2 = dag.add("m.room.power_levels", ALICE, _levels(dag, {ALICE: 100, BOB: 0}), "")
    dag.add("m.room.power_levels", BOB, _levels(dag, {ALICE: 100, BOB: 50}), "", state=fork_b)
    dag.add("m.room.topic", BOB, {"topic": "t3"}, "", state=fork_b)
    merged = dag.resolve(dag.state, fork_b)
    dag.add("m.room.message", CAROL, {"body": "merge"}, None, state=dict(merged))
    after_t4 = dict(merged)
    t4 = dag.add("m.room.topic", ALICE, {"topic": "t4"}, "", state=after_t4)
    resolved = dag.resolve(after_t4, merged)
    assert (resolved[TOPIC], resolved[PL]) == (t4, pa2)


@pytest.mark.parametrize("version", VERSIONS)
def test_mainline_sort(version):
    """Bob's topic T3 is based on the newest power levels (PA2) and Alice's T4 on an older
    one: the mainline position, not the (later) timestamp of T4, decides, so T3 wins.
    Bob's own power levels event fails: PA2 raised the level needed for it to 100."""
    dag = Dag(version)
    dag.setup()
    dag.add("m.room.topic", ALICE, {"topic": "t1"}, "")
    dag.add("m.room.power_levels", ALICE, _levels(dag, {ALICE: 100, BOB: 50}), "")
    fork_b = dict(dag.state)
    dag.add("m.room.topic", ALICE, {"topic": "t2"}, "")
    pa2 = dag.add(
        "m.room.power_levels",
        ALICE,
        _levels(dag, {ALICE: 100, BOB: 50}, events={"m.room.power_levels": 100}),
        "",
    )
    dag.add("m.room.power_levels", BOB, _levels(dag, {ALICE: 100, BOB: 50}), "", state=fork_b)
    t3 = dag.add("m.room.topic", BOB, {"topic": "t3"}, "")
    dag.add("m.room.topic", ALICE, {"topic": "t4"}, "", state=fork_b)
    resolved = dag.resolve(dag.state, fork_b)
    assert (resolved[TOPIC], resolved[PL]) == (t3, pa2)


# ---- where v12 (state resolution v2.1) differs from v2 ---------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_unconflicted_state_cannot_vouch_for_a_conflicted_power_event(version):
    """A join_rules event by Bob that his own auth events do not allow (they give him 0)
    sits in one state set; both sets agree on newer power levels giving him 100. v2
    starts the power events' checks from the unconflicted state, so the newer levels let
    it through; v2.1 starts from nothing and checks it on its own auth events."""
    dag = Dag(version)
    dag.setup()
    jr_orig = dag.state[JR]
    dag.add("m.room.power_levels", ALICE, _levels(dag, {ALICE: 100, BOB: 0}), "")
    unauthorised = dag.add(
        "m.room.join_rules", BOB, {"join_rule": "invite"}, "", state=dict(dag.state)
    )
    dag.add("m.room.power_levels", ALICE, _levels(dag, {ALICE: 100, BOB: 100}), "")
    with_it = {**dag.state, JR: unauthorised}
    expected = jr_orig if dag.rv.state_res == STATE_RES_V2_1 else unauthorised
    assert dag.resolve(with_it, dict(dag.state))[JR] == expected


@pytest.mark.parametrize("version", VERSIONS)
def test_conflicted_state_subgraph_prevents_a_state_reset(version):
    """One state set has the power levels "reset" to an old PL1 while agreeing on a topic
    authorised by the later PL2; the other has PL3, sent by Bob with the power PL2 gave
    him. PL2 is in both auth chains, so v2 leaves it out of the full conflicted set, and
    PL3 is checked against PL1 and fails. v2.1 adds PL2, which lies on the auth path
    between the conflicted PL3 and PL1 (the conflicted state subgraph), so PL3 holds."""
    dag = Dag(version)
    dag.setup()
    pl1 = dag.add("m.room.power_levels", ALICE, _levels(dag, {ALICE: 100, BOB: 50}), "")
    dag.add("m.room.power_levels", ALICE, _levels(dag, {ALICE: 100, BOB: 100}), "")
    dag.add("m.room.topic", ALICE, {"topic": "under PL2"}, "")
    pl3 = dag.add("m.room.power_levels", BOB, _levels(dag, {ALICE: 100, BOB: 100, CAROL: 75}), "")
    reset = {**dag.state, PL: pl1}
    expected = pl3 if dag.rv.state_res == STATE_RES_V2_1 else pl1
    assert dag.resolve(reset, dict(dag.state))[PL] == expected
    assert dag.resolve(dict(dag.state), reset)[PL] == expected
