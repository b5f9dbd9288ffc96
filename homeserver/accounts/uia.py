"""User-interactive authentication (spec: client-server-api, "User-Interactive Authentication API").

Usage from any endpoint that must re-check who is asking:

    results = await uia.require(request, requester, body, [["m.login.password"]])

It returns once one flow is complete (results holds what the stages established, e.g.
the registration token used) and otherwise raises the 401 that tells the client what to
do next. Sessions live in the uia_sessions table, so a client may switch workers between
stages.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from homeserver.accounts import recaptcha, threepids
from homeserver.accounts.passwords import verify_password
from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, bad_json

PASSWORD = "m.login.password"
DUMMY = "m.login.dummy"
REGISTRATION_TOKEN = "m.login.registration_token"
EMAIL_IDENTITY = threepids.EMAIL_IDENTITY
RECAPTCHA = recaptcha.STAGE
SSO = "m.login.sso"
PASSWORD_FLOWS = [[PASSWORD]]
# Stages completed out of band (a web page: the SSO fallback), which a client then
# reports by resubmitting the session alone (spec: "Fallback").
_OUT_OF_BAND = {SSO}
# A session whose SSO stage was completed by another user than the session's: the
# request it guards is refused (403), as a password stage of someone else is.
SSO_MISMATCH = "sso_user_mismatch"

SESSION_MAX_AGE_MS = 30 * 60 * 1000
# The key of `require`'s results that names the session, when it is not spent.
SESSION_ID = "uia_session"
_VERSION_PREFIX = re.compile(r"^/_matrix/client/[^/]+")


class UIARequired(MatrixError):
    """The 401 of a UIA round: flows, params, session, completed, and an error if a stage failed."""

    def __init__(self, session_id, flows, params, completed, errcode=None, error=None):
        super().__init__(401, errcode or "M_FORBIDDEN", error or "Authentication required")
        self.has_error = errcode is not None
        self.extra = {
            "flows": [{"stages": list(flow)} for flow in flows],
            "params": params,
            "session": session_id,
            "completed": completed,
        }

    def body(self) -> dict[str, Any]:
        # The first challenge carries no errcode: clients treat an errcode as a failed stage.
        if self.has_error:
            return super().body()
        return dict(self.extra)


class StageFailed(Exception):
    def __init__(self, errcode: str, error: str):
        super().__init__(error)
        self.errcode = errcode
        self.error = error


StageChecker = Callable[[web.Request, Requester | None, dict], Awaitable[dict]]


async def _check_dummy(_request, _requester, _auth) -> dict:
    return {}


async def _check_password(request, requester, auth) -> dict:
    hs = get_hs(request)
    password = auth.get("password")
    if not isinstance(password, str):
        raise StageFailed("M_MISSING_PARAM", "Missing 'password'")
    try:
        user_id = await hs.accounts.threepids.login_user(auth, hs.server_name)
    except MatrixError as err:
        raise StageFailed(err.errcode, err.error) from None
    if user_id is None:
        await verify_password(None, password)
        raise StageFailed("M_FORBIDDEN", "Invalid password")
    user = await hs.accounts.users.get_user(user_id)
    password_hash = user["password_hash"] if user and not user["deactivated"] else None
    if not await verify_password(password_hash, password):
        raise StageFailed("M_FORBIDDEN", "Invalid password")
    if requester is not None and user_id != requester.user_id:
        # Valid credentials of someone else (a stolen token used with the thief's own
        # password): not a stage to retry but a refusal, 403 as Synapse answers.
        raise MatrixError(403, "M_FORBIDDEN", "You can only authenticate as yourself")
    return {"user_id": user_id}


async def _check_registration_token(request, _requester, auth) -> dict:
    hs = get_hs(request)
    # The spec names it `token`; some clients (older nio docs) say `registration_token`.
    token = auth.get("token", auth.get("registration_token"))
    if not isinstance(token, str) or not token:
        raise StageFailed("M_MISSING_PARAM", "Missing 'token'")
    if not await hs.accounts.registration_tokens.is_usable(token):
        raise StageFailed("M_FORBIDDEN", "Invalid registration token")
    return {"registration_token": token}


# What an e-mail validation session may be spent on, by the request it authorises.
_EMAIL_PURPOSES = {
    "POST /register": threepids.REGISTER,
    "POST /account/password": threepids.PASSWORD,
}


async def _check_email_identity(request, _requester, auth) -> dict:
    purpose = _EMAIL_PURPOSES.get(request_key(request))
    if purpose is None:
        raise StageFailed("M_UNRECOGNIZED", "This request takes no e-mail stage")
    try:
        return await get_hs(request).accounts.threepids.check_stage(auth, purpose)
    except MatrixError as err:
        raise StageFailed(err.errcode, err.error) from None


async def _check_recaptcha(request, _requester, auth) -> dict:
    response = auth.get("response")
    if not isinstance(response, str) or not response:
        raise StageFailed("M_MISSING_PARAM", "Missing 'response'")
    try:
        passed = await get_hs(request).accounts.recaptcha.verify(response, request.remote)
    except recaptcha.CaptchaUnavailable:
        raise StageFailed("M_UNKNOWN", "The captcha could not be checked; try again") from None
    if not passed:
        raise StageFailed("M_UNAUTHORIZED", "Captcha not verified")
    return {}


async def _check_sso(_request, _requester, _auth) -> dict:
    # Completed only by the fallback page's sign-in (routes/sso.py); `require` counts it
    # once the session records it.
    raise StageFailed(
        "M_FORBIDDEN", "Sign in through /auth/m.login.sso/fallback/web to complete this stage"
    )


STAGES: dict[str, StageChecker] = {
    DUMMY: _check_dummy,
    PASSWORD: _check_password,
    REGISTRATION_TOKEN: _check_registration_token,
    EMAIL_IDENTITY: _check_email_identity,
    RECAPTCHA: _check_recaptcha,
    SSO: _check_sso,
}


async def user_flows(request: web.Request, requester: Requester) -> list[list[str]]:
    """The flows that confirm a signed-in user: their password, and single sign-on for an
    account that signs in by CAS (the only flow of one that has no password)."""
    hs = get_hs(request)
    if not await hs.accounts.cas.signs_in_by_cas(requester.user_id):
        return PASSWORD_FLOWS
    user = await hs.accounts.users.get_user(requester.user_id)
    flows = [[PASSWORD]] if user is not None and user["password_hash"] else []
    return [*flows, [SSO]]


def request_key(request: web.Request) -> str:
    """What a session is bound to: the method and the path without its version prefix.
    The path itself, not its route: a session begun to delete one device must not
    delete another (spec: the operation must stay the same through a session)."""
    return f"{request.method} {_VERSION_PREFIX.sub('', request.path)}"


async def session_of(request: web.Request, requester: Requester | None, body: dict):
    """The UIA session the body's `auth.session` names, checked as `require` checks it,
    or None when the body names none."""
    auth = body.get("auth")
    if not isinstance(auth, dict):
        if auth is not None:
            raise bad_json("'auth' must be an object")
        return None
    session_id = auth.get("session")
    if session_id is None:
        return None
    if not isinstance(session_id, str):
        raise bad_json("'session' must be a string")
    session = await get_hs(request).accounts.uia_sessions.get(session_id, SESSION_MAX_AGE_MS)
    if session is None:
        raise MatrixError(400, "M_UNKNOWN", "Unknown or expired UIA session")
    user_id = requester.user_id if requester else None
    if session["request_key"] != request_key(request) or session["user_id"] != user_id:
        raise MatrixError(
            403, "M_FORBIDDEN", "The UIA session belongs to a different request or user"
        )
    return session


async def require(
    request: web.Request,
    requester: Requester | None,
    body: dict,
    flows: list[list[str]],
    params: dict | None = None,
    *,
    remember: dict | None = None,
    spend: bool = True,
) -> dict:
    """Returns the merged stage results once a flow completes; otherwise raises UIARequired.

    `remember`: values kept in the session's results from this request on (an endpoint's
    parameters, given once and not repeated with later stages). `spend=False` keeps the
    session after its flow completes (registration answers a repeat alike); the results
    then carry the session's ID as `SESSION_ID`.
    """
    hs = get_hs(request)
    store = hs.accounts.uia_sessions
    params = params or {}
    session = await session_of(request, requester, body)
    auth = body.get("auth") or {}
    user_id = requester.user_id if requester else None

    async def open_session():
        await store.delete_expired(SESSION_MAX_AGE_MS)
        new_id = secrets.token_urlsafe(24)
        await store.create(new_id, request_key(request), user_id)
        return {"session_id": new_id, "completed": [], "results": {}}

    if session is None:
        session = await open_session()
    sid = session["session_id"]
    if session["results"].get(SSO_MISMATCH):
        await store.delete(sid)
        raise MatrixError(403, "M_FORBIDDEN", "You can only authenticate as yourself")
    if remember:
        await store.complete_stage(sid, None, remember)
        session["results"] = {**session["results"], **remember}

    stage = auth.get("type")
    completed = session["completed"]
    result: dict = {}
    if stage is None or (stage in _OUT_OF_BAND and stage in completed):
        # The session alone: complete if a stage done out of band finished a flow.
        if not any(set(flow) <= set(completed) for flow in flows):
            raise UIARequired(sid, flows, params, completed)
    else:
        allowed = {s for flow in flows for s in flow}
        checker = STAGES.get(stage) if stage in allowed else None
        if checker is None:
            raise UIARequired(
                sid,
                flows,
                params,
                completed,
                "M_UNRECOGNIZED",
                f"Stage {stage!r} not offered",
            )
        try:
            result = await checker(request, requester, auth)
        except StageFailed as failed:
            raise UIARequired(sid, flows, params, completed, failed.errcode, failed.error) from None
        completed = await store.complete_stage(sid, stage, result)
    if not any(set(flow) <= set(completed) for flow in flows):
        raise UIARequired(sid, flows, params, completed)
    if not spend:
        return {**session["results"], **result, SESSION_ID: sid}
    # One completed flow authorises one request: the session is spent.
    await store.delete(sid)
    return {**session["results"], **result}
