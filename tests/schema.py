"""Validating response bodies against the spec's OpenAPI definitions.

    assert_matches_schema("registration.yaml", "/register", "post", 200, body)

The file name is relative to matrix-spec/data/api/client-server/ (or pass a path under
data/api/, e.g. "server-server/keys.yaml"). $refs are resolved relative to the file
that contains them, as the spec's own tooling does.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

# shared/ sits beside the project's checkout (CI lays a copy there); /work/shared is where
# it lives on the developers' machines.
_SHARED = next(
    (
        p
        for p in (Path(__file__).resolve().parents[2] / "shared", Path("/work/shared"))
        if p.is_dir()
    ),
    Path("/work/shared"),
)
API_DIR = _SHARED / "matrix-spec" / "data" / "api"
_CLIENT_SERVER = API_DIR / "client-server"


@functools.cache
def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _pointer(doc: Any, fragment: str) -> Any:
    for part in (p for p in fragment.lstrip("/").split("/") if p):
        doc = doc[part.replace("~1", "/").replace("~0", "~")]
    return doc


def _resolve(node: Any, base: Path, seen: tuple[str, ...] = ()) -> Any:
    """A copy of `node` with every $ref inlined (a recursive ref is left as `{}`)."""
    if isinstance(node, list):
        return [_resolve(item, base, seen) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target, _, fragment = node["$ref"].partition("#")
        path = (base.parent / target).resolve() if target else base
        key = f"{path}#{fragment}"
        if key in seen:
            return {}
        resolved = _resolve(_pointer(_load(path), fragment), path, (*seen, key))
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        if siblings and isinstance(resolved, dict):
            resolved = {**resolved, **_resolve(siblings, base, seen)}
        return resolved
    return {k: _resolve(v, base, seen) for k, v in node.items()}


def _allow_null_member_fields(schema: dict) -> None:
    """GET /rooms/{roomId}/joined_members: the spec types a RoomMember's `display_name` and
    `avatar_url` as (optional) strings, but Synapse always sends both keys, null when the
    member has none, and clients and SyTest ("joined_members fetches my membership")
    expect the keys to be there. We do as Synapse does; this is the one deviation."""
    member = schema["properties"]["joined"]["patternProperties"]["^@"]
    for field in ("display_name", "avatar_url"):
        member["properties"][field] = {"anyOf": [member["properties"][field], {"type": "null"}]}


# Documented deviations of our responses from the spec's schemas, applied to the schema.
_DEVIATIONS = {
    ("rooms.yaml", "/rooms/{roomId}/joined_members", "get", 200): _allow_null_member_fields,
}


def response_schema(api_file: str, path: str, method: str, status: int) -> dict:
    file = (_CLIENT_SERVER / api_file) if "/" not in api_file else (API_DIR / api_file)
    spec = _load(file)
    try:
        response = spec["paths"][path][method.lower()]["responses"][str(status)]
    except KeyError:
        raise AssertionError(f"{api_file} has no {method.upper()} {path} -> {status}") from None
    response = _resolve(response, file)
    schema = response["content"]["application/json"]["schema"]
    deviation = _DEVIATIONS.get((api_file, path, method.lower(), status))
    if deviation is not None:
        deviation(schema)
    return schema


def assert_matches_schema(api_file: str, path: str, method: str, status: int, body: Any) -> None:
    schema = response_schema(api_file, path, method, status)
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    if errors:
        details = "\n".join(f"  at {list(e.path)}: {e.message}" for e in errors)
        raise AssertionError(f"{method.upper()} {path} {status} body violates the spec:\n{details}")


def client_server_operations():
    """Every operation of the Client-Server API: (file name, method, path, base path, the
    operation with its $refs inlined). The base path is the file's server `basePath`."""
    for file in sorted(_CLIENT_SERVER.glob("*.yaml")):
        spec = _load(file)
        servers = spec.get("servers") or [{}]
        base = servers[0].get("variables", {}).get("basePath", {}).get("default", "")
        for path, methods in (spec.get("paths") or {}).items():
            for method, op in methods.items():
                if isinstance(op, dict):
                    yield file.name, method.upper(), path, base, _resolve(op, file)
