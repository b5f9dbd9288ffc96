"""Account validity (/_synapse/admin/v1/account_validity/validity): Synapse's POST sets an
account's expiry; GET (ours) reads it."""

from __future__ import annotations

from aiohttp import web

from homeserver.admin.api import AdminRoutes, local_user, note
from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, invalid_param, missing_param, not_found
from homeserver.http.request import INT64_MAX, field, json_body, json_response
from homeserver.http.routes import RouteTable

routes = RouteTable()
admin = AdminRoutes(routes)

PATH = "/v1/account_validity/validity"


def _enabled(request: web.Request):
    validity = get_hs(request).accounts.validity
    if not validity.enabled:
        # Synapse's answer.
        raise MatrixError(400, "M_UNKNOWN", "Account validity feature is disabled")
    return validity


async def _existing_user(request: web.Request, user_id: str) -> str:
    local_user(request, user_id)
    if not await get_hs(request).accounts.users.user_exists(user_id):
        raise not_found("User not found")
    return user_id


@admin.post(PATH)
async def set_validity(request: web.Request, requester: Requester) -> web.Response:
    validity = _enabled(request)
    body = await json_body(request)
    user_id = field(body, "user_id", str)
    expiration_ts = field(body, "expiration_ts", int, None)
    renewal_emails = field(body, "enable_renewal_emails", bool, True)
    if expiration_ts is not None and not 0 <= expiration_ts <= INT64_MAX:
        raise invalid_param("'expiration_ts' must be a timestamp in milliseconds")
    await _existing_user(request, user_id)
    if expiration_ts is None:
        expiration_ts = validity.new_expiry()
    await validity.set_expiry(user_id, expiration_ts, renewal_emails)
    note(request, user_id, expiration_ts=expiration_ts, renewal_emails=renewal_emails)
    return json_response({"expiration_ts": expiration_ts})


@admin.get(PATH)
async def get_validity(request: web.Request, requester: Requester) -> web.Response:
    validity = _enabled(request)
    user_id = request.query.get("user_id")
    if not user_id:
        raise missing_param("Missing 'user_id'")
    await _existing_user(request, user_id)
    row = await validity.store.get(user_id)
    if row is None:
        raise not_found("This account has no expiry yet")
    return json_response(
        {
            "user_id": user_id,
            "expiration_ts": row["expiration_ts"],
            "renewal_email_sent": row["email_sent"],
        }
    )
