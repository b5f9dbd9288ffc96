"""Request middleware: request IDs, metrics, CORS, per-IP rate limits, U+0000 in parameters
and Matrix error bodies."""

from __future__ import annotations

import ipaddress
import itertools
import logging
import secrets
import time

from aiohttp import web

from homeserver.http.context import REQUEST_ID_KEY, get_hs
from homeserver.http.errors import MatrixError, too_large, unavailable
from homeserver.http.request import json_response, refuse_nul_in_params
from homeserver.metrics import http_latency, http_requests
from homeserver.user_cache import changes_cached
from storage.availability import is_unavailable

logger = logging.getLogger("homeserver.http")

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization, Date",
    "Access-Control-Expose-Headers": "Content-Disposition, Content-Type, Content-Length",
}


# Request IDs (in logs and 500 answers): this process's tag and a counter, not uuid4's
# random bytes from the kernel for every request.
_PROCESS_TAG = secrets.token_hex(4)
_REQUEST_NUMBERS = itertools.count(1)
# Methods named in metrics as they are; any other word a client sends counts as OTHER.
_METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH"})
# (method, endpoint, status) -> the children of http_requests and http_latency: labels()
# costs a lock and a lookup per call, twice per request.
_metric_children: dict[tuple[str, str, int], tuple] = {}


def _observe(method: str, endpoint: str, status: int, elapsed: float) -> None:
    method = method if method in _METHODS else "OTHER"
    key = (method, endpoint, status)
    children = _metric_children.get(key)
    if children is None:
        children = _metric_children[key] = (
            http_requests.labels(method, endpoint, str(status)),
            http_latency.labels(method, endpoint),
        )
    children[0].inc()
    children[1].observe(elapsed)


def _endpoint(request: web.Request) -> str:
    """The route template, not the concrete path: bounded label cardinality, no IDs in metrics."""
    info = request.match_info
    resource = info.route.resource if info.route is not None else None
    if resource is None or info.http_exception is not None:
        return "unmatched"
    return resource.canonical


def error_response(err: MatrixError) -> web.Response:
    resp = json_response(err.body(), status=err.status)
    resp.headers.update(err.headers)
    return resp


def _client_address(request: web.Request, trusted) -> str | None:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the last
    address in X-Forwarded-For that is not itself a trusted proxy (earlier entries are
    whatever the client chose to send)."""
    peer = request.remote
    if not trusted or peer is None or not _is_trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed(hops):
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed chain: trust nothing in it
        if not any(address in net for net in trusted):
            return str(address)
    return peer


def _is_trusted(peer: str, trusted) -> bool:
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in net for net in trusted)


@web.middleware
async def matrix_middleware(request: web.Request, handler) -> web.StreamResponse:
    started = time.perf_counter()
    trusted = get_hs(request).config.trusted_proxies
    if trusted:
        # Rate limits and devices' last_seen_ip then see the client, not nginx.
        remote = _client_address(request, trusted)
        if remote is not None and remote != request.remote:
            request = request.clone(remote=remote)
    request_id = f"{_PROCESS_TAG}{next(_REQUEST_NUMBERS):08x}"
    request[REQUEST_ID_KEY] = request_id
    if request.method == "OPTIONS":
        # CORS preflight: browsers send it without credentials to any path.
        response: web.StreamResponse = web.Response(status=200, headers=CORS_HEADERS)
        return response
    try:
        hs = get_hs(request)
        hs.ip_limiter.check(request.remote or "")
        if request.match_info.http_exception is None:
            # An unknown endpoint stays a 404, whatever its parameters.
            refuse_nul_in_params(request)
        response = await handler(request)
        if response.status < 400 and changes_cached(request.method, request.path):
            # The change is heard back before the client is told it is done: the token
            # of a logout is refused from then on (homeserver/user_cache.py).
            await hs.user_cache.barrier()
    except MatrixError as err:
        response = error_response(err)
    except web.HTTPNotFound:
        response = error_response(MatrixError(404, "M_UNRECOGNIZED", "Unrecognized request"))
    except web.HTTPMethodNotAllowed:
        response = error_response(
            MatrixError(405, "M_UNRECOGNIZED", "Method not allowed for this endpoint")
        )
    except web.HTTPRequestEntityTooLarge:
        response = error_response(too_large())
    except web.HTTPException as exc:
        response = error_response(MatrixError(exc.status, "M_UNKNOWN", exc.reason))
    except Exception as exc:
        if is_unavailable(exc):
            # The database is down: the client retries later; the outage is logged once.
            get_hs(request).db_outage.report(exc)
            response = error_response(unavailable())
        else:
            # The path is logged without its query string (nio puts the access token
            # there), and as a repr: it is the client's text, and may carry a line break.
            logger.exception("request %s %r %r failed", request_id, request.method, request.path)
            response = error_response(
                MatrixError(500, "M_UNKNOWN", f"Internal server error (request {request_id})")
            )
    if not response.prepared:
        response.headers.update(CORS_HEADERS)
    endpoint = _endpoint(request)
    elapsed = time.perf_counter() - started
    _observe(request.method, endpoint, response.status, elapsed)
    # The access log: the route template, never the path or query (IDs, access tokens).
    logger.debug(
        "%s %s %s -> %d in %.1f ms",
        request_id,
        request.method,
        endpoint,
        response.status,
        elapsed * 1000,
    )
    return response
