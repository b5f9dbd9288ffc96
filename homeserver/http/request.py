"""Reading and checking request input: JSON bodies, query parameters, path parameters.

Validation happens here, before a handler writes anything, so bad input changes nothing.

U+0000 is refused here, once, for every value a handler may bind to a PostgreSQL text
column (text cannot hold it; asyncpg would fail mid-request): strings and keys of JSON
bodies and of JSON query parameters, path parameters and query parameters. Event content
is the exception: it is stored as canonical JSON text, where the character is escaped.

Bodies are read here too, bounded in size (http.max_body_bytes unless a route allows
more) and in time (http.body_read_timeout_s without a byte): a client cannot make the
server hold 100 MiB, or a request, for as long as it likes.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, overload

import orjson
from aiohttp import web

from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, bad_json, invalid_param, missing_param, too_large

_CHUNK = 64 * 1024
_BODY_KEY: web.RequestKey = web.RequestKey("body", bytes)


def body_reader(request: web.Request) -> Callable[[int], Awaitable[bytes]]:
    """`read(n)` of the request body (b"" at its end) that answers 408 when the client
    sends nothing for http.body_read_timeout_s."""
    timeout = get_hs(request).config.http.body_read_timeout_s

    async def read(n: int) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await request.content.read(n)
        except TimeoutError:
            raise MatrixError(408, "M_UNKNOWN", "Timed out reading the request body") from None

    return read


async def read_body(request: web.Request, limit: int | None = None) -> bytes:
    """The whole body, at most `limit` bytes (default http.max_body_bytes) or 413."""
    if _BODY_KEY in request:
        return request[_BODY_KEY]
    if limit is None:
        limit = get_hs(request).config.http.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise too_large()
    read = body_reader(request)
    chunks = []
    size = 0
    while chunk := await read(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
    raw = request[_BODY_KEY] = b"".join(chunks)
    return raw


# Every position, ID and count the API takes is stored in a PostgreSQL bigint.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1  # the few INTEGER columns
_DECIMAL = re.compile(r"-?[0-9]{1,19}")


def parse_int64(text: str) -> int | None:
    """`text` as a decimal integer within int64, or None. Stricter than int(), which also
    takes spaces, `_`, `+` and non-ASCII digits."""
    if not _DECIMAL.fullmatch(text):
        return None
    number = int(text)
    return number if INT64_MIN <= number <= INT64_MAX else None


async def json_body(
    request: web.Request,
    *,
    allow_empty: bool = False,
    event_content: bool = False,
    limit: int | None = None,
) -> dict[str, Any]:
    """The request's JSON object. `event_content`: the body is the content of an event,
    where U+0000 may be carried (stored escaped in the event's JSON text). `limit`: the
    route's own size bound, when http.max_body_bytes does not fit it."""
    raw = await read_body(request, limit)
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
    if _LONG_INTEGER.search(raw) and not _integers_fit_int64(raw):
        raise bad_json("Integers in the request body must fit in 64 bits")
    return body


# orjson reads an integer literal beyond 64 bits as a float: 2**64 would be stored as
# 1.8446744073709552e19. A body with a literal of 19 digits or more (or such a run of
# digits inside a string: a false alarm, rare) is parsed again, exactly, to find out.
_LONG_INTEGER = re.compile(rb"(?<![0-9.])-?[0-9]{19,}(?![0-9.eE])")


def _integers_fit_int64(raw: bytes) -> bool:
    try:
        exact = json.loads(raw)
    except (ValueError, RecursionError):
        return False  # more than 4,300 digits, or nesting deeper than the stdlib parses
    stack = [exact]
    while stack:
        item = stack.pop()
        if isinstance(item, int) and not INT64_MIN <= item <= INT64_MAX:
            return False
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


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
    number = parse_int64(value)
    if number is None:
        raise invalid_param(f"'{name}' must be a 64-bit integer")
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
