"""U+0000 in every string the Client-Server API takes, operation by operation from the spec.

PostgreSQL text cannot hold U+0000, so a NUL that reaches a text column is an internal
error. The server refuses it at the boundary: in JSON bodies (M_BAD_JSON), path and query
parameters (M_INVALID_PARAM). The one exception is event content, which is stored as
canonical JSON text where the character is escaped; Synapse accepts it there too.

The requests are generated from the OpenAPI files: for each operation a minimal valid
body (required properties and the spec's examples, with real IDs substituted), then one
variant per string field, per object key and per path and query parameter.
"""

from __future__ import annotations

import copy
import itertools
import re
import secrets
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from tests.schema import client_server_operations

NUL = "\u0000"
BACKUP_ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"

# The operations whose body is event content: U+0000 there is stored escaped and accepted.
CONTENT_BODIES = {
    ("PUT", "/rooms/{roomId}/send/{eventType}/{txnId}"),
    ("PUT", "/rooms/{roomId}/state/{eventType}/{stateKey}"),
}

# Operations that can spend the user, device, room or backup they act on (were a variant
# accepted): each runs in a context of its own, rebuilt after any 2xx.
SPENDING = {
    ("POST", "/logout"),
    ("POST", "/logout/all"),
    ("POST", "/account/deactivate"),
    ("POST", "/account/password"),
    ("POST", "/delete_devices"),
    ("DELETE", "/devices/{deviceId}"),
    ("POST", "/rooms/{roomId}/leave"),
    ("POST", "/rooms/{roomId}/forget"),
    ("POST", "/rooms/{roomId}/kick"),
    ("POST", "/rooms/{roomId}/ban"),
    ("POST", "/rooms/{roomId}/upgrade"),
    ("DELETE", "/room_keys/version/{version}"),
    ("DELETE", "/directory/room/{roomAlias}"),
}

# Path parameters whose value depends on the operation.
_EVENT_TYPE_FOR = {"send": "m.room.message", "state": "m.room.topic"}


@dataclass
class Context:
    """A user with a room, an event, an alias, a filter, a backup version and an upload."""

    token: str
    user_id: str
    device_id: str
    room_id: str
    event_id: str
    alias: str
    filter_id: str
    backup_version: str
    media_id: str
    server_name: str


async def _ok(server, method: str, path: str, token: str, **kw) -> dict:
    status, body = await server.request(method, path, token=token, **kw)
    assert status == 200, (method, path, status, body)
    return body


async def make_context(server) -> Context:
    client = await server.client()
    token = client.access_token
    name = f"nul{secrets.token_hex(4)}"
    room = await _ok(
        server, "POST", "/_matrix/client/v3/createRoom", token, json={"room_alias_name": name}
    )
    room_id = room["room_id"]
    sent = await _ok(
        server,
        "PUT",
        f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t0",
        token,
        json={"msgtype": "m.text", "body": "hello"},
    )
    user_path = urllib.parse.quote(client.user_id, safe="")
    made_filter = await _ok(
        server, "POST", f"/_matrix/client/v3/user/{user_path}/filter", token, json={}
    )
    backup = await _ok(
        server,
        "POST",
        "/_matrix/client/v3/room_keys/version",
        token,
        json={"algorithm": BACKUP_ALGORITHM, "auth_data": {"public_key": "abc"}},
    )
    upload = await _ok(
        server,
        "POST",
        "/_matrix/media/v3/upload?filename=a.txt",
        token,
        data=b"hello",
        headers={"Content-Type": "text/plain"},
    )
    return Context(
        token=token,
        user_id=client.user_id,
        device_id=client.device_id,
        room_id=room_id,
        event_id=sent["event_id"],
        alias=f"#{name}:{server.server_name}",
        filter_id=made_filter["filter_id"],
        backup_version=backup["version"],
        media_id=upload["content_uri"].rsplit("/", 1)[1],
        server_name=server.server_name,
    )


_txn_counter = itertools.count()


def _path_value(ctx: Context, name: str, path: str) -> str:
    if name == "eventType":
        return "m.room.topic" if "/state/" in path else "m.room.message"
    if name == "txnId":
        return f"nul-txn-{next(_txn_counter)}"
    return {
        "roomId": ctx.room_id,
        "roomIdOrAlias": ctx.room_id,
        "roomAlias": ctx.alias,
        "userId": ctx.user_id,
        "eventId": ctx.event_id,
        "stateKey": "",
        "deviceId": ctx.device_id,
        "filterId": ctx.filter_id,
        "kind": "override",
        "ruleId": "org.example.rule",
        "tag": "u.work",
        "type": "org.example.data",
        "version": ctx.backup_version,
        "sessionId": "session",
        "keyName": "displayname",
        "receiptType": "m.read",
        "serverName": ctx.server_name,
        "mediaId": ctx.media_id,
        "fileName": "a.txt",
        "relType": "m.thread",
    }.get(name, "x")


def _query_value(ctx: Context, param: dict) -> str:
    name = param["name"]
    special = {
        "version": ctx.backup_version,
        "dir": "b",
        "url": "http://127.0.0.1:1/",
        "redirectUrl": "http://127.0.0.1:1/",
        "server": ctx.server_name,
        "server_name": ctx.server_name,
        "via": ctx.server_name,
        "user_id": ctx.user_id,
        "userid": ctx.user_id,
        "room_id": ctx.room_id,
        "timeout": "0",
        "timeout_ms": "1000",
    }
    if name in special:
        return special[name]
    schema = param.get("schema") or {}
    if "example" in param:
        return (
            str(param["example"]).lower()
            if isinstance(param["example"], bool)
            else str(param["example"])
        )
    if "enum" in schema:
        return str(schema["enum"][0])
    kind = _types(schema)
    if "integer" in kind or "number" in kind:
        return "1"
    if "boolean" in kind:
        return "true"
    return "x"


def _types(schema: dict) -> set[str]:
    kind = schema.get("type")
    if isinstance(kind, list):
        return set(kind)
    return {kind} if kind else set()


def _substitute(value: Any, ctx: Context) -> Any:
    """The spec's example IDs replaced by real ones, so that a request gets as far as it can."""
    if isinstance(value, dict):
        return {_substitute(k, ctx): _substitute(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, ctx) for v in value]
    if isinstance(value, str):
        if re.fullmatch(r"@[^:]+:.+", value):
            return ctx.user_id
        if re.fullmatch(r"![^:]+:.+", value):
            return ctx.room_id
        if re.fullmatch(r"#[^:]+:.+", value):
            return ctx.alias
        if re.fullmatch(r"\$\S+", value):
            return ctx.event_id
        if value.startswith("mxc://"):
            return f"mxc://{ctx.server_name}/{ctx.media_id}"
    return value


def _minimal(schema: dict, depth: int = 0) -> Any:
    """A value for `schema`: its example, else its required properties."""
    if "example" in schema:
        return copy.deepcopy(schema["example"])
    for key in ("allOf", "oneOf", "anyOf"):
        if schema.get(key):
            return _minimal(_merge(schema[key]) if key == "allOf" else schema[key][0], depth)
    kind = _types(schema)
    if "object" in kind or "properties" in schema:
        props = schema.get("properties") or {}
        if depth > 6:
            return {}
        return {
            name: _minimal(props.get(name, {}), depth + 1) for name in schema.get("required", [])
        }
    if "array" in kind:
        return [_minimal(schema.get("items") or {}, depth + 1)] if schema.get("minItems") else []
    if "enum" in schema:
        return schema["enum"][0]
    if "string" in kind:
        return "x"
    if "integer" in kind or "number" in kind:
        return 1
    if "boolean" in kind:
        return True
    return {}


def _merge(schemas: list[dict]) -> dict:
    merged: dict = {"type": "object", "properties": {}, "required": []}
    for part in schemas:
        merged["properties"].update(part.get("properties") or {})
        merged["required"] += part.get("required") or []
        if "example" in part:
            merged["example"] = part["example"]
    return merged


Path = tuple[str | int, ...]


def _schema_string_paths(schema: dict, prefix: Path = (), depth: int = 0) -> set[Path]:
    """Where the schema allows a string: property chains, array items as index 0, map
    values under the key "k"."""
    found: set[Path] = set()
    if depth > 6 or not isinstance(schema, dict):
        return found
    if "string" in _types(schema) and prefix:
        found.add(prefix)
    for key in ("allOf", "oneOf", "anyOf"):
        for part in schema.get(key) or []:
            found |= _schema_string_paths(part, prefix, depth + 1)
    for name, sub in (schema.get("properties") or {}).items():
        found |= _schema_string_paths(sub, (*prefix, name), depth + 1)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        found |= _schema_string_paths(extra, (*prefix, "k"), depth + 1)
    if isinstance(schema.get("items"), dict):
        found |= _schema_string_paths(schema["items"], (*prefix, 0), depth + 1)
    return found


def _value_string_paths(value: Any, prefix: Path = ()) -> set[Path]:
    found: set[Path] = set()
    if isinstance(value, str) and prefix:
        found.add(prefix)
    elif isinstance(value, dict):
        for k, v in value.items():
            found |= _value_string_paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found |= _value_string_paths(v, (*prefix, i))
    return found


def _object_paths(value: Any, prefix: Path = ()) -> list[Path]:
    found: list[Path] = []
    if isinstance(value, dict):
        found.append(prefix)
        for k, v in value.items():
            found += _object_paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _object_paths(v, (*prefix, i))
    return found


def _with_nul_at(body: dict, path: Path) -> dict:
    """A copy of `body` whose string at `path` carries U+0000 (containers made as needed)."""
    body = copy.deepcopy(body)
    node: Any = body
    for here, after in zip(path, path[1:], strict=False):
        want: Any = [] if isinstance(after, int) else {}
        if isinstance(node, list):
            while len(node) <= here:
                node.append(copy.copy(want))
            if not isinstance(node[here], type(want)):
                node[here] = want
            node = node[here]
        else:
            if not isinstance(node.get(here), type(want)):
                node[here] = want
            node = node[here]
    last = path[-1]
    if isinstance(node, list):
        while len(node) <= last:
            node.append(None)
        old = node[last]
    else:
        old = node.get(last)
    node[last] = (old if isinstance(old, str) else "x") + NUL
    return body


def _with_nul_key(body: dict, path: Path) -> dict:
    body = copy.deepcopy(body)
    node: Any = body
    for key in path:
        node = node[key]
    node["k" + NUL] = "v"
    return body


@dataclass
class Variant:
    label: str  # what carries U+0000: "path:roomId", "query:from", "body:a.b", "key:a"
    method: str
    url: str
    body: Any  # None: no JSON body


@dataclass
class Operation:
    method: str
    path: str
    base: str
    authed: bool
    path_params: list[str]
    query_params: list[dict]
    body_schema: dict | None

    def variants(self, ctx: Context) -> list[Variant]:
        out: list[Variant] = []
        base_body = self._base_body(ctx)
        for name in self.path_params:
            out.append(Variant(f"path:{name}", self.method, self._url(ctx, name, None), base_body))
        for param in self.query_params:
            label = f"query:{param['name']}"
            out.append(Variant(label, self.method, self._url(ctx, None, param), base_body))
        if base_body is None:
            return out
        paths = _schema_string_paths(self.body_schema or {}) | _value_string_paths(base_body)
        for path in sorted(paths, key=lambda p: tuple(map(str, p))):
            label = "body:" + ".".join(map(str, path))
            out.append(Variant(label, self.method, self._url(ctx), _with_nul_at(base_body, path)))
        for path in _object_paths(base_body):
            label = "key:" + ".".join(map(str, path))
            out.append(Variant(label, self.method, self._url(ctx), _with_nul_key(base_body, path)))
        return out

    def _base_body(self, ctx: Context) -> dict | None:
        if self.body_schema is None:
            return None
        body = _substitute(_minimal(self.body_schema), ctx)
        return body if isinstance(body, dict) else None

    def _url(self, ctx: Context, nul_path: str | None = None, nul_query: dict | None = None) -> str:
        path = self.path
        for name in self.path_params:
            value = _path_value(ctx, name, self.path)
            if name == nul_path:
                value += NUL
            path = path.replace("{" + name + "}", urllib.parse.quote(value, safe=""))
        query = {
            p["name"]: _query_value(ctx, p)
            for p in self.query_params
            if p.get("required") or p["name"] == "timeout"
        }
        if nul_query is not None:
            query[nul_query["name"]] = _query_value(ctx, nul_query) + NUL
        url = self.base + path
        if query:
            url += "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
        return url


def load_operations() -> list[Operation]:
    ops = []
    for _file, method, path, base, op in client_server_operations():
        if not base.startswith("/_matrix"):
            continue  # .well-known: static documents
        params = op.get("parameters") or []
        body_schema = None
        content = (op.get("requestBody") or {}).get("content") or {}
        if "application/json" in content:
            body_schema = content["application/json"].get("schema") or {}
        ops.append(
            Operation(
                method=method,
                # The spec tells apart two operations on one path by a trailing space.
                path=path.strip(),
                base=base,
                authed=bool(op.get("security")),
                path_params=[p["name"] for p in params if p["in"] == "path"],
                query_params=[p for p in params if p["in"] == "query"],
                body_schema=body_schema,
            )
        )
    return ops


def _acceptable(op: Operation, variant: Variant, status: int, body: Any) -> str | None:
    """Why this answer to a NUL input is wrong, or None."""
    if status >= 500:
        return "server error"
    legit = (op.method, op.path) in CONTENT_BODIES and variant.label.startswith(("body:", "key:"))
    if 200 <= status < 300:
        return None if legit else "accepted"
    if not (400 <= status < 500):
        return f"status {status}"
    if not (isinstance(body, dict) and str(body.get("errcode", "")).startswith("M_")):
        return "no Matrix errcode"
    return None


async def test_nul_in_every_string_of_every_client_operation(server):
    main = await make_context(server)
    spare: Context | None = None
    failures: list[str] = []
    stats: Counter = Counter()
    unrecognized: set[str] = set()
    for op in load_operations():
        spending = (op.method, op.path) in SPENDING
        if spending:
            spare = await make_context(server)
        variants_seen = 0
        served = False
        for index in itertools.count():
            ctx = spare if spending and spare is not None else main
            variants = op.variants(ctx)
            if index >= len(variants):
                break
            variant = variants[index]
            variants_seen += 1
            status, body = await server.request(
                variant.method,
                variant.url,
                token=ctx.token if op.authed else None,
                json=variant.body,
            )
            stats["requests"] += 1
            stats["variants in " + variant.label.split(":")[0]] += 1
            stats[f"status {status // 100}xx"] += 1
            if not (isinstance(body, dict) and body.get("errcode") == "M_UNRECOGNIZED"):
                served = True
            problem = _acceptable(op, variant, status, body)
            if problem is not None:
                failures.append(
                    f"{op.method} {op.path} [{variant.label}] -> {status} "
                    f"{body.get('errcode') if isinstance(body, dict) else body}: {problem}"
                )
            if spending and 200 <= status < 300:
                spare = await make_context(server)
        stats["operations"] += 1
        if variants_seen and not served:
            unrecognized.add(f"{op.method} {op.path}")
        if variants_seen:
            stats["operations with variants"] += 1
    stats["operations not served (only M_UNRECOGNIZED)"] = len(unrecognized)
    print(f"\nU+0000 sweep: {dict(stats)}")
    print("Operations not served:", *sorted(unrecognized), sep="\n  ")
    assert not failures, f"{len(failures)} wrong answers:\n" + "\n".join(failures)


@pytest.mark.parametrize("field", ["pushkey", "app_id", "lang", "app_display_name"])
async def test_pusher_fields_refuse_nul_and_store_nothing(server, field):
    ctx = await make_context(server)
    body = {
        "pushkey": "key",
        "kind": "http",
        "app_id": "org.example.app",
        "app_display_name": "App",
        "device_display_name": "Phone",
        "lang": "en",
        "data": {"url": "https://push.example.org/_matrix/push/v1/notify"},
    }
    body[field] += NUL
    status, answer = await server.request(
        "POST", "/_matrix/client/v3/pushers/set", token=ctx.token, json=body
    )
    assert (status, answer["errcode"]) == (400, "M_BAD_JSON")
    status, answer = await server.request("GET", "/_matrix/client/v3/pushers", token=ctx.token)
    assert (status, answer) == (200, {"pushers": []})


async def test_nul_in_event_content_is_stored_and_returned(server):
    ctx = await make_context(server)
    status, sent = await server.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{ctx.room_id}/send/m.room.message/nul1",
        token=ctx.token,
        json={"msgtype": "m.text", "body": "a" + NUL + "b"},
    )
    assert status == 200
    status, event = await server.request(
        "GET",
        f"/_matrix/client/v3/rooms/{ctx.room_id}/event/{sent['event_id']}",
        token=ctx.token,
    )
    assert status == 200 and event["content"]["body"] == "a" + NUL + "b"


async def test_nul_membership_in_member_state_is_refused(server):
    """A member event's membership goes to its own column: the content exception ends there."""
    ctx = await make_context(server)
    user = urllib.parse.quote(ctx.user_id, safe="")
    before = await server.db.fetchval("SELECT count(*) FROM events")
    status, answer = await server.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{ctx.room_id}/state/m.room.member/{user}",
        token=ctx.token,
        json={"membership": "join" + NUL},
    )
    assert 400 <= status < 500 and answer["errcode"].startswith("M_")
    assert await server.db.fetchval("SELECT count(*) FROM events") == before


async def test_nul_in_access_token_and_unknown_query(server):
    status, answer = await server.request(
        "GET", "/_matrix/client/v3/account/whoami?access_token=abc%00"
    )
    assert (status, answer["errcode"]) == (400, "M_INVALID_PARAM")
    ctx = await make_context(server)
    status, answer = await server.request(
        "GET", "/_matrix/client/v3/account/whoami?x%00=1", token=ctx.token
    )
    assert (status, answer["errcode"]) == (400, "M_INVALID_PARAM")


def _x(text: str) -> str:
    return text.replace("0", NUL)


# Event content our server reads back as IDs and looks up (aliases, rooms, events, users).
LOOKED_UP_CONTENT = [
    ("send", "m.room.redaction", {"redacts": _x("$0")}),
    (
        "send",
        "m.room.message",
        {"body": "r", "m.relates_to": {"rel_type": "m.thread", "event_id": _x("$0")}},
    ),
    (
        "send",
        "m.room.message",
        {"body": "r", "m.relates_to": {"m.in_reply_to": {"event_id": _x("$0")}}},
    ),
    (
        "send",
        "m.reaction",
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": _x("$0"), "key": "k"}},
    ),
    ("state", "m.room.canonical_alias", {"alias": _x("#a0:test.local")}),
    ("state", "m.room.canonical_alias", {"alt_aliases": [_x("#a0:test.local")]}),
    (
        "state",
        "m.room.join_rules",
        {
            "join_rule": "restricted",
            "allow": [{"type": "m.room_membership", "room_id": _x("!0:test.local")}],
        },
    ),
    ("state", "m.room.join_rules", {"join_rule": _x("public0")}),
    ("state", "m.room.history_visibility", {"history_visibility": _x("shared0")}),
    ("state", "m.room.power_levels", {"users": {_x("@0:test.local"): 100}}),
    ("state", "m.room.tombstone", {"body": "moved", "replacement_room": _x("!0:test.local")}),
    ("state", "m.room.pinned_events", {"pinned": [_x("$0")]}),
    ("state", "m.room.server_acl", {"allow": [_x("*0")], "deny": []}),
    ("state", "m.room.encryption", {"algorithm": _x("m.megolm.v1.aes-sha20")}),
    ("state", "m.room.avatar", {"url": _x("mxc://test.local/0")}),
]


@pytest.mark.parametrize("kind,event_type,content", LOOKED_UP_CONTENT)
async def test_nul_in_event_content_that_is_looked_up(server, kind, event_type, content):
    ctx = await make_context(server)
    if kind == "send":
        path = f"/rooms/{ctx.room_id}/send/{event_type}/nul-{secrets.token_hex(4)}"
    else:
        path = f"/rooms/{ctx.room_id}/state/{event_type}/"
    status, answer = await server.request(
        "PUT", "/_matrix/client/v3" + path, token=ctx.token, json=content
    )
    assert status < 500, (status, answer)
    if status >= 400:
        assert answer["errcode"].startswith("M_")
    # The room still works for its creator.
    status, _ = await server.request(
        "GET", f"/_matrix/client/v3/rooms/{ctx.room_id}/state", token=ctx.token
    )
    assert status == 200
    status, _ = await server.request("GET", "/_matrix/client/v3/sync?timeout=0", token=ctx.token)
    assert status == 200
    status, _ = await server.request(
        "GET", f"/_matrix/client/v3/rooms/{ctx.room_id}/messages?dir=b", token=ctx.token
    )
    assert status == 200
    # Another user's join runs the join rules and reads the room's state.
    other = await server.client()
    status, answer = await server.request(
        "POST", f"/_matrix/client/v3/join/{ctx.room_id}", token=other.access_token, json={}
    )
    assert status < 500, (status, answer)


@pytest.mark.parametrize(
    "path",
    [
        "/sync?timeout=0&filter=",
        "/rooms/{room}/messages?dir=b&filter=",
        "/rooms/{room}/context/{event}?filter=",
    ],
)
async def test_nul_in_inline_json_filters(server, path):
    """Filters given inline as JSON in the query: U+0000 as the JSON escape, not as %00."""
    ctx = await make_context(server)
    inline = '{"room": {"rooms": ["!a\\u0000"], "timeline": {"types": ["b\\u0000"]}}, '
    inline += '"types": ["c\\u0000"], "senders": ["@d\\u0000:x"]}'
    url = path.format(room=ctx.room_id, event=ctx.event_id) + urllib.parse.quote(inline)
    status, answer = await server.request("GET", "/_matrix/client/v3" + url, token=ctx.token)
    assert (status, answer["errcode"]) == (400, "M_INVALID_PARAM")
