"""Single sign-on through CAS (homeserver/accounts/cas.py): GET /login/sso/redirect (and
/login/sso/redirect/cas, the legacy /login/cas/redirect), the CAS server's way back
GET /login/cas/ticket, and the user-interactive auth fallback
GET /auth/m.login.sso/fallback/web. All 404 M_UNRECOGNIZED while `cas.enabled` is off.

What a browser reads is an HTML page (or a redirect); errors before the CAS server is
involved (a missing parameter) are Matrix errors for the client that built the URL."""

from __future__ import annotations

import html
import logging
import re
from urllib.parse import urlsplit

from aiohttp import web

from homeserver.accounts import cas as cas_mod
from homeserver.accounts import uia
from homeserver.accounts.cas import CasError
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, invalid_param, missing_param
from homeserver.http.routes import RouteTable

logger = logging.getLogger(__name__)

routes = RouteTable()

_MAX_URL = 2048
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
# Schemes that would run in our page, not reach a client.
_REFUSED_SCHEMES = {"javascript", "data", "vbscript", "file", "blob"}
# What a UIA session guards, for the confirmation page (request_key prefixes).
_OPERATIONS = (
    ("DELETE /devices/", "remove a device from your account"),
    ("POST /delete_devices", "remove devices from your account"),
    ("POST /account/password", "change your password"),
    ("POST /account/deactivate", "close your account"),
    ("POST /account/3pid/add", "add an e-mail address to your account"),
    ("POST /keys/device_signing/upload", "replace your cross-signing keys"),
)
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    # No framing: a page asking for a click must not be overlaid by another site.
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; frame-ancestors 'none'",
}


def _page(title: str, body: str, status: int = 200) -> web.Response:
    text = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title></head><body>{body}</body></html>"
    )
    return web.Response(status=status, text=text, content_type="text/html", headers=_PAGE_HEADERS)


def _error_page(err: CasError) -> web.Response:
    return _page("Sign-in failed", f"<p>{html.escape(err.message)}</p>", err.status)


def _cas(request: web.Request):
    service = get_hs(request).accounts.cas
    if not service.enabled:
        raise MatrixError(404, "M_UNRECOGNIZED", "Single sign-on is not enabled on this server")
    return service


def _redirect_url(request: web.Request) -> str:
    url = request.query.get("redirectUrl")
    if not url:
        raise missing_param("Missing 'redirectUrl'")
    scheme = urlsplit(url).scheme.lower()
    if (
        len(url) > _MAX_URL
        or not _SCHEME.fullmatch(scheme)
        or scheme in _REFUSED_SCHEMES
        or any(c.isspace() or ord(c) < 0x20 for c in url)
    ):
        raise invalid_param("'redirectUrl' must be an absolute URL")
    return url


async def _sso_redirect(request: web.Request) -> web.Response:
    service = _cas(request)
    redirect_url = _redirect_url(request)
    # Returned, not raised: the middleware turns raised HTTP exceptions into errors.
    return web.Response(
        status=302, headers={"Location": service.login_url({"redirectUrl": redirect_url})}
    )


@routes.get("/login/sso/redirect", auth=False)
async def sso_redirect(request: web.Request) -> web.Response:
    return await _sso_redirect(request)


@routes.get("/login/sso/redirect/{idp_id}", auth=False)
async def sso_redirect_idp(request: web.Request) -> web.Response:
    _cas(request)
    if request.match_info["idp_id"] != cas_mod.PROVIDER:
        raise MatrixError(404, "M_NOT_FOUND", "Unknown identity provider")
    return await _sso_redirect(request)


@routes.get("/login/cas/redirect", auth=False)
async def cas_redirect(request: web.Request) -> web.Response:
    return await _sso_redirect(request)


@routes.get("/login/cas/ticket", auth=False)
async def cas_ticket(request: web.Request) -> web.Response:
    service = _cas(request)
    ticket = request.query.get("ticket")
    if not ticket:
        raise missing_param("Missing 'ticket'")
    session_id = request.query.get("session")
    if session_id is not None:
        return await _ticket_for_uia(request, ticket, session_id)
    redirect_url = _redirect_url(request)
    hs = get_hs(request)
    hs.login_limiter.check(request.remote or "")
    try:
        cas_user, attributes = await service.validate_ticket(ticket, {"redirectUrl": redirect_url})
        user_id = await service.user_for_login(cas_user, attributes)
    except CasError as err:
        return _error_page(err)
    token = await service.issue_login_token(user_id)
    target = cas_mod.with_login_token(redirect_url, token)
    if service.trusts_client(redirect_url):
        return web.Response(status=302, headers={"Location": target, **_PAGE_HEADERS})
    # Any other client is named to the user, who confirms (spec: "Homeservers should
    # ensure that login tokens are not sent to malicious clients").
    parts = urlsplit(redirect_url)
    client = parts.netloc or f"{parts.scheme}:"
    return _page(
        "Continue to your application",
        f"<p>You are signed in as <b>{html.escape(user_id)}</b>.</p>"
        f"<p>Continue to <b>{html.escape(client)}</b>? The application there will be given"
        " access to your account. If you did not just ask to sign in, close this page.</p>"
        f'<p><a href="{html.escape(target, quote=True)}">Continue</a></p>',
    )


async def _ticket_for_uia(request: web.Request, ticket: str, session_id: str) -> web.Response:
    """The CAS sign-in of a fallback page: completes the session's m.login.sso stage when
    the CAS user is the session's user."""
    hs = get_hs(request)
    service = hs.accounts.cas
    session = await hs.accounts.uia_sessions.get(session_id, uia.SESSION_MAX_AGE_MS)
    if session is None or session["user_id"] is None:
        return _page("Sign-in failed", "<p>Unknown or expired session.</p>", 400)
    try:
        cas_user, attributes = await service.validate_ticket(ticket, {"session": session_id})
        service.check_attributes(attributes)
    except CasError as err:
        return _error_page(err)
    if not await service.identity_is(cas_user, session["user_id"]):
        logger.info("SSO stage of a UIA session completed by another user: refused")
        # The fallback is over all the same (200, and the client told so): its retry of the
        # request learns the refusal, a 403 (uia.require).
        await hs.accounts.uia_sessions.complete_stage(session_id, None, {uia.SSO_MISMATCH: True})
        return _page(
            "Sign-in refused",
            "<p>You signed in as another user than the account that asked for this"
            " confirmation. The operation will be refused.</p>" + _AUTH_DONE,
        )
    await hs.accounts.uia_sessions.complete_stage(session_id, uia.SSO, {})
    return _page(
        "Confirmed",
        "<p>Thank you. You may now close this window and return to your application.</p>"
        + _AUTH_DONE,
    )


# The fallback's completion (spec: "Fallback").
_AUTH_DONE = (
    "<script>if (window.onAuthDone) { window.onAuthDone(); }"
    " else if (window.opener && window.opener.postMessage) {"
    ' window.opener.postMessage("authDone", "*"); }</script>'
)


@routes.get("/auth/m.login.sso/fallback/web", auth=False)
async def sso_fallback(request: web.Request) -> web.Response:
    service = _cas(request)
    session_id = request.query.get("session")
    if not session_id:
        raise missing_param("Missing 'session'")
    session = await get_hs(request).accounts.uia_sessions.get(session_id, uia.SESSION_MAX_AGE_MS)
    if session is None or session["user_id"] is None:
        return _page("Unknown session", "<p>Unknown or expired session.</p>", 400)
    key = session["request_key"]
    what = next((text for prefix, text in _OPERATIONS if key.startswith(prefix)), None)
    what = what or "perform a sensitive operation on your account"
    login = service.login_url({"session": session_id})
    return _page(
        "Confirm with single sign-on",
        f"<p>An application is trying to {html.escape(what)}"
        f" (<b>{html.escape(session['user_id'])}</b>). To confirm, sign in again with"
        f" {html.escape(get_hs(request).config.cas.idp_name)}.</p>"
        "<p>If you did not expect this, do not continue: your account may be"
        " compromised.</p>"
        f'<p><a href="{html.escape(login, quote=True)}">Continue with'
        f" {html.escape(get_hs(request).config.cas.idp_name)}</a></p>",
    )
