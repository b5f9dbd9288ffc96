"""POST /_matrix/client/v1/appservice/{appserviceId}/ping (spec v1.7), and the
third-party network lookups the appservices answer (/thirdparty/..., thirdparty.py)."""

from __future__ import annotations

from aiohttp import web

from homeserver.appservice.client import AppServiceError
from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, forbidden, missing_param, not_found
from homeserver.http.request import field, json_body, json_response
from homeserver.http.routes import RouteTable

routes = RouteTable()


@routes.post("/appservice/{appservice_id}/ping", versions=("v1",))
async def ping(request: web.Request, requester: Requester) -> web.Response:
    svc = requester.appservice
    if svc is None or svc.id != request.match_info["appservice_id"]:
        raise forbidden("Provided access token is not the appservice's as_token")
    body = await json_body(request, allow_empty=True)
    transaction_id = field(body, "transaction_id", str, None)
    if not svc.url:
        raise MatrixError(400, "M_URL_NOT_SET", "Application service doesn't have a URL configured")
    try:
        result = await get_hs(request).appservices.client.ping(svc, transaction_id)
    except AppServiceError as e:
        if e.timeout:
            raise MatrixError(
                504, "M_CONNECTION_TIMEOUT", "Connection to application service timed out"
            ) from None
        if e.status is None:
            raise MatrixError(
                502, "M_CONNECTION_FAILED", "Connection to application service failed"
            ) from None
        error = MatrixError(502, "M_BAD_STATUS", f"Ping returned status {e.status}", body=e.body)
        error.extra["status"] = e.status  # a keyword of MatrixError's own
        raise error from None
    return json_response({"duration_ms": result.duration_ms})


# -- third-party networks -------------------------------------------------------------


def _lookup_params(request: web.Request) -> list[tuple[str, str]]:
    """The query's search fields, passed on as they came (but not the caller's token)."""
    return [(k, v) for k, v in request.query.items() if k != "access_token"]


@routes.get("/thirdparty/protocols")
async def thirdparty_protocols(request: web.Request, _requester: Requester) -> web.Response:
    return json_response(await get_hs(request).appservices.thirdparty.protocols())


@routes.get("/thirdparty/protocol/{protocol}")
async def thirdparty_protocol(request: web.Request, _requester: Requester) -> web.Response:
    info = await get_hs(request).appservices.thirdparty.protocol(request.match_info["protocol"])
    if info is None:
        raise not_found("Unknown protocol")
    return json_response(info)


@routes.get("/thirdparty/user/{protocol}")
async def thirdparty_user(request: web.Request, _requester: Requester) -> web.Response:
    networks = get_hs(request).appservices.thirdparty
    protocol = request.match_info["protocol"]
    return json_response(await networks.lookup("user", protocol, _lookup_params(request)))


@routes.get("/thirdparty/location/{protocol}")
async def thirdparty_location(request: web.Request, _requester: Requester) -> web.Response:
    networks = get_hs(request).appservices.thirdparty
    protocol = request.match_info["protocol"]
    return json_response(await networks.lookup("location", protocol, _lookup_params(request)))


@routes.get("/thirdparty/user")
async def thirdparty_user_by_id(request: web.Request, _requester: Requester) -> web.Response:
    if not request.query.get("userid"):
        raise missing_param("Missing 'userid'")
    networks = get_hs(request).appservices.thirdparty
    return json_response(await networks.lookup("user", None, _lookup_params(request)))


@routes.get("/thirdparty/location")
async def thirdparty_location_by_alias(request: web.Request, _requester: Requester) -> web.Response:
    if not request.query.get("alias"):
        raise missing_param("Missing 'alias'")
    networks = get_hs(request).appservices.thirdparty
    return json_response(await networks.lookup("location", None, _lookup_params(request)))
