"""The push rule evaluator against the spec's own examples (push.md) and default rules."""

from __future__ import annotations

from homeserver.push.defaults import default_rules
from homeserver.push.evaluator import (
    PushContext,
    condition_matches,
    evaluate,
    glob_matches,
    highlights,
    notifies,
    split_path,
)

ME = "@alice:example.org"


def _ruleset(user_id=ME):
    rules = {k: before + after for k, (before, after) in default_rules(user_id).items()}
    return [
        (kind, r)
        for kind in ("override", "content", "room", "sender", "underride")
        for r in rules[kind]
    ]


def _ctx(**kw):
    return PushContext(user_id=ME, **{"room_member_count": 5, **kw})


def _msg(body="hello", sender="@bob:example.org", **content):
    return {
        "type": "m.room.message",
        "sender": sender,
        "room_id": "!r:example.org",
        "content": {"msgtype": "m.text", "body": body, **content},
    }


def test_split_path_escapes():
    assert split_path("content.m\\.relates_to.rel_type") == ("content", "m.relates_to", "rel_type")
    assert split_path("content.m\\\\foo") == ("content", "m\\foo")
    assert split_path("content.a\\xb") == ("content", "a\\xb")


def test_event_match_spec_topic_example():
    cond = {"kind": "event_match", "key": "content.topic", "pattern": "lunc?*"}

    def topic(value):
        return {"type": "m.room.topic", "content": {"topic": value}}

    assert condition_matches(cond, topic("Lunch plans"), _ctx())
    assert condition_matches(cond, topic("LUNCH"), _ctx())
    assert not condition_matches(cond, topic(" lunch"), _ctx())
    assert not condition_matches(cond, topic("lunc"), _ctx())
    assert not condition_matches(cond, topic(None), _ctx())
    star = {"kind": "event_match", "key": "content.topic", "pattern": "*"}
    assert not condition_matches(star, {"content": {}}, _ctx())


def test_event_match_body_word_boundaries():
    cond = {"kind": "event_match", "key": "content.body", "pattern": "ex*ple"}
    for body in ("An example event.", "exple", "An exciting triple-whammy"):
        assert condition_matches(cond, _msg(body), _ctx()), body
    assert not condition_matches(cond, _msg("examples"), _ctx())
    assert not condition_matches(cond, _msg("reexample"), _ctx())


def test_glob_is_literal_for_regex_characters():
    assert glob_matches("a.b", "a.b") and not glob_matches("a.b", "axb")
    assert glob_matches("[x]", "[X]")


def test_event_property_is_spec_example():
    cond = {"kind": "event_property_is", "key": "content.m\\.federate", "value": True}
    create = {"type": "m.room.create", "content": {"m.federate": True}}
    assert condition_matches(cond, create, _ctx())
    for value in ("true", 1):
        assert not condition_matches(cond, {"content": {"m.federate": value}}, _ctx())
    one = {"kind": "event_property_is", "key": "content.n", "value": 1}
    assert not condition_matches(one, {"content": {"n": True}}, _ctx())
    assert condition_matches(one, {"content": {"n": 1}}, _ctx())
    null = {"kind": "event_property_is", "key": "content.n", "value": None}
    assert condition_matches(null, {"content": {"n": None}}, _ctx())
    assert not condition_matches(null, {"content": {}}, _ctx())


def test_event_property_contains_spec_example():
    cond = {
        "kind": "event_property_contains",
        "key": "content.alt_aliases",
        "value": "#myroom:example.com",
    }
    event = {"content": {"alt_aliases": ["#somewhere:example.org", "#myroom:example.com"]}}
    assert condition_matches(cond, event, _ctx())
    assert not condition_matches(cond, {"content": {"alt_aliases": [":example.com"]}}, _ctx())
    assert not condition_matches(cond, {"content": {"alt_aliases": "#myroom:example.com"}}, _ctx())


def test_room_member_count():
    def count(spec, n):
        return condition_matches(
            {"kind": "room_member_count", "is": spec}, {}, _ctx(room_member_count=n)
        )

    assert count("2", 2) and not count("2", 3)
    assert count("==2", 2)
    assert count("<=10", 10) and not count("<10", 10)
    assert count(">2", 3) and not count(">=4", 3)
    assert not count("about 2", 2)


def test_sender_notification_permission():
    cond = {"kind": "sender_notification_permission", "key": "room"}
    event = {"sender": "@mod:example.org"}
    levels = {"users": {"@mod:example.org": 50}, "users_default": 0}
    assert condition_matches(cond, event, _ctx(power_levels=levels))
    assert not condition_matches(cond, {"sender": "@pleb:example.org"}, _ctx(power_levels=levels))
    strict = {**levels, "notifications": {"room": 100}}
    assert not condition_matches(cond, event, _ctx(power_levels=strict))
    assert condition_matches(cond, event, _ctx(power_levels=strict, sender_power_level=100))


def test_unknown_condition_never_matches():
    assert not condition_matches({"kind": "org.example.future"}, _msg(), _ctx())


def test_plain_message_notifies_without_highlight():
    actions = evaluate(_ruleset(), _msg("hi all"), _ctx())
    assert notifies(actions) and not highlights(actions)


def test_one_to_one_message_plays_sound():
    actions = evaluate(_ruleset(), _msg("hi"), _ctx(room_member_count=2))
    assert {"set_tweak": "sound", "value": "default"} in actions


def test_user_mention_highlights():
    event = _msg("hey", **{"m.mentions": {"user_ids": [ME]}})
    actions = evaluate(_ruleset(), event, _ctx())
    assert notifies(actions) and highlights(actions)


def test_display_name_and_user_name_highlight():
    assert highlights(
        evaluate(_ruleset(), _msg("ask Alice Smith"), _ctx(display_name="Alice Smith"))
    )
    assert highlights(evaluate(_ruleset(), _msg("ping alice!"), _ctx()))
    assert not highlights(evaluate(_ruleset(), _msg("malice"), _ctx()))


def test_room_mention_needs_power():
    event = _msg("@room look", sender="@mod:example.org", **{"m.mentions": {"room": True}})
    levels = {"users": {"@mod:example.org": 50}}
    assert highlights(evaluate(_ruleset(), event, _ctx(power_levels=levels)))
    weak = {**event, "sender": "@pleb:example.org"}
    assert not highlights(evaluate(_ruleset(), weak, _ctx(power_levels=levels)))


def test_notices_edits_reactions_and_own_events_are_silent():
    assert evaluate(_ruleset(), _msg("bot", msgtype="m.notice"), _ctx()) == []
    edit = _msg("* fixed", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$e"}})
    assert evaluate(_ruleset(), edit, _ctx()) == []
    reaction = {"type": "m.reaction", "sender": "@bob:example.org", "content": {}}
    assert evaluate(_ruleset(), reaction, _ctx()) == []
    assert evaluate(_ruleset(), _msg("mine", sender=ME), _ctx()) is None


def test_invite_for_me_and_member_events():
    invite = {
        "type": "m.room.member",
        "sender": "@bob:example.org",
        "state_key": ME,
        "content": {"membership": "invite"},
    }
    assert notifies(evaluate(_ruleset(), invite, _ctx()))
    other = {**invite, "state_key": "@carol:example.org"}
    assert evaluate(_ruleset(), other, _ctx()) == []


def test_encrypted_and_calls_and_tombstone():
    enc = {"type": "m.room.encrypted", "sender": "@bob:example.org", "content": {}}
    assert evaluate(_ruleset(), enc, _ctx()) == ["notify"]
    call = {"type": "m.call.invite", "sender": "@bob:example.org", "content": {}}
    assert {"set_tweak": "sound", "value": "ring"} in evaluate(_ruleset(), call, _ctx())
    tomb = {
        "type": "m.room.tombstone",
        "state_key": "",
        "sender": "@bob:example.org",
        "content": {},
    }
    assert highlights(evaluate(_ruleset(), tomb, _ctx()))
    unknown = {"type": "org.example.custom", "sender": "@bob:example.org", "content": {}}
    assert evaluate(_ruleset(), unknown, _ctx()) is None


def test_master_rule_silences_everything_when_enabled():
    rules = _ruleset()
    kind, master = rules[0]
    assert master["rule_id"] == ".m.rule.master" and not master["enabled"]
    rules[0] = (kind, {**master, "enabled": True})
    assert evaluate(rules, _msg("hi", **{"m.mentions": {"user_ids": [ME]}}), _ctx()) == []


def test_room_and_sender_rules_and_historical_actions():
    rules = [("room", {"rule_id": "!r:example.org", "enabled": True, "actions": ["dont_notify"]})]
    assert evaluate(rules + _ruleset(), _msg("hi"), _ctx()) == []
    rules = [("sender", {"rule_id": "@bob:example.org", "enabled": True, "actions": ["notify"]})]
    assert evaluate(rules, _msg("hi"), _ctx()) == ["notify"]
    assert evaluate(rules, _msg("hi", sender="@eve:example.org"), _ctx()) is None


def test_word_match_without_wildcards_agrees_with_the_regex():
    """glob_matches avoids a regex for plain words; it must match exactly where the
    word-boundary regex does."""
    from homeserver.push.evaluator import _glob_regex

    cases = [
        ("alice", "hi alice!"),
        ("alice", "hi Alice"),
        ("alice", "malice"),
        ("alice", "alice_b"),
        ("alice", "alice"),
        ("Dr. Who", "ask dr. who."),
        ("Dr. Who", "dr. whom"),
        ("bob", "bob bob1 bob"),
        ("bob", "bobbob"),
        ("émile", "Salut ÉMILE"),
        ("a.b", "axb a.b"),
    ]
    for word, text in cases:
        expected = _glob_regex(word, True).search(text) is not None
        assert glob_matches(word, text, word_boundary=True) is expected, (word, text)
    # Patterns with wildcards still go through the regex.
    assert glob_matches("al*e", "hi alice", word_boundary=True)


def test_a_memo_shared_by_users_gives_each_their_own_verdict():
    from homeserver.push.defaults import SHARED_EVENT_ONLY_RULES
    from homeserver.push.rules import PushRules, ranked
    from storage.push import DefaultOverride

    alice, bob, dan = ME, "@bob:example.org", "@dan:example.org"
    events = [
        {"type": "m.room.message", "sender": "@carol:example.org", "room_id": "!r:x",
         "content": {"msgtype": "m.text", "body": "hello bob"}},
        {"type": "m.room.message", "sender": "@carol:example.org", "room_id": "!r:x",
         "content": {"msgtype": "m.notice", "body": "a notice"}},
        {"type": "m.room.member", "sender": "@carol:example.org", "room_id": "!r:x",
         "state_key": alice, "content": {"membership": "invite"}},
    ]  # fmt: skip
    rules = {u: ranked(PushRules._merge(u, [], {})) for u in (alice, bob)}
    # Dan turned the default message rule off: his copy of it is his own.
    rules[dan] = ranked(
        PushRules._merge(dan, [], {".m.rule.message": DefaultOverride(False, None)})
    )
    for event in events:
        memo: dict[int, bool] = {}
        for user, ranked_rules in rules.items():
            ctx = PushContext(user_id=user, room_member_count=5, display_name=None)
            assert evaluate(ranked_rules, event, ctx, memo) == evaluate(ranked_rules, event, ctx)
        assert memo and set(memo) <= SHARED_EVENT_ONLY_RULES
    memo = {}
    verdicts = {
        u: evaluate(r, events[0], PushContext(user_id=u, room_member_count=5), memo)
        for u, r in rules.items()
    }
    assert highlights(verdicts[bob]) and notifies(verdicts[alice]) and verdicts[dan] is None
