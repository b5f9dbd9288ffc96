"""Reading and checking request input: JSON bodies, query parameters, path parameters.

Validation happens here, before a handler writes anything, so bad input changes nothing.

U+0000 is refused here, once, for every value a handler may bind to a PostgreSQL text
column (text cannot hold it; asyncpg would fail mid-request): strings and keys of JSON
bodies and of JSON query parameters, path parameters and query parameters. Event content
is the exception: it is stored as canonical JSON text, where the character is escaped.
"""

from __future__ import annotations

from typing import Any, overload

import orjson
from aiohttp import web

from homeserver.http.errors import MatrixError, bad_json, invalid_param, missing_param

MAX_BODY_BYTES = 1024 * 1024


async def json_body(
    request: web.Request, *, allow_empty: bool = False, event_content: bool = False
) -> dict[str, Any]:
    """The request's JSON object. `event_content`: the body is the content of an event,
    where U+0000 may be carried (stored escaped in the event's JSON text)."""
    raw = await request.read()
    if not raw.strip():
        if allow_empty:
            return {}
        raise MatrixError(400, "M_NOT_JSON", "Request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MatrixError(400, "M_NOT_JSON", "Content not JSON") from None
    if not isinstance(body, dict):
        raise MatrixError(400, "M_NOT_JSON", "Request body must be a JSON object")
    # JSON can only carry U+0000 as the escape \u0000, so most bodies skip the walk.
    if not event_content and body_contains_nul(raw, body):
        raise bad_json("Strings in the request body must not contain U+0000")
    return body


_NUL_ESCAPE = b"\\u0000"


def body_contains_nul(raw: bytes, value: Any) -> bool:
    """Whether U+0000 is in `value`, part (or all) of the JSON body parsed from `raw`."""
    return _NUL_ESCAPE in raw and contains_nul(value)


def contains_nul(value: Any) -> bool:
    """Whether U+0000 is in any string or object key of a parsed JSON value. Iterative:
    orjson accepts nesting deeper than Python's recursion limit."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            for key, sub in item.items():
                if "\x00" in key:
                    return True
                stack.append(sub)
        elif isinstance(item, list):
            stack.extend(item)
    return False


def refuse_nul_in_params(request: web.Request) -> None:
    """Path parameters (aiohttp decodes %00 into them) and query parameters, names and
    values, of every route: one check before any handler runs."""
    for value in request.match_info.values():
        if "\x00" in value:
            raise invalid_param("Path parameters must not contain U+0000")
    for key, value in request.query.items():
        if "\x00" in key or "\x00" in value:
            raise invalid_param("Query parameters must not contain U+0000")


_MISSING = object()


def field(body: dict, name: str, kind: type | tuple[type, ...], default: Any = _MISSING) -> Any:
    """A typed field of a JSON body; missing -> M_MISSING_PARAM, wrong type -> M_BAD_JSON."""
    if name not in body or (body[name] is None and default is not _MISSING):
        if default is _MISSING:
            raise missing_param(f"Missing '{name}'")
        return default
    value = body[name]
    if isinstance(value, bool) and bool not in _as_tuple(kind):
        raise bad_json(f"'{name}' has the wrong type")
    if not isinstance(value, kind):
        raise bad_json(f"'{name}' has the wrong type")
    return value


def _as_tuple(kind) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)


@overload
def query_int(
    request: web.Request, name: str, default: int, *, minimum: int = 0, maximum: int | None = None
) -> int: ...


@overload
def query_int(
    request: web.Request,
    name: str,
    default: None = None,
    *,
    minimum: int = 0,
    maximum: int | None = None,
) -> int | None: ...


def query_int(
    request: web.Request,
    name: str,
    default: int | None = None,
    *,
    minimum: int = 0,
    maximum: int | None = None,
) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise invalid_param(f"'{name}' must be an integer") from None
    if number < minimum:
        raise invalid_param(f"'{name}' must be at least {minimum}")
    if maximum is not None and number > maximum:
        number = maximum
    return number


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise invalid_param(f"'{name}' must be true or false")


def query_enum(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    """A query parameter the spec enumerates: absent -> None, unknown -> M_INVALID_PARAM."""
    value = request.query.get(name)
    if value is not None and value not in allowed:
        raise invalid_param(f"'{name}' must be one of {', '.join(allowed)}")
    return value


def query_json(request: web.Request, name: str) -> Any:
    value = request.query.get(name)
    if value is None:
        return None
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise invalid_param(f"'{name}' is not valid JSON") from None
    if contains_nul(parsed):
        raise invalid_param(f"'{name}' must not contain U+0000")
    return parsed


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def required_query_int(
    request: web.Request, name: str, *, minimum: int = 0, maximum: int | None = None
) -> int:
    number = query_int(request, name, minimum=minimum, maximum=maximum)
    if number is None:
        raise missing_param(f"Missing '{name}'")
    return number
