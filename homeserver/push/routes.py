"""Push rules (/pushrules) and pushers (/pushers): push.md and pushrules.yaml, pusher.yaml.

Pushers' notifications are found and sent by homeserver/push/pusher.py; GET /notifications
lists what it found.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import forbidden, invalid_param, missing_param
from homeserver.http.request import field, json_body, json_response, parse_int64, query_int
from homeserver.http.routes import RouteTable
from homeserver.push.rules import PushRules, check_kind
from homeserver.rooms.serialize import client_event

routes = RouteTable()

_RULE = "/pushrules/{scope}/{kind}/{rule_id}"


def _rules(request: web.Request) -> PushRules:
    return get_hs(request).push_rules


def _scope(request: web.Request) -> None:
    # Device-specific scopes were removed from the spec; only "global" exists.
    if request.match_info["scope"] != "global":
        raise invalid_param("Only the 'global' push rule scope exists")


def _path(request: web.Request) -> tuple[str, str]:
    _scope(request)
    return request.match_info["kind"], request.match_info["rule_id"]


@routes.get("/pushrules/")
async def get_all(request: web.Request, requester: Requester) -> web.Response:
    return json_response(await _rules(request).ruleset(requester.user_id))


@routes.get("/pushrules/{scope}/")
async def get_global(request: web.Request, requester: Requester) -> web.Response:
    _scope(request)
    return json_response((await _rules(request).ruleset(requester.user_id))["global"])


@routes.get("/pushrules/{scope}/{kind}/")
async def get_kind(request: web.Request, requester: Requester) -> web.Response:
    _scope(request)
    kind = check_kind(request.match_info["kind"])
    return json_response((await _rules(request).ruleset(requester.user_id))["global"][kind])


# Paths that stop short of a rule: 400 rather than 404, as Synapse answers, so a client
# learns what its path lacks. (GET of the forms ending in "/" are the listings above.)
_INCOMPLETE = {
    "/pushrules/": ("PUT", "DELETE"),
    "/pushrules/{scope}": ("GET", "PUT", "DELETE"),
    "/pushrules/{scope}/": ("PUT", "DELETE"),
    "/pushrules/{scope}/{kind}": ("GET", "PUT", "DELETE"),
    "/pushrules/{scope}/{kind}/": ("PUT", "DELETE"),
}


async def _incomplete(request: web.Request, requester: Requester) -> web.Response:
    if "scope" in request.match_info:
        _scope(request)
    if "kind" in request.match_info:
        check_kind(request.match_info["kind"])
    raise invalid_param("The push rule path must name a scope, a kind and a rule ID")


for _incomplete_path, _methods in _INCOMPLETE.items():
    for _method in _methods:
        routes.route(_method, _incomplete_path)(_incomplete)


@routes.get(_RULE)
async def get_rule(request: web.Request, requester: Requester) -> web.Response:
    kind, rule_id = _path(request)
    return json_response(await _rules(request).get_rule(requester.user_id, kind, rule_id))


@routes.put(_RULE, ratelimit=True)
async def put_rule(request: web.Request, requester: Requester) -> web.Response:
    kind, rule_id = _path(request)
    body = await json_body(request)
    before, after = request.query.get("before"), request.query.get("after")
    await _rules(request).put_rule(requester.user_id, kind, rule_id, body, before, after)
    return json_response({})


@routes.delete(_RULE)
async def delete_rule(request: web.Request, requester: Requester) -> web.Response:
    kind, rule_id = _path(request)
    await _rules(request).delete_rule(requester.user_id, kind, rule_id)
    return json_response({})


@routes.get(_RULE + "/enabled")
async def get_enabled(request: web.Request, requester: Requester) -> web.Response:
    kind, rule_id = _path(request)
    rule = await _rules(request).get_rule(requester.user_id, kind, rule_id)
    return json_response({"enabled": rule["enabled"]})


@routes.put(_RULE + "/enabled")
async def put_enabled(request: web.Request, requester: Requester) -> web.Response:
    kind, rule_id = _path(request)
    enabled = field(await json_body(request), "enabled", bool)
    await _rules(request).set_enabled(requester.user_id, kind, rule_id, enabled)
    return json_response({})


@routes.get(_RULE + "/actions")
async def get_actions(request: web.Request, requester: Requester) -> web.Response:
    kind, rule_id = _path(request)
    rule = await _rules(request).get_rule(requester.user_id, kind, rule_id)
    return json_response({"actions": rule["actions"]})


@routes.put(_RULE + "/actions")
async def put_actions(request: web.Request, requester: Requester) -> web.Response:
    kind, rule_id = _path(request)
    actions = field(await json_body(request), "actions", list)
    await _rules(request).set_actions(requester.user_id, kind, rule_id, actions)
    return json_response({})


@routes.get(_RULE + "/{attr}")
async def get_unknown_attr(request: web.Request, requester: Requester) -> web.Response:
    _path(request)
    raise invalid_param("A push rule's attributes are 'enabled' and 'actions'")


@routes.put(_RULE + "/{attr}")
async def put_unknown_attr(request: web.Request, requester: Requester) -> web.Response:
    return await get_unknown_attr(request, requester)


# -- pushers ----------------------------------------------------------------------------------

_PUSHER_KINDS = ("http", "email")


@routes.get("/pushers")
async def get_pushers(request: web.Request, requester: Requester) -> web.Response:
    pushers = await get_hs(request).push_store.pushers(requester.user_id)
    return json_response({"pushers": pushers})


def _check_pusher(body: dict) -> dict:
    pusher = {
        "app_id": field(body, "app_id", str),
        "pushkey": field(body, "pushkey", str),
        "kind": body.get("kind", ...),
    }
    if pusher["kind"] is ...:
        raise missing_param("Missing 'kind'")
    if len(pusher["app_id"]) > 64 or len(pusher["pushkey"].encode()) > 512:
        raise invalid_param("app_id is limited to 64 characters and pushkey to 512 bytes")
    if pusher["kind"] is None:
        return pusher
    if pusher["kind"] not in _PUSHER_KINDS:
        raise invalid_param(f"Unsupported pusher kind {pusher['kind']!r}")
    for name in ("app_display_name", "device_display_name", "lang"):
        pusher[name] = field(body, name, str)
    pusher["data"] = field(body, "data", dict)
    pusher["profile_tag"] = field(body, "profile_tag", str, None)
    if pusher["kind"] == "http" and not isinstance(pusher["data"].get("url"), str):
        raise missing_param("An http pusher needs data.url")
    # The spec names one format ("event_id_only") "currently"; like Synapse, another string
    # is kept as given (SyTest and older clients send others): the gateway decides.
    if not isinstance(pusher["data"].get("format", ""), str):
        raise invalid_param("data.format must be a string")
    return pusher


@routes.post("/pushers/set", ratelimit=True)
async def set_pusher(request: web.Request, requester: Requester) -> web.Response:
    body = await json_body(request)
    pusher = _check_pusher(body)
    append = field(body, "append", bool, False)
    hs = get_hs(request)
    store = hs.push_store
    if pusher["kind"] == "http" and not hs.config.push.allows(pusher["data"]["url"]):
        raise forbidden("This server does not send notifications to that push gateway")
    if pusher["kind"] is None:
        await store.delete_pusher(requester.user_id, pusher["app_id"], pusher["pushkey"])
    else:
        await store.set_pusher(requester.user_id, requester.token_hash, pusher, append)
    return json_response({})


# -- notifications ----------------------------------------------------------------------------

MAX_NOTIFICATIONS = 100


@routes.get("/notifications")
async def get_notifications(request: web.Request, requester: Requester) -> web.Response:
    hs = get_hs(request)
    raw_from = request.query.get("from")
    from_pos = parse_int64(raw_from) if raw_from is not None else None
    if raw_from is not None and (from_pos is None or from_pos < 0):
        raise invalid_param("Unknown 'from' token")
    limit = query_int(request, "limit", 20, minimum=1, maximum=MAX_NOTIFICATIONS)
    only_highlight = request.query.get("only") == "highlight"
    found = await hs.push_worker.store.page(requester.user_id, from_pos, limit, only_highlight)
    events = await hs.event_store.get_events(n["event_id"] for n in found)
    notifications = [
        {
            "actions": n["actions"],
            "event": client_event(events[n["event_id"]]),
            "profile_tag": None,
            "read": n["read"],
            "room_id": n["room_id"],
            "ts": n["ts"],
        }
        for n in found
        if n["event_id"] in events
    ]
    body: dict = {"notifications": notifications}
    if len(found) == limit:
        body["next_token"] = str(found[-1]["stream_ordering"])
    return json_response(body)
