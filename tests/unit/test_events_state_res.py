"""State resolution v2 and the v12 variant on small hand-built DAGs."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.events.hashing import compute_event_id, room_id_from_create_event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
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


@pytest.mark.parametrize("version", VERSIONS)
def test_unconflicted_state_passes_through(version):
    dag = Dag(version)
    dag.setup()
    assert dag.resolve(dict(dag.state), dict(dag.state)) == dag.state


@pytest.mark.parametrize("version", VERSIONS)
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


def test_state_res_v1_not_implemented():
    dag = Dag("1")
    with pytest.raises(ValueError):
        resolve_state(dag.rv, [], dag.events, auth_chain_from_event_map(dag.events))


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
