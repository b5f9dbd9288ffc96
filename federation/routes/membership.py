"""make_join / send_join v2 and v1, make_leave / send_leave v2 and v1, make_knock / send_knock,
invite v2 and v1, exchange_third_party_invite
(joins-v2.yaml, leaving-v2.yaml, knocks.yaml, invites-v2.yaml, third_party_invite.yaml). The logic lives in
federation/membership/; these only read the request."""

from __future__ import annotations

from aiohttp import web

from federation.membership import MembershipFederation
from federation.request_auth import all_but, body_is_a_pdu
from federation.route_table import FederationRouteTable
from homeserver.http.context import get_hs
from homeserver.http.errors import missing_param
from homeserver.http.request import json_response
from homeserver.rooms import third_party_invites

routes = FederationRouteTable()

V1 = "/_matrix/federation/v1"
V2 = "/_matrix/federation/v2"


def _membership(request: web.Request) -> MembershipFederation:
    return get_hs(request).federation.membership


async def _make(request: web.Request, origin: str, membership: str) -> web.Response:
    versions = None
    if membership != "leave":
        versions = request.query.getall("ver", [])
        if not versions:
            if membership == "knock":
                raise missing_param("make_knock needs 'ver'")
            versions = ["1"]  # the spec's default for make_join
    answer = await _membership(request).resident.make(
        origin,
        request.match_info["room_id"],
        request.match_info["user_id"],
        membership,
        versions,
    )
    return json_response(answer)


async def _send(request: web.Request, origin: str, content, membership: str):
    room_id = request.match_info["room_id"]
    return await _membership(request).resident.send(
        origin, room_id, request.match_info["event_id"], content, membership
    )


@routes.get(f"{V1}/make_join/{{room_id}}/{{user_id}}")
async def make_join(request: web.Request, origin: str, _content) -> web.Response:
    return await _make(request, origin, "join")


def _v1(answer: dict) -> web.Response:
    """The deprecated v1 endpoints answer [200, body] (the spec keeps that quirk)."""
    return json_response([200, answer])


async def _join(request: web.Request, origin: str, content) -> dict:
    event, state_before = await _send(request, origin, content, "join")
    resident = _membership(request).resident
    return await resident.join_answer(request.match_info["room_id"], event, state_before)


@routes.put(f"{V2}/send_join/{{room_id}}/{{event_id}}", pdus=body_is_a_pdu)
async def send_join(request: web.Request, origin: str, content) -> web.Response:
    return json_response(await _join(request, origin, content))


@routes.put(f"{V1}/send_join/{{room_id}}/{{event_id}}", pdus=body_is_a_pdu)
async def send_join_v1(request: web.Request, origin: str, content) -> web.Response:
    return _v1(await _join(request, origin, content))


@routes.get(f"{V1}/make_leave/{{room_id}}/{{user_id}}")
async def make_leave(request: web.Request, origin: str, _content) -> web.Response:
    return await _make(request, origin, "leave")


@routes.put(f"{V2}/send_leave/{{room_id}}/{{event_id}}", pdus=body_is_a_pdu)
async def send_leave(request: web.Request, origin: str, content) -> web.Response:
    await _send(request, origin, content, "leave")
    return json_response({})


@routes.put(f"{V1}/send_leave/{{room_id}}/{{event_id}}", pdus=body_is_a_pdu)
async def send_leave_v1(request: web.Request, origin: str, content) -> web.Response:
    await _send(request, origin, content, "leave")
    return _v1({})


@routes.get(f"{V1}/make_knock/{{room_id}}/{{user_id}}")
async def make_knock(request: web.Request, origin: str, _content) -> web.Response:
    return await _make(request, origin, "knock")


@routes.put(f"{V1}/send_knock/{{room_id}}/{{event_id}}", pdus=body_is_a_pdu)
async def send_knock(request: web.Request, origin: str, content) -> web.Response:
    event, _state = await _send(request, origin, content, "knock")
    resident = _membership(request).resident
    return json_response(
        await resident.knock_answer(request.match_info["room_id"], event["sender"])
    )


@routes.put(f"{V2}/invite/{{room_id}}/{{event_id}}", pdus=all_but("event"))
async def invite(request: web.Request, origin: str, content) -> web.Response:
    answer = await _membership(request).invites.receive(
        origin, request.match_info["room_id"], request.match_info["event_id"], content
    )
    return json_response(answer)


@routes.put(f"{V1}/invite/{{room_id}}/{{event_id}}", pdus=body_is_a_pdu)
async def invite_v1(request: web.Request, origin: str, content) -> web.Response:
    answer = await _membership(request).invites.receive_v1(
        origin, request.match_info["room_id"], request.match_info["event_id"], content
    )
    return _v1(answer)


@routes.put(f"{V1}/exchange_third_party_invite/{{room_id}}")
async def exchange_third_party_invite(request: web.Request, origin: str, content) -> web.Response:
    await third_party_invites.on_exchange(
        get_hs(request), origin, request.match_info["room_id"], content
    )
    return json_response({})
