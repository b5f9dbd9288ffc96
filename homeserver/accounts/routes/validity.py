"""Account validity (Synapse's unstable endpoints): the renewal link the mail carries, and
asking for a renewal mail now. The logic is homeserver/accounts/validity.py."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.validity import RENEW_PATH, date_text
from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, invalid_param, missing_param, unrecognized
from homeserver.http.request import json_response
from homeserver.http.routes import RouteTable
from storage.accounts import now_ms

routes = RouteTable()

_RENEWED_PAGE = (
    "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Account renewed</title></head>"
    "<body><p>Your account has been renewed until {until}.</p></body></html>"
)


def _validity(request: web.Request):
    validity = get_hs(request).accounts.validity
    if not validity.enabled:
        raise unrecognized("Account validity is not enabled on this server")
    return validity


@routes.get(RENEW_PATH, auth=False, raw_path=True)
async def renew(request: web.Request) -> web.Response:
    validity = _validity(request)
    token = request.query.get("token")
    if not token:
        raise missing_param("Missing 'token'")
    if len(token) > 255:
        raise invalid_param("'token' is too long")
    expiry = await validity.renew(token)
    if expiry is None:
        raise MatrixError(404, "M_NOT_FOUND", "Unknown or already used renewal token")
    return web.Response(
        text=_RENEWED_PAGE.format(until=date_text(expiry)), content_type="text/html"
    )


@routes.post("/_matrix/client/unstable/account_validity/send_mail", raw_path=True)
async def send_mail(request: web.Request, requester: Requester) -> web.Response:
    """Allowed to expired accounts (http/auth.py): the way back in without the old mail."""
    validity = _validity(request)
    await validity.send_renewal_mail(requester.user_id, now_ms())
    return json_response({})
