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

from homeserver.accounts.passwords import verify_password
from homeserver.accounts.usernames import user_id_from_login
from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, bad_json

PASSWORD = "m.login.password"
DUMMY = "m.login.dummy"
REGISTRATION_TOKEN = "m.login.registration_token"
PASSWORD_FLOWS = [[PASSWORD]]

SESSION_MAX_AGE_MS = 30 * 60 * 1000
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
        user_id = user_id_from_login(auth, hs.server_name)
    except MatrixError as err:
        raise StageFailed(err.errcode, err.error) from None
    if requester is not None and user_id != requester.user_id:
        raise StageFailed("M_FORBIDDEN", "You can only authenticate as yourself")
    user = await hs.accounts.users.get_user(user_id)
    password_hash = user["password_hash"] if user and not user["deactivated"] else None
    if not await verify_password(password_hash, password):
        raise StageFailed("M_FORBIDDEN", "Invalid password")
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


STAGES: dict[str, StageChecker] = {
    DUMMY: _check_dummy,
    PASSWORD: _check_password,
    REGISTRATION_TOKEN: _check_registration_token,
}


def request_key(request: web.Request) -> str:
    """What a session is bound to: the method and the route without its version prefix."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    path = resource.canonical if resource is not None else request.path
    return f"{request.method} {_VERSION_PREFIX.sub('', path)}"


async def require(
    request: web.Request,
    requester: Requester | None,
    body: dict,
    flows: list[list[str]],
    params: dict | None = None,
) -> dict:
    """Returns the merged stage results once a flow completes; otherwise raises UIARequired."""
    hs = get_hs(request)
    store = hs.accounts.uia_sessions
    params = params or {}
    auth = body.get("auth")
    if auth is not None and not isinstance(auth, dict):
        raise bad_json("'auth' must be an object")
    auth = auth or {}
    key = request_key(request)
    user_id = requester.user_id if requester else None

    session = None
    session_id = auth.get("session")
    if session_id is not None:
        if not isinstance(session_id, str):
            raise bad_json("'session' must be a string")
        session = await store.get(session_id, SESSION_MAX_AGE_MS)
        if session is None:
            raise MatrixError(400, "M_UNKNOWN", "Unknown or expired UIA session")
        if session["request_key"] != key or session["user_id"] != user_id:
            raise MatrixError(
                403, "M_FORBIDDEN", "The UIA session belongs to a different request or user"
            )

    async def open_session():
        await store.delete_expired(SESSION_MAX_AGE_MS)
        new_id = secrets.token_urlsafe(24)
        await store.create(new_id, key, user_id)
        return {"session_id": new_id, "completed": [], "results": {}}

    stage = auth.get("type")
    if stage is None:
        session = session or await open_session()
        raise UIARequired(session["session_id"], flows, params, session["completed"])

    if session is None:
        session = await open_session()
    sid = session["session_id"]
    allowed = {s for flow in flows for s in flow}
    checker = STAGES.get(stage) if stage in allowed else None
    if checker is None:
        raise UIARequired(
            sid,
            flows,
            params,
            session["completed"],
            "M_UNRECOGNIZED",
            f"Stage {stage!r} not offered",
        )
    try:
        result = await checker(request, requester, auth)
    except StageFailed as failed:
        raise UIARequired(
            sid, flows, params, session["completed"], failed.errcode, failed.error
        ) from None

    completed = await store.complete_stage(sid, stage, result)
    if not any(set(flow) <= set(completed) for flow in flows):
        raise UIARequired(sid, flows, params, completed)
    # One completed flow authorises one request: the session is spent.
    await store.delete(sid)
    return {**session["results"], **result}
