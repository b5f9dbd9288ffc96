"""Client-Server API endpoints of end-to-end encryption. Handlers only read the request
and call `hs.e2ee`; the rules live in the service modules next to this one."""

from __future__ import annotations

from e2ee.backup import parse_rooms, parse_sessions
from e2ee.keys import parse_claim_body, parse_query_body
from homeserver.accounts import uia
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError
from homeserver.http.request import json_body, json_response
from homeserver.http.routes import RouteTable
from homeserver.tokens import decode_sync_token

routes = RouteTable()

# Element probes cross-signing endpoints under the unstable prefix too.
WITH_UNSTABLE = ("r0", "v3", "unstable")

# Bodies carry keys and ciphertext only; these bound them well above what clients send.
MAX_KEYS_BODY = 256 * 1024
MAX_TO_DEVICE_BODY = 1024 * 1024
MAX_BACKUP_BODY = 16 * 1024 * 1024


# --- keys ----------------------------------------------------------------------------


@routes.post("/keys/upload")
async def upload_keys(request, requester):
    body = await json_body(request, limit=MAX_KEYS_BODY)
    e2ee = get_hs(request).e2ee
    return json_response(await e2ee.keys.upload(requester.user_id, requester.device_id, body))


@routes.post("/keys/query")
async def query_keys(request, requester):
    body = await json_body(request, limit=MAX_KEYS_BODY)
    e2ee = get_hs(request).e2ee
    return json_response(await e2ee.keys.query(requester.user_id, parse_query_body(body)))


@routes.post("/keys/claim")
async def claim_keys(request, requester):
    body = await json_body(request, limit=MAX_KEYS_BODY)
    e2ee = get_hs(request).e2ee
    return json_response(await e2ee.keys.claim(parse_claim_body(body)))


@routes.get("/keys/changes")
async def key_changes(request, requester):
    hs = get_hs(request)
    since = _sync_position(request, "from")
    to = _sync_position(request, "to")
    return json_response(await hs.e2ee.device_lists.keys_changes(requester.user_id, since, to))


def _sync_position(request, name: str) -> dict[str, int]:
    token = request.query.get(name)
    if not token:
        raise MatrixError(400, "M_MISSING_PARAM", f"Missing '{name}'")
    return decode_sync_token(token)


@routes.post("/keys/device_signing/upload", versions=WITH_UNSTABLE)
async def upload_cross_signing_keys(request, requester):
    body = await json_body(request, limit=MAX_KEYS_BODY, allow_empty=True)
    cross_signing = get_hs(request).e2ee.cross_signing
    keys = cross_signing.parse_upload(requester.user_id, body)
    if await cross_signing.requires_auth(requester.user_id, keys):
        await uia.require(request, requester, body, await uia.user_flows(request, requester))
    await cross_signing.upload_keys(requester.user_id, keys)
    return json_response({})


@routes.post("/keys/signatures/upload", versions=WITH_UNSTABLE)
async def upload_signatures(request, requester):
    body = await json_body(request, limit=MAX_KEYS_BODY)
    cross_signing = get_hs(request).e2ee.cross_signing
    return json_response(await cross_signing.upload_signatures(requester.user_id, body))


# --- send-to-device -------------------------------------------------------------------


@routes.put("/sendToDevice/{event_type}/{txn_id}")
async def send_to_device(request, requester):
    body = await json_body(request, limit=MAX_TO_DEVICE_BODY)
    to_device = get_hs(request).e2ee.to_device
    event_type = request.match_info["event_type"]
    txn_id = request.match_info["txn_id"]
    messages = to_device.check(event_type, txn_id, body)
    await to_device.send(requester.user_id, requester.device_id, event_type, txn_id, messages)
    return json_response({})


# --- room key backup ------------------------------------------------------------------


@routes.post("/room_keys/version")
async def create_backup_version(request, requester):
    body = await json_body(request, limit=MAX_KEYS_BODY)
    backup = get_hs(request).e2ee.backup
    return json_response(await backup.create_version(requester.user_id, body))


@routes.get("/room_keys/version")
async def get_current_backup_version(request, requester):
    backup = get_hs(request).e2ee.backup
    return json_response(await backup.get_version(requester.user_id, None))


@routes.get("/room_keys/version/{version}")
async def get_backup_version(request, requester):
    backup = get_hs(request).e2ee.backup
    version = request.match_info["version"]
    return json_response(await backup.get_version(requester.user_id, version))


@routes.put("/room_keys/version/{version}")
async def update_backup_version(request, requester):
    body = await json_body(request, limit=MAX_KEYS_BODY)
    backup = get_hs(request).e2ee.backup
    version = request.match_info["version"]
    return json_response(await backup.update_version(requester.user_id, version, body))


@routes.delete("/room_keys/version/{version}")
async def delete_backup_version(request, requester):
    backup = get_hs(request).e2ee.backup
    version = request.match_info["version"]
    return json_response(await backup.delete_version(requester.user_id, version))


def _backup_target(request) -> tuple[str | None, str | None, str | None]:
    m = request.match_info
    return request.query.get("version"), m.get("room_id"), m.get("session_id")


@routes.put("/room_keys/keys")
@routes.put("/room_keys/keys/{room_id}")
@routes.put("/room_keys/keys/{room_id}/{session_id}")
async def put_backup_keys(request, requester):
    body = await json_body(request, limit=MAX_BACKUP_BODY)
    version, room_id, session_id = _backup_target(request)
    if session_id is not None and room_id is not None:  # the route gives both or neither
        sessions = parse_sessions(room_id, {"sessions": {session_id: body}})
    elif room_id is not None:
        sessions = parse_sessions(room_id, body)
    else:
        sessions = parse_rooms(body)
    backup = get_hs(request).e2ee.backup
    return json_response(await backup.put_keys(requester.user_id, version, sessions))


@routes.get("/room_keys/keys")
@routes.get("/room_keys/keys/{room_id}")
@routes.get("/room_keys/keys/{room_id}/{session_id}")
async def get_backup_keys(request, requester):
    version, room_id, session_id = _backup_target(request)
    backup = get_hs(request).e2ee.backup
    return json_response(await backup.get_keys(requester.user_id, version, room_id, session_id))


@routes.delete("/room_keys/keys")
@routes.delete("/room_keys/keys/{room_id}")
@routes.delete("/room_keys/keys/{room_id}/{session_id}")
async def delete_backup_keys(request, requester):
    version, room_id, session_id = _backup_target(request)
    backup = get_hs(request).e2ee.backup
    return json_response(await backup.delete_keys(requester.user_id, version, room_id, session_id))
