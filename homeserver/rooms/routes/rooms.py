"""Client-Server API for rooms: create, membership, send, state, history, redaction."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, bad_json, forbidden, not_found
from homeserver.http.request import (
    field,
    json_body,
    json_response,
    query_enum,
    query_int,
)
from homeserver.http.routes import RouteTable
from homeserver.rooms import canonical_alias, membership, third_party_invites
from homeserver.rooms.creation import create_room
from homeserver.rooms.filtering import room_event_filter
from homeserver.rooms.history import (
    context_around,
    event_at_time,
    paginate,
    state_for_reader,
    timestamp_query,
    visible_event,
)
from homeserver.rooms.redaction import redact_event
from homeserver.rooms.serialize import client_event
from homeserver.rooms.upgrade import upgrade_room
from homeserver.tokens import decode_pagination_token

routes = RouteTable()


def _room_id(request: web.Request) -> str:
    room_id = request.match_info["room_id"]
    if not room_id.startswith("!"):
        raise MatrixError(400, "M_INVALID_PARAM", "Not a room ID")
    return room_id


async def _require_joined(request: web.Request, requester: Requester, room_id: str) -> None:
    hs = get_hs(request)
    if not await membership.room_exists(hs, room_id):
        raise forbidden("You are not in this room")
    if await hs.events.membership(room_id, requester.user_id) != "join":
        raise forbidden("You are not joined to this room")


@routes.post("/createRoom", ratelimit=True)
async def post_create_room(request: web.Request, requester: Requester) -> web.Response:
    body = await json_body(request, allow_empty=True)
    return json_response(await create_room(get_hs(request), requester.user_id, body))


@routes.get("/joined_rooms")
async def joined_rooms(request: web.Request, requester: Requester) -> web.Response:
    rooms = await get_hs(request).membership_store.joined_rooms(requester.user_id)
    return json_response({"joined_rooms": rooms})


def _via(request: web.Request) -> list[str]:
    """Servers to join or knock through: `via` (and the deprecated `server_name`)."""
    return request.query.getall("via", []) + request.query.getall("server_name", [])


async def _join(request: web.Request, requester: Requester, target: str) -> web.Response:
    hs = get_hs(request)
    body = await json_body(request, allow_empty=True)
    reason = field(body, "reason", str, None)
    room_id, servers = await membership.resolve_room(hs, target, _via(request))
    # The client's own content keys go into the member event (as Synapse keeps them);
    # third_party_signed is an instruction, not content.
    extra = {k: v for k, v in body.items() if k not in ("reason", "third_party_signed")}
    if body.get("third_party_signed") is not None:
        await third_party_invites.join_signed(
            hs, requester.user_id, room_id, body["third_party_signed"]
        )
    await membership.join(
        hs,
        requester.user_id,
        room_id,
        reason,
        servers,
        guest=requester.is_guest,
        extra=extra,
    )
    return json_response({"room_id": room_id})


@routes.post("/join/{target}", ratelimit=True)
async def join_by_id_or_alias(request: web.Request, requester: Requester) -> web.Response:
    return await _join(request, requester, request.match_info["target"])


@routes.post("/rooms/{room_id}/join", ratelimit=True)
async def join_room(request: web.Request, requester: Requester) -> web.Response:
    return await _join(request, requester, _room_id(request))


@routes.post("/knock/{target}", ratelimit=True)
async def knock(request: web.Request, requester: Requester) -> web.Response:
    hs = get_hs(request)
    body = await json_body(request, allow_empty=True)
    reason = field(body, "reason", str, None)
    target = request.match_info["target"]
    room_id, servers = await membership.resolve_room(hs, target, _via(request))
    await membership.knock(hs, requester.user_id, room_id, reason, servers)
    return json_response({"room_id": room_id})


def _membership_route(
    path: str, membership_value: str, *, self_target: bool = False, kick: bool = False
):
    @routes.post(path, ratelimit=True)
    async def handler(request: web.Request, requester: Requester) -> web.Response:
        hs = get_hs(request)
        room_id = _room_id(request)
        body = await json_body(request, allow_empty=self_target)
        reason = field(body, "reason", str, None)
        target = requester.user_id if self_target else field(body, "user_id", str)
        if kick and await hs.events.membership(room_id, target) == "ban":
            # The auth rules let a leave lift a ban (that is unban): a kick must not.
            raise forbidden("The user is banned: unban them instead")
        await membership.set_membership(
            hs, requester.user_id, room_id, target, membership_value, reason
        )
        return json_response({})

    return handler


@routes.post("/rooms/{room_id}/invite", ratelimit=True)
async def invite(request: web.Request, requester: Requester) -> web.Response:
    hs = get_hs(request)
    room_id = _room_id(request)
    body = await json_body(request)
    if third_party_invites.is_threepid_invite(body):
        # An address (e-mail) rather than a user ID: see rooms/third_party_invites.py.
        threepid = third_party_invites.parse_threepid_invite(hs, body)
        await third_party_invites.invite(hs, requester.user_id, room_id, threepid)
        return json_response({})
    reason = field(body, "reason", str, None)
    target = field(body, "user_id", str)
    await membership.set_membership(hs, requester.user_id, room_id, target, "invite", reason)
    return json_response({})


_membership_route("/rooms/{room_id}/kick", "leave", kick=True)
_membership_route("/rooms/{room_id}/ban", "ban")
_membership_route("/rooms/{room_id}/unban", "leave")
_membership_route("/rooms/{room_id}/leave", "leave", self_target=True)


@routes.post("/rooms/{room_id}/forget")
async def forget_room(request: web.Request, requester: Requester) -> web.Response:
    await membership.forget(get_hs(request), requester.user_id, _room_id(request))
    return json_response({})


@routes.put("/rooms/{room_id}/send/{event_type}/{txn_id}", ratelimit=True)
# The legacy form without a transaction ID (no idempotency), which Synapse still serves.
@routes.post("/rooms/{room_id}/send/{event_type}", ratelimit=True)
async def send_event(request: web.Request, requester: Requester) -> web.Response:
    hs = get_hs(request)
    txn_id = request.match_info.get("txn_id")
    room_id = _room_id(request)
    content = await json_body(request, event_content=True)
    event_type = request.match_info["event_type"]
    await hs.relations.check_new_relation(requester.user_id, event_type, content)
    event_id = await hs.events.create_and_send(
        requester.user_id,
        room_id,
        event_type,
        content,
        txn=(requester.device_id, txn_id) if txn_id is not None else None,
    )
    return json_response({"event_id": event_id})


async def _put_state(request: web.Request, requester: Requester, state_key: str) -> web.Response:
    hs = get_hs(request)
    room_id = _room_id(request)
    content = await json_body(request, event_content=True)
    etype = request.match_info["event_type"]
    if etype == "m.room.member":
        # Membership has its own endpoints with their own checks; allow it here as Synapse does.
        if "membership" not in content:
            raise bad_json("m.room.member needs 'membership'")
    if etype == "m.room.canonical_alias" and state_key == "":
        await canonical_alias.check_content(hs, room_id, content)
    if not await membership.room_exists(hs, room_id):
        raise forbidden("You are not in this room")
    current = await hs.events.current_state_event(room_id, etype, state_key)
    if current is not None and current.content == content and current.sender == requester.user_id:
        # Unchanged state: Synapse answers with the existing event rather than a duplicate.
        return json_response({"event_id": current.event_id})
    event_id = await hs.events.create_and_send(
        requester.user_id, room_id, etype, content, state_key
    )
    if etype == "m.room.guest_access":
        await membership.remove_guests(hs, room_id)
    return json_response({"event_id": event_id})


@routes.put("/rooms/{room_id}/state/{event_type}", ratelimit=True)
async def put_state_empty_key(request: web.Request, requester: Requester) -> web.Response:
    return await _put_state(request, requester, "")


@routes.put("/rooms/{room_id}/state/{event_type}/", ratelimit=True)
async def put_state_trailing_slash(request: web.Request, requester: Requester) -> web.Response:
    return await _put_state(request, requester, "")


@routes.put("/rooms/{room_id}/state/{event_type}/{state_key:.+}", ratelimit=True)
async def put_state(request: web.Request, requester: Requester) -> web.Response:
    return await _put_state(request, requester, request.match_info["state_key"])


@routes.get("/rooms/{room_id}/state")
async def get_state(request: web.Request, requester: Requester) -> web.Response:
    state = await state_for_reader(get_hs(request), requester.user_id, _room_id(request))
    return json_response([client_event(e) for e in state.values()])


async def _get_state_event(
    request: web.Request, requester: Requester, state_key: str
) -> web.Response:
    state = await state_for_reader(get_hs(request), requester.user_id, _room_id(request))
    ev = state.get((request.match_info["event_type"], state_key))
    if ev is None:
        raise not_found("Event not found")
    if query_enum(request, "format", ("content", "event")) == "event":
        return json_response(client_event(ev))
    return json_response(ev.content)


@routes.get("/rooms/{room_id}/state/{event_type}")
async def get_state_event_empty(request: web.Request, requester: Requester) -> web.Response:
    return await _get_state_event(request, requester, "")


@routes.get("/rooms/{room_id}/state/{event_type}/")
async def get_state_event_slash(request: web.Request, requester: Requester) -> web.Response:
    return await _get_state_event(request, requester, "")


@routes.get("/rooms/{room_id}/state/{event_type}/{state_key:.+}")
async def get_state_event(request: web.Request, requester: Requester) -> web.Response:
    return await _get_state_event(request, requester, request.match_info["state_key"])


_MEMBERSHIPS = ("join", "invite", "knock", "leave", "ban")


@routes.get("/rooms/{room_id}/members")
async def get_members(request: web.Request, requester: Requester) -> web.Response:
    hs = get_hs(request)
    room_id = _room_id(request)
    state = await state_for_reader(get_hs(request), requester.user_id, room_id)
    at = request.query.get("at")
    members = {k: v for k, v in state.items() if k[0] == "m.room.member"}
    if at:
        position = decode_pagination_token(at)
        group = (await hs.event_store.last_state_groups_before([room_id], position)).get(room_id)
        if group is not None:
            ids = (await hs.event_store.state_groups([group], types=[("m.room.member", None)]))[
                group
            ]
            events = await hs.event_store.get_events(ids.values())
            members = {k: events[v] for k, v in ids.items() if v in events}
    only = query_enum(request, "membership", _MEMBERSHIPS)
    excluded = query_enum(request, "not_membership", _MEMBERSHIPS)
    chunk = [
        client_event(e)
        for e in members.values()
        if (only is None or e.content.get("membership") == only)
        and (excluded is None or e.content.get("membership") != excluded)
    ]
    return json_response({"chunk": chunk})


@routes.get("/rooms/{room_id}/joined_members")
async def joined_members(request: web.Request, requester: Requester) -> web.Response:
    room_id = _room_id(request)
    await _require_joined(request, requester, room_id)
    state = await get_hs(request).events.current_state(room_id)
    # Both keys are always present, null when the member event has no such string: the
    # spec's schema lists them as optional strings, but Synapse sends nulls and clients
    # (and SyTest) rely on the keys being there.
    joined = {
        sk: {
            k: v if isinstance(v, str) else None
            for k, v in (
                ("display_name", e.content.get("displayname")),
                ("avatar_url", e.content.get("avatar_url")),
            )
        }
        for (t, sk), e in state.items()
        if t == "m.room.member" and e.content.get("membership") == "join"
    }
    return json_response({"joined": joined})


@routes.get("/rooms/{room_id}/event/{event_id}")
async def get_event(request: web.Request, requester: Requester) -> web.Response:
    hs = get_hs(request)
    room_id = _room_id(request)
    ev = await visible_event(hs, requester.user_id, room_id, request.match_info["event_id"])
    (served,) = await hs.relations.serialize([ev], requester.user_id, requester.device_id)
    return json_response(served)


@routes.get("/rooms/{room_id}/messages")
async def get_messages(request: web.Request, requester: Requester) -> web.Response:
    hs = get_hs(request)
    room_id = _room_id(request)
    direction = request.query.get("dir", "b")
    if direction not in ("b", "f"):
        raise MatrixError(400, "M_INVALID_PARAM", "'dir' must be 'b' or 'f'")
    from_token = request.query.get("from")
    to_token = request.query.get("to")
    limit = query_int(request, "limit", 10, minimum=0, maximum=1000)
    event_filter = room_event_filter(request.query.get("filter"))
    result = await paginate(
        hs,
        requester,
        room_id,
        direction,
        decode_pagination_token(from_token) if from_token else None,
        decode_pagination_token(to_token) if to_token else None,
        limit,
        event_filter,
    )
    return json_response(result)


@routes.get("/rooms/{room_id}/context/{event_id}")
async def get_context(request: web.Request, requester: Requester) -> web.Response:
    hs = get_hs(request)
    limit = query_int(request, "limit", 10, minimum=0, maximum=100)
    event_filter = room_event_filter(request.query.get("filter"))
    result = await context_around(
        hs, requester, _room_id(request), request.match_info["event_id"], limit, event_filter
    )
    return json_response(result)


@routes.put("/rooms/{room_id}/redact/{event_id}/{txn_id}", ratelimit=True)
# The legacy form without a transaction ID, as for send above.
@routes.post("/rooms/{room_id}/redact/{event_id}", ratelimit=True)
async def redact(request: web.Request, requester: Requester) -> web.Response:

    body = await json_body(request, allow_empty=True)
    reason = field(body, "reason", str, None)
    event_id = await redact_event(
        get_hs(request),
        requester,
        _room_id(request),
        request.match_info["event_id"],
        reason,
        request.match_info.get("txn_id"),
    )
    return json_response({"event_id": event_id})


@routes.get("/rooms/{room_id}/timestamp_to_event", versions=("v1",))
async def timestamp_to_event(request: web.Request, requester: Requester) -> web.Response:
    room_id = _room_id(request)
    ts, forwards = timestamp_query(request)
    found = await event_at_time(get_hs(request), requester.user_id, room_id, ts, forwards)
    return json_response(found)


@routes.post("/rooms/{room_id}/upgrade", ratelimit=True)
async def upgrade(request: web.Request, requester: Requester) -> web.Response:
    room_id = _room_id(request)
    body = await json_body(request)
    new_room_id = await upgrade_room(get_hs(request), requester.user_id, room_id, body)
    return json_response({"replacement_room": new_room_id})
