"""Request middleware: request IDs, metrics, CORS, per-IP rate limits, U+0000 in parameters
and Matrix error bodies."""

from __future__ import annotations

import logging
import time
import uuid

from aiohttp import web

from homeserver.http.context import REQUEST_ID_KEY, get_hs
from homeserver.http.errors import MatrixError
from homeserver.http.request import json_response, refuse_nul_in_params
from homeserver.metrics import http_latency, http_requests

logger = logging.getLogger("homeserver.http")

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization, Date",
    "Access-Control-Expose-Headers": "Content-Disposition, Content-Type, Content-Length",
}


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


@web.middleware
async def matrix_middleware(request: web.Request, handler) -> web.StreamResponse:
    started = time.perf_counter()
    request_id = uuid.uuid4().hex[:16]
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
    except MatrixError as err:
        response = error_response(err)
    except web.HTTPNotFound:
        response = error_response(MatrixError(404, "M_UNRECOGNIZED", "Unrecognized request"))
    except web.HTTPMethodNotAllowed:
        response = error_response(
            MatrixError(405, "M_UNRECOGNIZED", "Method not allowed for this endpoint")
        )
    except web.HTTPRequestEntityTooLarge:
        response = error_response(MatrixError(413, "M_TOO_LARGE", "Request body too large"))
    except web.HTTPException as exc:
        response = error_response(MatrixError(exc.status, "M_UNKNOWN", exc.reason))
    except Exception:
        # The path is logged without its query string: nio puts the access token there.
        logger.exception("request %s %s %s failed", request_id, request.method, request.path)
        response = error_response(
            MatrixError(500, "M_UNKNOWN", f"Internal server error (request {request_id})")
        )
    if not response.prepared:
        response.headers.update(CORS_HEADERS)
    endpoint = _endpoint(request)
    elapsed = time.perf_counter() - started
    http_requests.labels(request.method, endpoint, str(response.status)).inc()
    http_latency.labels(request.method, endpoint).observe(elapsed)
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
