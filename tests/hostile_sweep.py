"""Hostile values in every field of every Client-Server operation, from the spec's OpenAPI.

For each operation: a minimal valid request (required properties and the spec's examples,
with real IDs substituted), and its slots — each path parameter, query parameter, string
and number field of the JSON body, and object of the body (for hostile keys). A payload
(U+0000, a lone surrogate, int64+1, 2^53, a float, 10,000-deep JSON, an oversized string)
placed into a slot makes one variant; `sweep` sends variants and collects wrong answers.

Used by tests/integration/server/test_hostile_nul.py (U+0000 into every slot, which must
be refused) and tests/integration/hostile/test_hostile_edge_fuzz.py (every payload,
sampled, where no answer may be a 5xx).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import secrets
import urllib.parse
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.schema import client_server_operations

NUL = "\u0000"
BACKUP_ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"

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
    sync_token: str
    pagination_token: str


async def _ok(server, method: str, path: str, token: str, **kw) -> dict:
    status, body = await server.request(method, path, token=token, **kw)
    assert status == 200, (method, path, status, body)
    return body


async def make_context(server) -> Context:
    client = await server.client()
    token = client.access_token
    name = f"sweep{secrets.token_hex(4)}"
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
    synced = await _ok(server, "GET", "/_matrix/client/v3/sync?timeout=0", token)
    page = await _ok(server, "GET", f"/_matrix/client/v3/rooms/{room_id}/messages?dir=b", token)
    return Context(
        sync_token=synced["next_batch"],
        pagination_token=page["start"],
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
        return f"sweep-txn-{next(_txn_counter)}"
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
        # Real tokens, so that a payload inside them reaches their decoding.
        "since": ctx.sync_token,
        "from": ctx.pagination_token,
        "to": ctx.pagination_token,
        "at": ctx.sync_token,
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


def _schema_paths(schema: dict, kinds: set[str], prefix: Path = (), depth: int = 0) -> set[Path]:
    """Where the schema allows one of `kinds`: property chains, array items as index 0,
    map values under the key "k"."""
    found: set[Path] = set()
    if depth > 6 or not isinstance(schema, dict):
        return found
    if _types(schema) & kinds and prefix:
        found.add(prefix)
    for key in ("allOf", "oneOf", "anyOf"):
        for part in schema.get(key) or []:
            found |= _schema_paths(part, kinds, prefix, depth + 1)
    for name, sub in (schema.get("properties") or {}).items():
        found |= _schema_paths(sub, kinds, (*prefix, name), depth + 1)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        found |= _schema_paths(extra, kinds, (*prefix, "k"), depth + 1)
    if isinstance(schema.get("items"), dict):
        found |= _schema_paths(schema["items"], kinds, (*prefix, 0), depth + 1)
    return found


def _value_paths(value: Any, kinds: tuple[type, ...], prefix: Path = ()) -> set[Path]:
    found: set[Path] = set()
    if isinstance(value, kinds) and not isinstance(value, bool) and prefix:
        found.add(prefix)
    elif isinstance(value, dict):
        for k, v in value.items():
            found |= _value_paths(v, kinds, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found |= _value_paths(v, kinds, (*prefix, i))
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


def _with_value_at(body: dict, path: Path, make: Callable[[Any], Any]) -> dict:
    """A copy of `body` whose value at `path` is `make(old value)` (containers made as
    needed)."""
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
    node[last] = make(old)
    return body


def _with_key(body: dict, path: Path, key: str) -> dict:
    body = copy.deepcopy(body)
    node: Any = body
    for step in path:
        node = node[step]
    node[key] = "v"
    return body


# A JSON value that stands for nesting too deep to build as Python objects (json.dumps
# would hit the recursion limit): replaced in the encoded text.
_DEEP_MARK = "\ue000deep\ue000"


def encode_body(body: Any) -> bytes:
    """JSON text as a hostile client writes it: lone surrogates as \\ud800 escapes
    (json.dumps keeps them; orjson would refuse), and the deep marker expanded."""
    text = json.dumps(body, ensure_ascii=True)
    deep = "[" * DEEP_LEVELS + "]" * DEEP_LEVELS
    return text.replace(json.dumps(_DEEP_MARK), deep).encode()


DEEP_LEVELS = 10_000


@dataclass(frozen=True)
class Payload:
    """What goes into a slot: `text(original)` for path and query parameters,
    `value(original)` for JSON fields (`numbers`: also into number fields), `key` as an
    object key. None: the payload has no form for that slot (nor when `text` returns
    None for an original value)."""

    name: str
    text: Callable[[str], str | None] | None
    value: Callable[[Any], Any] | None
    numbers: bool = False
    key: str | None = None


def _as_str(old: Any) -> str:
    return old if isinstance(old, str) else "x"


NUL_PAYLOAD = Payload(
    "U+0000",
    text=lambda old: old + NUL,
    value=lambda old: _as_str(old) + NUL,
    key="k" + NUL,
)

# Sized to pass the HTTP layer's own limits (request line 8190 bytes) so that the value
# reaches the handlers; body strings well past any field's length limit.
_LONG_TEXT = 3000
_LONG_STRING = 100_000
_DEEP_TEXT = 600  # a deep JSON query parameter (filter=): 3,600 bytes percent-encoded

FUZZ_PAYLOADS = (
    Payload(
        "lone surrogate",
        text=lambda old: old + "\ud800",
        value=lambda old: _as_str(old) + "\ud800",
        key="k\udc00",
    ),
    Payload("int64+1", text=lambda _: str(2**63), value=lambda _: 2**63, numbers=True),
    # Inside a token or ID: every number in it (s12_3 -> s9223372036854775808_...); no
    # form for a value without digits.
    Payload(
        "int64+1 inside",
        text=lambda old: re.sub(r"\d+", str(2**63), old) if re.search(r"\d", old) else None,
        value=None,
    ),
    Payload(
        "-int64-1", text=lambda _: str(-(2**63) - 1), value=lambda _: -(2**63) - 1, numbers=True
    ),
    Payload("2^53", text=lambda _: str(2**53), value=lambda _: 2**53, numbers=True),
    Payload("float", text=lambda _: "1.5", value=lambda _: 1.5, numbers=True),
    Payload("huge float", text=lambda _: "1e308", value=lambda _: 1e308, numbers=True),
    Payload(
        "deep JSON",
        text=lambda _: "[" * _DEEP_TEXT + "]" * _DEEP_TEXT,
        value=lambda _: _DEEP_MARK,
        numbers=True,
    ),
    Payload(
        "oversized string",
        text=lambda old: old + "a" * _LONG_TEXT,
        value=lambda old: _as_str(old) + "a" * _LONG_STRING,
        key="k" * 5000,
    ),
)


@dataclass(frozen=True)
class Slot:
    """One place a payload can go: ("path", name), ("query", name), ("string", body path),
    ("number", body path) or ("key", path of an object in the body)."""

    where: str
    name: Any

    @property
    def label(self) -> str:
        name = ".".join(map(str, self.name)) if isinstance(self.name, tuple) else self.name
        return f"{self.where}:{name}"


@dataclass
class Variant:
    label: str  # "<payload> in <slot>"
    slot: Slot
    payload: Payload
    method: str
    url: str
    body: bytes | None  # None: no JSON body


def _text_encode(text: str) -> str:
    """Percent-encoding of any text, lone surrogates included (as their UTF-8-like bytes,
    which are invalid UTF-8: what a hostile client can send)."""
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe="")


@dataclass
class Operation:
    method: str
    path: str
    base: str
    authed: bool
    path_params: list[str]
    query_params: list[dict]
    body_schema: dict | None

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.path

    def slots(self, ctx: Context) -> list[Slot]:
        out = [Slot("path", name) for name in self.path_params]
        out += [Slot("query", p["name"]) for p in self.query_params]
        base_body = self.base_body(ctx)
        if base_body is None:
            return out
        schema = self.body_schema or {}
        strings = _schema_paths(schema, {"string"}) | _value_paths(base_body, (str,))
        numbers = _schema_paths(schema, {"integer", "number"}) | _value_paths(
            base_body, (int, float)
        )
        order = lambda p: tuple(map(str, p))  # noqa: E731
        out += [Slot("string", p) for p in sorted(strings, key=order)]
        out += [Slot("number", p) for p in sorted(numbers - strings, key=order)]
        out += [Slot("key", p) for p in _object_paths(base_body)]
        return out

    def variant(self, ctx: Context, slot: Slot, payload: Payload) -> Variant | None:
        """The request with `payload` in `slot`, or None if the payload has no form there."""
        body = self.base_body(ctx)
        label = f"{payload.name} in {slot.label}"
        path_text: dict[str, str] = {}
        query_text: dict[str, str] = {}
        if slot.where in ("path", "query"):
            if payload.text is None:
                return None
            if slot.where == "path":
                text = payload.text(_path_value(ctx, slot.name, self.path))
            else:
                param = next(p for p in self.query_params if p["name"] == slot.name)
                text = payload.text(_query_value(ctx, param))
            if text is None:
                return None
            (path_text if slot.where == "path" else query_text)[slot.name] = text
        elif slot.where in ("string", "number"):
            if payload.value is None or (slot.where == "number" and not payload.numbers):
                return None
            assert body is not None
            body = _with_value_at(body, slot.name, payload.value)
        elif slot.where == "key":
            if payload.key is None:
                return None
            assert body is not None
            body = _with_key(body, slot.name, payload.key)
        url = self._url(ctx, path_text, query_text)
        encoded = None if body is None else encode_body(body)
        return Variant(label, slot, payload, self.method, url, encoded)

    def base_body(self, ctx: Context) -> dict | None:
        if self.body_schema is None:
            return None
        body = _substitute(_minimal(self.body_schema), ctx)
        return body if isinstance(body, dict) else None

    def _url(self, ctx: Context, path_text: dict[str, str], query_text: dict[str, str]) -> str:
        path = self.path
        for name in self.path_params:
            value = path_text.get(name) or _path_value(ctx, name, self.path)
            path = path.replace("{" + name + "}", _text_encode(value))
        query = {
            p["name"]: _query_value(ctx, p)
            for p in self.query_params
            if p.get("required") or p["name"] == "timeout"
        }
        query.update(query_text)
        url = self.base + path
        if query:
            url += "?" + "&".join(f"{_text_encode(k)}={_text_encode(v)}" for k, v in query.items())
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


def stable_hash(*parts: str) -> int:
    """The same number in every run (Python's hash() of str is salted per process)."""
    return zlib.crc32("\x1f".join(parts).encode())


# Decides whether an answer is wrong: (operation, variant, status, body) -> reason or None.
Judge = Callable[[Operation, Variant, int, Any], str | None]
# What an operation is sent: (operation, its slots) -> [(slot, payloads)], one request
# per item, with the first of its payloads that has a form for the slot.
Plan = Callable[[Operation, list[Slot]], list[tuple[Slot, tuple[Payload, ...]]]]


@dataclass
class SweepResult:
    failures: list[str] = field(default_factory=list)
    stats: Counter = field(default_factory=Counter)
    unserved: set[str] = field(default_factory=set)
    operations_sent: set[tuple[str, str]] = field(default_factory=set)


async def sweep(server, plan: Plan, judge: Judge) -> SweepResult:
    """Sends every planned variant of every operation; collects the wrong answers."""
    result = SweepResult()
    main = await make_context(server)
    spare: Context | None = None
    for op in load_operations():
        spending = op.key in SPENDING
        if spending:
            spare = await make_context(server)
        ctx = spare if spending and spare is not None else main
        served = False
        sent = 0
        for slot, payloads in plan(op, op.slots(ctx)):
            ctx = spare if spending and spare is not None else main
            variant = next(
                (v for p in payloads if (v := op.variant(ctx, slot, p)) is not None), None
            )
            if variant is None:
                continue
            headers = {"Content-Type": "application/json"} if variant.body is not None else None
            status, body = await server.request(
                variant.method,
                variant.url,
                token=ctx.token if op.authed else None,
                data=variant.body,
                headers=headers,
            )
            sent += 1
            result.stats["requests"] += 1
            result.stats[f"status {status // 100}xx"] += 1
            if not (isinstance(body, dict) and body.get("errcode") == "M_UNRECOGNIZED"):
                served = True
            problem = judge(op, variant, status, body)
            if problem is not None:
                line = (
                    f"{op.method} {op.path} [{variant.label}] -> {status} "
                    f"{body.get('errcode') if isinstance(body, dict) else body}: {problem}"
                )
                result.failures.append(line)
            if spending and 200 <= status < 300:
                spare = await make_context(server)
        result.stats["operations"] += 1
        if sent:
            result.operations_sent.add(op.key)
            if not served:
                result.unserved.add(f"{op.method} {op.path}")
    return result
