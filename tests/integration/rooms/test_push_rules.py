"""Push rules and pushers over the wire: matrix-nio for what it can send, raw HTTP to read
rules back (nio has no getter) and for errors."""

from __future__ import annotations

import asyncio

from nio import PushRuleKind, SetPushRuleResponse
from nio.events.account_data import PushEventMatch, PushNotify, PushSetTweak

from homeserver.push.defaults import DEFAULT_RULE_KINDS
from homeserver.push.rules import PushRules, ranked

V3 = "/_matrix/client/v3"


async def _global(server, client) -> dict:
    status, body = await server.request("GET", f"{V3}/pushrules/", token=client.access_token)
    assert status == 200, body
    return body["global"]


def _ids(rules: list) -> list[str]:
    return [r["rule_id"] for r in rules]


async def test_default_rule_set(server):
    client = await server.client()
    rules = await _global(server, client)
    assert set(rules) == {"override", "content", "room", "sender", "underride"}
    all_ids = {r["rule_id"] for kind in rules.values() for r in kind}
    assert set(DEFAULT_RULE_KINDS) == all_ids
    assert _ids(rules["override"])[0] == ".m.rule.master"
    assert _ids(rules["underride"]) == [
        ".m.rule.call",
        ".m.rule.encrypted_room_one_to_one",
        ".m.rule.room_one_to_one",
        ".m.rule.message",
        ".m.rule.encrypted",
    ]
    invite = next(r for r in rules["override"] if r["rule_id"] == ".m.rule.invite_for_me")
    assert {"kind": "event_match", "key": "state_key", "pattern": client.user_id} in invite[
        "conditions"
    ]
    status, body = await server.request("GET", f"{V3}/pushrules/global/", token=client.access_token)
    assert status == 200 and body == rules


async def test_create_order_and_delete_rules(server):
    client = await server.client()
    resp = await client.set_pushrule(
        "global", PushRuleKind.content, "cake", actions=[], pattern="cake"
    )
    assert isinstance(resp, SetPushRuleResponse), resp
    resp = await client.set_pushrule(
        "global", PushRuleKind.content, "lie", before="cake", actions=[], pattern="cake*lie"
    )
    assert isinstance(resp, SetPushRuleResponse), resp
    resp = await client.set_pushrule(
        "global", PushRuleKind.content, "tea", after="cake", actions=[], pattern="tea"
    )
    assert isinstance(resp, SetPushRuleResponse), resp
    content = (await _global(server, client))["content"]
    assert _ids(content) == ["lie", "cake", "tea", ".m.rule.contains_user_name"]
    assert content[0] == {
        "rule_id": "lie",
        "default": False,
        "enabled": True,
        "actions": [],
        "pattern": "cake*lie",
    }
    # A new rule without before/after is the most important user rule.
    await client.set_pushrule(
        "global", PushRuleKind.content, "top", actions=[PushNotify()], pattern="x"
    )
    assert _ids((await _global(server, client))["content"])[0] == "top"

    await client.delete_pushrule("global", PushRuleKind.content, "cake")
    assert "cake" not in _ids((await _global(server, client))["content"])
    status, body = await server.request(
        "GET", f"{V3}/pushrules/global/content/cake", token=client.access_token
    )
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"


async def test_override_rule_with_conditions_and_actions(server):
    client = await server.client()
    conditions = [{"kind": "event_match", "key": "content.body", "pattern": "beer"}]
    resp = await client.set_pushrule(
        "global",
        PushRuleKind.override,
        "beer",
        actions=[PushNotify()],
        conditions=[PushEventMatch("content.body", "beer")],
    )
    assert isinstance(resp, SetPushRuleResponse), resp
    override = (await _global(server, client))["override"]
    # User overrides come after .m.rule.master but before the other defaults.
    assert _ids(override)[:2] == [".m.rule.master", "beer"]
    await client.set_pushrule_actions(
        "global", PushRuleKind.override, "beer", [PushSetTweak("sound", "beer.wav")]
    )
    await client.enable_pushrule("global", PushRuleKind.override, "beer", False)
    status, body = await server.request(
        "GET", f"{V3}/pushrules/global/override/beer", token=client.access_token
    )
    assert status == 200
    assert body["enabled"] is False
    assert body["actions"] == [{"set_tweak": "sound", "value": "beer.wav"}]
    assert body["conditions"] == conditions


async def test_room_and_sender_rules(server):
    client = await server.client()
    room_id = "!abc:test.local"
    await client.set_pushrule("global", PushRuleKind.room, room_id, actions=[])
    await client.set_pushrule("global", PushRuleKind.sender, "@spam:test.local", actions=[])
    rules = await _global(server, client)
    assert rules["room"] == [{"rule_id": room_id, "default": False, "enabled": True, "actions": []}]
    assert _ids(rules["sender"]) == ["@spam:test.local"]


async def test_default_rules_enable_and_actions(server):
    client = await server.client()
    await client.enable_pushrule("global", PushRuleKind.override, ".m.rule.master", True)
    await client.set_pushrule_actions("global", PushRuleKind.underride, ".m.rule.message", [])
    base = f"{V3}/pushrules/global"
    status, body = await server.request(
        "GET", f"{base}/override/.m.rule.master/enabled", token=client.access_token
    )
    assert status == 200 and body == {"enabled": True}
    status, body = await server.request(
        "GET", f"{base}/underride/.m.rule.message/actions", token=client.access_token
    )
    assert status == 200 and body == {"actions": []}
    # Another user's rules are untouched.
    other = await server.client()
    rules = await _global(server, other)
    assert rules["override"][0]["enabled"] is False


async def test_legacy_actions_are_kept_as_set(server):
    """ "dont_notify" is ignored when evaluating, but a client reads back what it set."""
    client = await server.client()
    base = f"{V3}/pushrules/global"
    status, body = await server.request(
        "PUT",
        f"{base}/underride/.m.rule.message/actions",
        json={"actions": ["dont_notify"]},
        token=client.access_token,
    )
    assert status == 200, body
    status, body = await server.request(
        "PUT",
        f"{base}/sender/@bob:test.local",
        json={"actions": ["dont_notify"]},
        token=client.access_token,
    )
    assert status == 200, body
    rules = await _global(server, client)
    message = next(r for r in rules["underride"] if r["rule_id"] == ".m.rule.message")
    assert message["actions"] == ["dont_notify"]
    assert rules["sender"][0]["actions"] == ["dont_notify"]


async def test_push_rules_change_is_published_as_account_data(server):
    client = await server.client()
    await client.set_pushrule("global", PushRuleKind.content, "cake", actions=[], pattern="cake")
    row = await server.db.fetchrow(
        "SELECT content FROM account_data WHERE user_id = $1 AND type = 'm.push_rules'",
        client.user_id,
    )
    assert row is not None and '"cake"' in row["content"]


async def test_push_rule_errors_change_nothing(server):
    client = await server.client()
    token = client.access_token
    base = f"{V3}/pushrules/global"
    before = await _global(server, client)

    cases = [
        ("PUT", f"{base}/content/.mine", {"actions": [], "pattern": "x"}, 400, "M_INVALID_PARAM"),
        ("PUT", f"{base}/content/nopattern", {"actions": []}, 400, "M_MISSING_PARAM"),
        ("PUT", f"{base}/override/noactions", {"conditions": []}, 400, "M_MISSING_PARAM"),
        ("PUT", f"{base}/override/bad", {"actions": ["explode"]}, 400, "M_INVALID_PARAM"),
        ("PUT", f"{base}/override/bad", {"actions": "notify"}, 400, "M_BAD_JSON"),
        ("PUT", f"{base}/nonsense/x", {"actions": []}, 400, "M_INVALID_PARAM"),
        ("PUT", f"{base}/room/not-a-room", {"actions": []}, 400, "M_INVALID_PARAM"),
        (
            "PUT",
            f"{base}/content/x?before=ghost",
            {"actions": [], "pattern": "x"},
            400,
            "M_UNKNOWN",
        ),
        (
            "PUT",
            f"{base}/content/x?after=.m.rule.contains_user_name",
            {"actions": [], "pattern": "x"},
            400,
            "M_INVALID_PARAM",
        ),
        ("DELETE", f"{base}/override/.m.rule.master", None, 400, "M_INVALID_PARAM"),
        ("DELETE", f"{base}/override/ghost", None, 404, "M_NOT_FOUND"),
        ("GET", f"{base}/override/ghost", None, 404, "M_NOT_FOUND"),
        ("PUT", f"{base}/override/ghost/enabled", {"enabled": True}, 404, "M_NOT_FOUND"),
        ("PUT", f"{base}/override/.m.rule.master/enabled", {"enabled": "yes"}, 400, "M_BAD_JSON"),
        ("PUT", f"{base}/underride/ghost/actions", {"actions": []}, 404, "M_NOT_FOUND"),
        ("GET", f"{V3}/pushrules/device/override/x", None, 400, "M_INVALID_PARAM"),
    ]
    for method, path, body, status, errcode in cases:
        got_status, got = await server.request(method, path, token=token, json=body)
        assert (got_status, got.get("errcode")) == (status, errcode), (method, path, got)
    status, body = await server.request("PUT", f"{base}/override/x", token=token, data=b"{not json")
    assert status == 400 and body["errcode"] == "M_NOT_JSON"
    assert await _global(server, client) == before


async def test_pushers_set_list_and_delete(server):
    client = await server.client()
    token = client.access_token
    status, body = await server.request("GET", f"{V3}/pushers", token=token)
    assert status == 200 and body == {"pushers": []}
    pusher = {
        "kind": "http",
        "app_id": "org.example.app.ios",
        "pushkey": "key-1",
        "app_display_name": "Example",
        "device_display_name": "Phone",
        "lang": "en",
        "data": {
            "url": "https://push.example.org/_matrix/push/v1/notify",
            "format": "event_id_only",
        },
    }
    status, _ = await server.request("POST", f"{V3}/pushers/set", token=token, json=pusher)
    assert status == 200
    status, body = await server.request("GET", f"{V3}/pushers", token=token)
    assert body["pushers"] == [{k: v for k, v in pusher.items()}]

    bad = {**pusher, "data": {}}
    status, body = await server.request("POST", f"{V3}/pushers/set", token=token, json=bad)
    assert status == 400 and body["errcode"] == "M_MISSING_PARAM"
    status, body = await server.request(
        "POST", f"{V3}/pushers/set", token=token, json={"app_id": "a", "pushkey": "k"}
    )
    assert status == 400 and body["errcode"] == "M_MISSING_PARAM"

    delete = {"kind": None, "app_id": pusher["app_id"], "pushkey": "key-1"}
    status, _ = await server.request("POST", f"{V3}/pushers/set", token=token, json=delete)
    assert status == 200
    status, body = await server.request("GET", f"{V3}/pushers", token=token)
    assert body == {"pushers": []}


async def test_pushkey_moves_between_users_unless_append(server):
    alice, bob = await server.client(), await server.client()
    pusher = {
        "kind": "http",
        "app_id": "org.example.app",
        "pushkey": "shared",
        "app_display_name": "Example",
        "device_display_name": "Phone",
        "lang": "en",
        "data": {"url": "https://push.example.org/_matrix/push/v1/notify"},
    }
    await server.request("POST", f"{V3}/pushers/set", token=alice.access_token, json=pusher)
    await server.request("POST", f"{V3}/pushers/set", token=bob.access_token, json=pusher)
    _, body = await server.request("GET", f"{V3}/pushers", token=alice.access_token)
    assert body["pushers"] == []
    await server.request(
        "POST", f"{V3}/pushers/set", token=alice.access_token, json={**pusher, "append": True}
    )
    for client in (alice, bob):
        _, body = await server.request("GET", f"{V3}/pushers", token=client.access_token)
        assert len(body["pushers"]) == 1


async def test_rule_paths_lists_and_incomplete_forms(server):
    """Listing one kind; paths that stop short of a rule or name an unknown scope, kind or
    attribute: 400 (not 404) and nothing stored; a room rule named by an alias is kept."""
    client = await server.client()
    token = client.access_token
    status, body = await server.request("GET", f"{V3}/pushrules/global/override/", token=token)
    assert status == 200 and any(r["rule_id"] == ".m.rule.master" for r in body)
    status, _ = await server.request(
        "PUT",
        f"{V3}/pushrules/global/room/%23spam:example.com",
        token=token,
        json={"actions": ["notify"]},
    )
    assert status == 200
    status, body = await server.request("GET", f"{V3}/pushrules/global/room/", token=token)
    assert [r["rule_id"] for r in body] == ["#spam:example.com"]
    before = await server.db.fetchval("SELECT count(*) FROM push_rules")
    bad = [
        ("PUT", "/pushrules/"),
        ("GET", "/pushrules/global"),
        ("PUT", "/pushrules/global"),
        ("GET", "/pushrules/global/room"),
        ("PUT", "/pushrules/global/room"),
        ("PUT", "/pushrules/global/room/"),
        ("GET", "/pushrules/not_a_scope/"),
        ("GET", "/pushrules/global/not_a_template/"),
        ("GET", "/pushrules/global/override/.m.rule.master/not_an_attr"),
        ("PUT", "/pushrules/global/override/.m.rule.master/not_an_attr"),
    ]
    for method, path in bad:
        status, body = await server.request(
            method, f"{V3}{path}", token=token, json={"actions": ["notify"]}
        )
        assert status == 400 and body["errcode"] in ("M_INVALID_PARAM", "M_UNRECOGNIZED"), (
            method,
            path,
            body,
        )
    assert await server.db.fetchval("SELECT count(*) FROM push_rules") == before


async def test_rules_of_many_users_are_read_together_and_follow_changes(server):
    """The push worker asks every member's rules of a big room at once: one read for all,
    a read under way shared by whoever asks meanwhile, and each user's own rules."""
    alice, bob = await server.client(), await server.client()
    await bob.set_pushrule("global", PushRuleKind.sender, alice.user_id, actions=[])
    reads: list[list[str]] = []
    store = server.hs.push_rules.store

    class CountingStore:
        def __getattr__(self, name):
            return getattr(store, name)

        async def rules_of_users(self, user_ids):
            reads.append(list(user_ids))
            return await store.rules_of_users(user_ids)

    rules = PushRules(CountingStore(), server.hs.notifier)  # type: ignore[arg-type]
    one, both = await asyncio.gather(
        rules.ranked_rules(alice.user_id), rules.ranked_rules_of([alice.user_id, bob.user_id])
    )
    assert reads == [[alice.user_id], [bob.user_id]]
    assert both[alice.user_id] is one
    for user in (alice, bob):
        assert both[user.user_id] == ranked(await rules.ruleset(user.user_id))
    assert ("sender", alice.user_id) in [(k, r["rule_id"]) for k, r in both[bob.user_id]]
    assert alice.user_id not in [r["rule_id"] for _, r in both[alice.user_id]]

    # Cached until the user's rules change, then read again.
    assert await rules.ranked_rules_of([alice.user_id, bob.user_id]) == both
    assert len(reads) == 2
    await bob.delete_pushrule("global", PushRuleKind.sender, alice.user_id)
    again = await rules.ranked_rules_of([alice.user_id, bob.user_id])
    assert reads[2:] == [[bob.user_id]]
    assert alice.user_id not in [r["rule_id"] for _, r in again[bob.user_id]]
