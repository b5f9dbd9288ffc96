"""The redaction algorithm per room version (rooms/fragments/v*-redactions.md)."""

import pytest

from homeserver.events.redaction import prune_event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS

V = KNOWN_ROOM_VERSIONS


def _event(event_type, content, **extra):
    return {
        "event_id": "$e:example.org",
        "type": event_type,
        "room_id": "!r:example.org",
        "sender": "@u:example.org",
        "state_key": "",
        "content": content,
        "hashes": {"sha256": "abc"},
        "signatures": {"example.org": {"ed25519:1": "sig"}},
        "depth": 5,
        "prev_events": ["$p"],
        "auth_events": ["$a"],
        "origin_server_ts": 1,
        "origin": "example.org",
        "membership": "join",
        "prev_state": [],
        "unsigned": {"age": 5, "redacted_because": {"type": "m.room.redaction"}},
        "custom_top_level": 1,
        **extra,
    }


def test_top_level_keys_v1_to_v10_vs_v11():
    event = _event("m.room.message", {"body": "secret"})
    pre = prune_event(event, V["10"])
    assert set(pre) == {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "auth_events",
        "origin_server_ts",
        "origin",
        "membership",
        "prev_state",
    }
    assert pre["content"] == {}
    post = prune_event(event, V["11"])
    assert set(pre) - set(post) == {"origin", "membership", "prev_state"}
    assert "unsigned" not in pre and "unsigned" not in post
    assert event["content"] == {"body": "secret"}  # input not mutated


@pytest.mark.parametrize(
    ("versions", "expected"),
    [(("1", "5"), {"aliases": ["#a:x"]}), (("6", "11"), {})],
)
def test_aliases_content_kept_only_before_v6(versions, expected):
    event = _event("m.room.aliases", {"aliases": ["#a:x"], "other": 1})
    for version in versions:
        assert prune_event(event, V[version])["content"] == expected


def test_join_rules_allow_kept_from_v8():
    content = {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}], "x": 1}
    event = _event("m.room.join_rules", content)
    assert prune_event(event, V["7"])["content"] == {"join_rule": "restricted"}
    assert prune_event(event, V["8"])["content"] == {
        "join_rule": "restricted",
        "allow": [{"type": "m.room_membership"}],
    }


def test_member_join_authorised_via_kept_from_v9():
    content = {
        "membership": "join",
        "displayname": "U",
        "join_authorised_via_users_server": "@m:example.org",
    }
    event = _event("m.room.member", content, state_key="@u:example.org")
    assert prune_event(event, V["8"])["content"] == {"membership": "join"}
    assert prune_event(event, V["9"])["content"] == {
        "membership": "join",
        "join_authorised_via_users_server": "@m:example.org",
    }


def test_member_third_party_invite_signed_kept_from_v11():
    signed = {"mxid": "@u:example.org", "token": "t", "signatures": {}}
    content = {
        "membership": "invite",
        "third_party_invite": {"display_name": "u@mail", "signed": signed},
    }
    event = _event("m.room.member", content, state_key="@u:example.org")
    assert prune_event(event, V["10"])["content"] == {"membership": "invite"}
    assert prune_event(event, V["11"])["content"] == {
        "membership": "invite",
        "third_party_invite": {"signed": signed},
    }


def test_create_content_kept_whole_from_v11():
    content = {"creator": "@u:example.org", "room_version": "11", "m.federate": False}
    event = _event("m.room.create", content)
    assert prune_event(event, V["10"])["content"] == {"creator": "@u:example.org"}
    assert prune_event(event, V["11"])["content"] == content
    assert prune_event(event, V["12"])["content"] == content


def test_power_levels_invite_kept_from_v11():
    content = {
        "ban": 50,
        "events": {"m.room.name": 50},
        "events_default": 0,
        "invite": 0,
        "kick": 50,
        "redact": 50,
        "state_default": 50,
        "users": {"@u:example.org": 100},
        "users_default": 0,
        "notifications": {"room": 50},
    }
    event = _event("m.room.power_levels", content)
    pre = prune_event(event, V["10"])["content"]
    assert "invite" not in pre and "notifications" not in pre
    assert pre["users"] == {"@u:example.org": 100}
    post = prune_event(event, V["11"])["content"]
    assert post["invite"] == 0 and "notifications" not in post


def test_redaction_redacts_kept_in_content_from_v11_and_history_visibility_always():
    event = _event("m.room.redaction", {"redacts": "$x", "reason": "spam"})
    assert prune_event(event, V["10"])["content"] == {}
    assert prune_event(event, V["11"])["content"] == {"redacts": "$x"}
    hv = _event("m.room.history_visibility", {"history_visibility": "shared", "x": 1})
    for version in KNOWN_ROOM_VERSIONS.values():
        assert prune_event(hv, version)["content"] == {"history_visibility": "shared"}


def test_pruned_copy_is_independent_of_the_original():
    event = _event("m.room.create", {"creator": "@u:example.org", "nested": {"a": 1}})
    pruned = prune_event(event, V["11"])
    pruned["content"]["nested"]["a"] = 2
    pruned["signatures"]["example.org"]["ed25519:1"] = "changed"
    assert event["content"]["nested"]["a"] == 1
    assert event["signatures"]["example.org"]["ed25519:1"] == "sig"
