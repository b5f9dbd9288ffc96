"""Reading and checking request input: JSON bodies, query parameters, path parameters.

Validation happens here, before a handler writes anything, so bad input changes nothing.
"""

from __future__ import annotations

from typing import Any, overload

import orjson
from aiohttp import web

from homeserver.http.errors import MatrixError, bad_json, invalid_param, missing_param

MAX_BODY_BYTES = 1024 * 1024


async def json_body(request: web.Request, *, allow_empty: bool = False) -> dict[str, Any]:
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
    return body


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


def query_json(request: web.Request, name: str) -> Any:
    value = request.query.get(name)
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        raise invalid_param(f"'{name}' is not valid JSON") from None


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def required_query_int(
    request: web.Request, name: str, *, minimum: int = 0, maximum: int | None = None
) -> int:
    number = query_int(request, name, minimum=minimum, maximum=maximum)
    if number is None:
        raise missing_param(f"Missing '{name}'")
    return number
