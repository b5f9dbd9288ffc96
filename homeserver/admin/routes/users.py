"""User administration in Synapse's shapes: listing (v2 and v3), reading, creating and
changing accounts, deactivation (with erasure), passwords, sessions (whois, devices,
login as), rooms, pushers, account data, shadow bans, rate-limit overrides, suspension."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.accounts.deactivation import deactivate_account
from homeserver.accounts.membership import propagate_profile
from homeserver.accounts.passwords import check_password_strength, hash_password
from homeserver.accounts.routes.devices import device_json
from homeserver.accounts.threepids import EMAIL, canonical_email
from homeserver.accounts.usernames import localpart_of, validate_localpart
from homeserver.admin.api import AdminRoutes, direction, local_user, note, order, page, paged
from homeserver.http.auth import Requester, require_admin
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, bad_json, invalid_param, not_found
from homeserver.http.request import field, json_body, json_response, query_bool
from homeserver.http.routes import RouteTable
from storage.accounts import now_ms
from storage.admin import USER_ORDERS, UserFilter

routes = RouteTable()
admin = AdminRoutes(routes)

MAX_DISPLAY_NAME = 256


def user_json(row) -> dict[str, Any]:
    """One account as Synapse's query/list user APIs give it. creation_ts is in seconds
    (Synapse's unit; synapse-admin multiplies it by 1000)."""
    return {
        "name": row["user_id"],
        "displayname": row["displayname"],
        "avatar_url": row["avatar_url"],
        "threepids": [],
        "external_ids": [],
        "is_guest": False,
        "admin": row["is_admin"],
        "deactivated": row["deactivated"],
        "erased": row["erased"],
        "shadow_banned": row["shadow_banned"],
        "locked": row["locked"],
        "suspended": row["suspended"],
        "approved": True,
        "user_type": row["user_type"],
        "appservice_id": None,
        "consent_server_notice_sent": None,
        "consent_version": None,
        "consent_ts": None,
        "creation_ts": row["created_ts"] // 1000,
        "last_seen_ts": row["last_seen_ts"],
    }


async def _existing(request: web.Request, user_id: str | None = None):
    user_id = local_user(request, user_id)
    row = await get_hs(request).admin.store.user(user_id)
    if row is None:
        raise not_found("User not found")
    return row


def _optional_bool(request: web.Request, name: str) -> bool | None:
    return query_bool(request, name) if name in request.query else None


# -- listing --------------------------------------------------------------------------------


async def _list_users(request: web.Request, f: UserFilter) -> web.Response:
    start, limit = page(request)
    f.user_id = request.query.get("user_id") or None
    f.name = request.query.get("name") or None
    f.admins = _optional_bool(request, "admins")
    f.not_user_types = request.query.getall("not_user_type", [])
    query_bool(request, "guests", True)  # checked; there are no guest accounts here
    order_by = order(request, USER_ORDERS, "name")
    rows, total = await get_hs(request).admin.store.list_users(
        f, order_by, direction(request), start, limit
    )
    return paged("users", [user_json(r) for r in rows], total, start, token_as_str=True)


@admin.get("/v2/users")
async def list_users_v2(request: web.Request, _requester: Requester) -> web.Response:
    """v2: `deactivated` and `locked` = true *include* those accounts. `suspended` is no
    filter (nor in Synapse), though synapse-admin sends `suspended=false`."""
    f = UserFilter(
        deactivated=None if query_bool(request, "deactivated") else False,
        locked=None if query_bool(request, "locked") else False,
    )
    return await _list_users(request, f)


@admin.get("/v3/users")
async def list_users_v3(request: web.Request, _requester: Requester) -> web.Response:
    """v3: `deactivated` / `locked` = true lists only those, false only the others,
    absent both."""
    f = UserFilter(
        deactivated=_optional_bool(request, "deactivated"),
        locked=_optional_bool(request, "locked"),
    )
    return await _list_users(request, f)


@admin.get("/v2/users/{user_id}")
async def get_user(request: web.Request, _requester: Requester) -> web.Response:
    user_id = (await _existing(request))["user_id"]
    return json_response(await _user_with_threepids(get_hs(request), user_id))


# -- create or modify -----------------------------------------------------------------------


def _optional_str(body: dict, name: str, max_length: int | None = None) -> str | None:
    value = field(body, name, str, None)
    if value is not None and max_length is not None and len(value) > max_length:
        raise invalid_param(f"'{name}' is too long")
    return value


@admin.put("/v2/users/{user_id}")
async def put_user(request: web.Request, requester: Requester) -> web.Response:
    """Creates the account (201) or changes it (200). Everything is checked before the
    first write, so a bad request changes nothing."""
    hs = get_hs(request)
    user_id = local_user(request)
    body = await json_body(request)
    password = _optional_str(body, "password")
    logout_devices = field(body, "logout_devices", bool, True)
    displayname = _optional_str(body, "displayname", MAX_DISPLAY_NAME)
    avatar_url = _optional_str(body, "avatar_url")
    if avatar_url is not None and avatar_url and not avatar_url.startswith("mxc://"):
        raise invalid_param("'avatar_url' must be an mxc:// URI")
    make_admin = field(body, "admin", bool, None)
    deactivated = field(body, "deactivated", bool, None)
    locked = field(body, "locked", bool, None)
    user_type = body.get("user_type")
    if user_type is not None and not isinstance(user_type, str):
        raise bad_json("'user_type' must be a string or null")
    if body.get("external_ids"):
        raise MatrixError(400, "M_UNKNOWN", "'external_ids' are not supported by this server")
    threepids = await _admin_threepids(request, body, user_id)
    if password is not None:
        check_password_strength(password, hs.config.password_min_length)

    row = await hs.admin.store.user(user_id)
    if row is None:
        validate_localpart(localpart_of(user_id), hs.server_name)
        if deactivated:
            raise invalid_param("Cannot create a deactivated account")
        await _create(request, user_id, password, displayname, make_admin, user_type)
        await _apply_flags(request, user_id, row, avatar_url, locked, None, False)
        await _replace_threepids(request, user_id, threepids)
        note(request, created=True, admin=bool(make_admin))
        return json_response(await _user_with_threepids(hs, user_id), status=201)

    if make_admin is False and user_id == requester.user_id:
        raise MatrixError(400, "M_UNKNOWN", "You may not demote yourself")
    if deactivated is False and row["deactivated"] and password is None:
        raise MatrixError(400, "M_UNKNOWN", "Must provide a password to re-activate an account")
    if password is not None and not (deactivated is False or not row["deactivated"]):
        raise MatrixError(400, "M_UNKNOWN", "Cannot set the password of a deactivated account")

    if deactivated is False and row["deactivated"]:
        await hs.admin.store.reactivate(user_id, await hash_password(password or ""))
        note(request, reactivated=True)
    elif password is not None:
        await _set_password(request, user_id, password, logout_devices)
    if make_admin is not None and make_admin != row["is_admin"]:
        await hs.admin.store.set_user_flag(user_id, "admin", make_admin)
        note(request, admin=make_admin)
    if "user_type" in body:
        await hs.admin.store.set_user_type(user_id, user_type)
        note(request, user_type=user_type)
    if displayname is not None and displayname != row["displayname"]:
        await hs.accounts.profiles.set_field(user_id, "displayname", displayname)
        note(request, displayname=True)
    await _apply_flags(request, user_id, row, avatar_url, locked, deactivated, True)
    await _replace_threepids(request, user_id, threepids)
    if displayname is not None or avatar_url is not None:
        profile = await hs.accounts.profiles.get(user_id)
        if profile is not None and not deactivated:
            await propagate_profile(hs, user_id, profile["displayname"], profile["avatar_url"])
    return json_response(await _user_with_threepids(hs, user_id))


async def _admin_threepids(request: web.Request, body: dict, user_id: str) -> list[str] | None:
    """Synapse's `threepids` of PUT v2/users: the addresses that replace the account's
    (an admin needs no validation mail). Checked before any write: e-mail only, well
    formed, and bound to no other account."""
    value = body.get("threepids")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise bad_json("'threepids' must be a list of {medium, address} objects")
    addresses = []
    for item in value:
        if item.get("medium") != EMAIL or not isinstance(item.get("address"), str):
            raise invalid_param("Only 'email' threepids with an 'address' are supported")
        addresses.append(canonical_email(item["address"]))
    service = get_hs(request).accounts.threepids
    for address in addresses:
        if await service.user_of(address) not in (None, user_id):
            raise MatrixError(400, "M_THREEPID_IN_USE", "An address is bound to another account")
    return list(dict.fromkeys(addresses))


async def _replace_threepids(request: web.Request, user_id: str, addresses) -> None:
    if addresses is None:
        return
    hs = get_hs(request)
    store = hs.accounts.threepids.store
    async with hs.db.acquire() as conn, conn.transaction():
        await store.unbind_all(conn, user_id)
        for address in addresses:
            if not await store.bind(conn, user_id, EMAIL, address, now_ms()):
                raise MatrixError(
                    400, "M_THREEPID_IN_USE", "An address is bound to another account"
                )
    note(request, threepids=len(addresses))


async def _user_with_threepids(hs, user_id: str) -> dict[str, Any]:
    """One account as GET v2/users/{id} gives it: with its addresses (the lists leave
    them out, as one query per listed user)."""
    body = user_json(await hs.admin.store.user(user_id))
    body["threepids"] = [
        {
            "medium": r["medium"],
            "address": r["address"],
            "added_at": r["added_ts"],
            "validated_at": r["validated_ts"],
        }
        for r in await hs.accounts.threepids.store.of_user(user_id)
    ]
    return body


async def _create(request, user_id, password, displayname, make_admin, user_type) -> None:
    hs = get_hs(request)
    password_hash = await hash_password(password) if password is not None else None
    async with hs.db.acquire() as conn, conn.transaction():
        created = await hs.accounts.users.create_user(
            conn, user_id, password_hash, bool(make_admin), displayname or localpart_of(user_id)
        )
    if not created:
        raise MatrixError(400, "M_USER_IN_USE", "User ID already taken")
    if user_type is not None:
        await hs.admin.store.set_user_type(user_id, user_type)


async def _apply_flags(request, user_id, row, avatar_url, locked, deactivated, exists) -> None:
    hs = get_hs(request)
    if avatar_url is not None and (row is None or avatar_url != row["avatar_url"]):
        await hs.accounts.profiles.set_field(user_id, "avatar_url", avatar_url or None)
        note(request, avatar_url=True)
    if locked is not None and (row is None or locked != row["locked"]):
        await hs.admin.store.set_user_flag(user_id, "locked", locked)
        if locked:
            await _log_out_everywhere(hs, user_id)
        note(request, locked=locked)
    if exists and deactivated and row is not None and not row["deactivated"]:
        await deactivate_account(hs, user_id, erase=False)
        note(request, deactivated=True)


async def _log_out_everywhere(hs, user_id: str) -> None:
    await hs.accounts.delete_devices(user_id, await hs.accounts.devices.device_ids(user_id))


async def _set_password(request, user_id: str, password: str, logout_devices: bool) -> None:
    hs = get_hs(request)
    await hs.accounts.users.set_password_hash(user_id, await hash_password(password))
    if logout_devices:
        await _log_out_everywhere(hs, user_id)
    note(request, password_changed=True, logout_devices=logout_devices)


@admin.post("/v1/deactivate/{user_id}")
async def deactivate(request: web.Request, _requester: Requester) -> web.Response:
    row = await _existing(request)
    body = await json_body(request, allow_empty=True)
    erase = field(body, "erase", bool, False)
    if not row["deactivated"] or (erase and not row["erased"]):
        await deactivate_account(get_hs(request), row["user_id"], erase)
    note(request, erase=erase)
    return json_response({"id_server_unbind_result": "success"})


@admin.post("/v1/reset_password/{user_id}")
async def reset_password(request: web.Request, _requester: Requester) -> web.Response:
    row = await _existing(request)
    body = await json_body(request)
    password = field(body, "new_password", str)
    logout_devices = field(body, "logout_devices", bool, True)
    check_password_strength(password, get_hs(request).config.password_min_length)
    if row["deactivated"]:
        raise MatrixError(400, "M_UNKNOWN", "Cannot set the password of a deactivated account")
    await _set_password(request, row["user_id"], password, logout_devices)
    return json_response({})


# -- sessions -------------------------------------------------------------------------------


@admin.get("/v1/whois/{user_id}", audit=True)
async def whois(request: web.Request, _requester: Requester) -> web.Response:
    row = await _existing(request)
    return json_response(await _whois(request, row["user_id"]))


@routes.get("/admin/whois/{user_id}")
async def client_whois(request: web.Request, requester: Requester) -> web.Response:
    """The Client-Server API's whois (admin.yaml): a server admin may look anyone up (and
    is audited, as with /_synapse/admin/v1/whois), a user only themselves. Refused before
    any lookup, so nobody learns who exists."""
    user_id = request.match_info["user_id"]
    if user_id != requester.user_id:
        require_admin(request, requester)
    row = await _existing(request, user_id)
    body = await _whois(request, row["user_id"])
    if user_id != requester.user_id:
        await get_hs(request).admin.store.audit(requester.user_id, "whois", user_id, {})
    return json_response(body)


async def _whois(request: web.Request, user_id: str) -> dict[str, Any]:
    devices = await get_hs(request).admin.store.devices_with_tokens(user_id)
    return {
        "user_id": user_id,
        "devices": {
            d["device_id"]: {
                "sessions": [
                    {
                        "connections": [
                            {
                                "ip": d["last_seen_ip"],
                                "last_seen": d["last_seen_ts"],
                                "user_agent": None,
                            }
                        ]
                    }
                ]
            }
            for d in devices
        },
    }


@admin.post("/v1/users/{user_id}/login")
async def login_as(request: web.Request, requester: Requester) -> web.Response:
    """An access token for the user (a new device named after the admin). `valid_until_ms`
    is refused: tokens here do not expire."""
    row = await _existing(request)
    if row["user_id"] == requester.user_id:
        raise MatrixError(400, "M_UNKNOWN", "Cannot use admin API to login as self")
    if row["deactivated"]:
        raise MatrixError(400, "M_UNKNOWN", "The user is deactivated")
    body = await json_body(request, allow_empty=True)
    if body.get("valid_until_ms") is not None:
        raise invalid_param("'valid_until_ms' is not supported: tokens do not expire here")
    hs = get_hs(request)
    async with hs.db.acquire() as conn, conn.transaction():
        token, device_id = await hs.accounts.start_session(
            conn, row["user_id"], None, f"Admin login by {requester.user_id}", request.remote
        )
    note(request, device_id=device_id)
    return json_response({"access_token": token})


@admin.get("/v2/users/{user_id}/devices")
async def list_devices(request: web.Request, _requester: Requester) -> web.Response:
    row = await _existing(request)
    devices = await get_hs(request).accounts.devices.list_devices(row["user_id"])
    items = [{**device_json(d), "user_id": row["user_id"]} for d in devices]
    return json_response({"devices": items, "total": len(items)})


@admin.post("/v2/users/{user_id}/devices")
async def create_device(request: web.Request, _requester: Requester) -> web.Response:
    row = await _existing(request)
    body = await json_body(request)
    device_id = field(body, "device_id", str)
    if not device_id or len(device_id) > 255:
        raise invalid_param("Invalid device_id")
    hs = get_hs(request)
    async with hs.db.acquire() as conn, conn.transaction():
        await hs.accounts.devices.ensure_device(conn, row["user_id"], device_id, None, None)
    note(request, device_id=device_id)
    return json_response({})


def _device_id(request: web.Request) -> str:
    return request.match_info["device_id"]


@admin.get("/v2/users/{user_id}/devices/{device_id}")
async def get_device(request: web.Request, _requester: Requester) -> web.Response:
    row = await _existing(request)
    device = await get_hs(request).accounts.devices.get_device(row["user_id"], _device_id(request))
    if device is None:
        raise not_found("Device not found")
    return json_response({**device_json(device), "user_id": row["user_id"]})


@admin.put("/v2/users/{user_id}/devices/{device_id}")
async def update_device(request: web.Request, _requester: Requester) -> web.Response:
    row = await _existing(request)
    body = await json_body(request, allow_empty=True)
    name = field(body, "display_name", str, None)
    if name is not None and len(name) > MAX_DISPLAY_NAME:
        raise invalid_param("'display_name' is too long")
    devices = get_hs(request).accounts.devices
    if not await devices.set_display_name(row["user_id"], _device_id(request), name):
        raise not_found("Device not found")
    note(request, device_id=_device_id(request))
    return json_response({})


@admin.delete("/v2/users/{user_id}/devices/{device_id}")
async def delete_device(request: web.Request, _requester: Requester) -> web.Response:
    row = await _existing(request)
    # Deleting a device that does not exist succeeds, as in Synapse.
    await get_hs(request).accounts.delete_devices(row["user_id"], [_device_id(request)])
    note(request, device_id=_device_id(request))
    return json_response({})


@admin.post("/v2/users/{user_id}/delete_devices")
async def delete_devices(request: web.Request, _requester: Requester) -> web.Response:
    row = await _existing(request)
    body = await json_body(request)
    device_ids = field(body, "devices", list)
    if not all(isinstance(d, str) for d in device_ids):
        raise bad_json("'devices' must be a list of device IDs")
    deleted = await get_hs(request).accounts.delete_devices(row["user_id"], device_ids)
    note(request, devices=len(deleted))
    return json_response({})


# -- rooms, pushers, account data --------------------------------------------------------------


@admin.get("/v1/users/{user_id}/joined_rooms")
async def joined_rooms(request: web.Request, _requester: Requester) -> web.Response:
    user_id = local_user(request)
    rooms = await get_hs(request).membership_store.joined_rooms(user_id)
    return json_response({"joined_rooms": rooms, "total": len(rooms)})


@admin.get("/v1/users/{user_id}/memberships")
async def memberships(request: web.Request, _requester: Requester) -> web.Response:
    user_id = local_user(request)
    rooms = (await get_hs(request).membership_store.memberships_of([user_id]))[user_id]
    return json_response({"memberships": {room: m[0] for room, m in sorted(rooms.items())}})


@admin.get("/v1/users/{user_id}/pushers")
async def pushers(request: web.Request, _requester: Requester) -> web.Response:
    row = await _existing(request)
    items = await get_hs(request).push_store.pushers(row["user_id"])
    return json_response({"pushers": items, "total": len(items)})


@admin.get("/v1/users/{user_id}/accountdata", audit=True)
async def account_data(request: web.Request, _requester: Requester) -> web.Response:
    row = await _existing(request)
    global_data, rooms = await get_hs(request).admin.store.account_data(row["user_id"])
    return json_response({"account_data": {"global": global_data, "rooms": rooms}})


# -- flags ----------------------------------------------------------------------------------


@admin.get("/v1/users/{user_id}/admin")
async def get_admin(request: web.Request, _requester: Requester) -> web.Response:
    row = await _existing(request)
    return json_response({"admin": row["is_admin"]})


@admin.put("/v1/users/{user_id}/admin")
async def set_admin(request: web.Request, requester: Requester) -> web.Response:
    row = await _existing(request)
    body = await json_body(request)
    value = field(body, "admin", bool)
    if row["user_id"] == requester.user_id and not value:
        raise MatrixError(400, "M_UNKNOWN", "You may not demote yourself")
    await get_hs(request).admin.store.set_user_flag(row["user_id"], "admin", value)
    note(request, admin=value)
    return json_response({})


async def _shadow_ban(request: web.Request, value: bool) -> web.Response:
    row = await _existing(request)
    await get_hs(request).admin.store.set_user_flag(row["user_id"], "shadow_banned", value)
    return json_response({})


@admin.post("/v1/users/{user_id}/shadow_ban")
async def shadow_ban(request: web.Request, _requester: Requester) -> web.Response:
    return await _shadow_ban(request, True)


@admin.delete("/v1/users/{user_id}/shadow_ban")
async def unshadow_ban(request: web.Request, _requester: Requester) -> web.Response:
    return await _shadow_ban(request, False)


@admin.put("/v1/suspend/{user_id}")
async def suspend(request: web.Request, _requester: Requester) -> web.Response:
    row = await _existing(request)
    body = await json_body(request)
    value = field(body, "suspend", bool)
    await get_hs(request).admin.store.set_user_flag(row["user_id"], "suspended", value)
    note(request, suspend=value)
    return json_response({f"user_{row['user_id']}_suspended": value})


@admin.get("/v1/users/{user_id}/override_ratelimit")
async def get_ratelimit(request: web.Request, _requester: Requester) -> web.Response:
    row = await _existing(request)
    override = await get_hs(request).admin.store.ratelimit_override(row["user_id"])
    return json_response(dict(override) if override is not None else {})


def _non_negative(body: dict, name: str) -> int:
    value = field(body, name, int, 0)
    if value < 0:
        raise invalid_param(f"'{name}' must be a non-negative integer")
    return value


@admin.post("/v1/users/{user_id}/override_ratelimit")
async def set_ratelimit(request: web.Request, _requester: Requester) -> web.Response:
    row = await _existing(request)
    body = await json_body(request, allow_empty=True)
    per_second = _non_negative(body, "messages_per_second")
    burst = _non_negative(body, "burst_count")
    await get_hs(request).admin.store.set_ratelimit_override(row["user_id"], per_second, burst)
    note(request, messages_per_second=per_second, burst_count=burst)
    return json_response({"messages_per_second": per_second, "burst_count": burst})


@admin.delete("/v1/users/{user_id}/override_ratelimit")
async def delete_ratelimit(request: web.Request, _requester: Requester) -> web.Response:
    row = await _existing(request)
    await get_hs(request).admin.store.delete_ratelimit_override(row["user_id"])
    return json_response({})


@admin.get("/v1/username_available")
async def username_available(request: web.Request, _requester: Requester) -> web.Response:
    hs = get_hs(request)
    username = request.query.get("username")
    if not username:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing 'username'")
    user_id = validate_localpart(username.lower(), hs.server_name)
    if await hs.accounts.users.user_exists(user_id):
        raise MatrixError(400, "M_USER_IN_USE", "User ID already taken")
    return json_response({"available": True})


@admin.get("/v1/experimental_features/{user_id}")
async def get_experimental_features(request: web.Request, _requester: Requester) -> web.Response:
    """Synapse's per-user MSC switches: this server implements none of them."""
    await _existing(request)
    return json_response({"features": {}})


@admin.put("/v1/experimental_features/{user_id}")
async def put_experimental_features(request: web.Request, _requester: Requester) -> web.Response:
    await _existing(request)
    body = await json_body(request)
    features = field(body, "features", dict)
    if any(value is not False for value in features.values()):
        raise invalid_param("This server has none of Synapse's experimental features")
    return json_response({})
