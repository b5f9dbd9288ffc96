"""The X-Matrix Authorization header: signing outbound requests, verifying inbound ones.

The signed object is {method, uri, origin, destination, content?}; `uri` is the path with
its query string exactly as sent on the wire. See the spec's "Request Authentication".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from signedjson.sign import SignatureVerifyException, sign_json, verify_signed_json

from federation.events.validation import valid_server_name
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, bad_json, forbidden
from homeserver.http.request import body_contains_nul, read_body

# Transactions are bounded (50 PDUs + 100 EDUs) well below this.
MAX_REQUEST_BYTES = 10 * 1024 * 1024


def unauthorized(error: str) -> MatrixError:
    return MatrixError(401, "M_UNAUTHORIZED", error)


@dataclass(frozen=True)
class XMatrix:
    origin: str
    destination: str | None
    key: str
    sig: str


def request_json(
    method: str, uri: str, origin: str, destination: str, content: Any = None
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "method": method,
        "uri": uri,
        "origin": origin,
        "destination": destination,
    }
    if content is not None:
        obj["content"] = content
    return obj


def authorization_header(
    signing_key, origin: str, destination: str, method: str, uri: str, content: Any = None
) -> str:
    signed = sign_json(request_json(method, uri, origin, destination, content), origin, signing_key)
    key_id, sig = next(iter(signed["signatures"][origin].items()))
    # As the spec asks of senders: one space, lower-case names, no spaces around commas.
    return f'X-Matrix origin="{origin}",destination="{destination}",key="{key_id}",sig="{sig}"'


# name=value where value is a quoted string (with backslash escapes) or a bare token;
# bare values may contain colons, for older senders.
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^",\s]*))\s*(?:,|$)')


def parse_authorization(value: str) -> XMatrix:
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "x-matrix":
        raise unauthorized("Authorization scheme must be X-Matrix")
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m or m.end() == pos:
            raise unauthorized("Malformed X-Matrix Authorization header")
        quoted, bare = m.group(2), m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        pos = m.end()
    try:
        return XMatrix(params["origin"], params.get("destination"), params["key"], params["sig"])
    except KeyError as e:
        raise unauthorized(f"X-Matrix Authorization header lacks {e.args[0]}") from None


def verify_request_signature(
    header: XMatrix, method: str, uri: str, destination: str, content: Any, verify_key
) -> None:
    obj = request_json(method, uri, header.origin, destination, content)
    obj["signatures"] = {header.origin: {header.key: header.sig}}
    try:
        verify_signed_json(obj, header.origin, verify_key)
    except SignatureVerifyException:
        raise unauthorized("Invalid request signature") from None


# The part of a request body outside its PDUs: (body) -> what to check for U+0000.
# Event content may carry U+0000 (it is stored escaped in the event's JSON text); a PDU's
# fields that go to their own columns are checked by parse_pdu, its one way in.
OutsidePdus = Callable[[Any], Any]


def all_but(key: str) -> OutsidePdus:
    """A body whose `key` holds PDUs (`pdus` of /send, `event` of invite)."""

    def outside(body: Any) -> Any:
        return {k: v for k, v in body.items() if k != key} if isinstance(body, dict) else body

    return outside


def body_is_a_pdu(_body: Any) -> Any:
    """send_join / send_leave / send_knock: the whole body is the event."""
    return None


def whole_body(body: Any) -> Any:
    return body


def refuse_nul_in_body(raw: bytes, content: Any, outside_pdus: OutsidePdus) -> None:
    """U+0000 in a string or key of the body, outside its PDUs: 400 M_BAD_JSON, once, at the
    boundary, before a handler binds any of it to a PostgreSQL text column."""
    if body_contains_nul(raw, outside_pdus(content)):
        raise bad_json("Strings in the request body must not contain U+0000")


async def authenticate_request(
    request: web.Request, outside_pdus: OutsidePdus = whole_body
) -> tuple[str, Any]:
    """Checks the request's X-Matrix signature; returns (origin, parsed JSON body or None).

    Order matters: a non-admitted origin is refused before we fetch any of its keys, so a
    stranger cannot make us contact it; a body is judged only once its signature holds.
    """
    hs = get_hs(request)
    value = request.headers.get("Authorization")
    if not value:
        raise unauthorized("Missing X-Matrix Authorization header")
    header = parse_authorization(value)
    if not valid_server_name(header.origin):
        # A malformed origin ("localhost:http") is a bad request (400, as Synapse), not a
        # server the policy refuses.
        raise MatrixError(400, "M_UNAUTHORIZED", "The origin is not a valid server name")
    if not hs.federation.policy.check_inbound(header.origin):
        raise forbidden("Federation with this server is not allowed")
    if header.destination is not None and header.destination != hs.server_name:
        raise unauthorized("The request is addressed to another server")
    content = None
    raw = b""
    if request.can_read_body:
        # The whole body (bounded -> M_TOO_LARGE); cached, so a handler can read it again.
        raw = await read_body(request, MAX_REQUEST_BYTES)
        if raw.strip():
            try:
                content = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise MatrixError(400, "M_NOT_JSON", "Content not JSON") from None
    verify_key = await hs.federation.keys.verify_key_for_request(header.origin, header.key)
    if verify_key is None:
        raise unauthorized(f"Cannot find key {header.key} of {header.origin}")
    verify_request_signature(
        header, request.method, request.raw_path, hs.server_name, content, verify_key
    )
    refuse_nul_in_body(raw, content, outside_pdus)
    return header.origin, content
