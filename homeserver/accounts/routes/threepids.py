"""E-mail addresses (3PIDs): the /requestToken endpoints, the validation link,
/account/3pid (list, add, delete), and binding at identity servers (bind, unbind). The
logic is homeserver/accounts/threepids.py and identity_servers.py."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts import threepids, uia
from homeserver.accounts.threepids import EMAIL, canonical_email, secret_param
from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import invalid_param, missing_param
from homeserver.http.request import field, json_body, json_response
from homeserver.http.routes import RouteTable

routes = RouteTable()


async def _request_token(request: web.Request, purpose: str) -> web.Response:
    hs = get_hs(request)
    body = await json_body(request)
    response = await hs.accounts.threepids.request_token(purpose, body, request.remote or "")
    return json_response(response)


@routes.post("/register/email/requestToken", auth=False)
async def register_request_token(request: web.Request) -> web.Response:
    return await _request_token(request, threepids.REGISTER)


@routes.post("/account/3pid/email/requestToken", auth=False)
async def add_request_token(request: web.Request) -> web.Response:
    return await _request_token(request, threepids.ADD)


@routes.post("/account/password/email/requestToken", auth=False)
async def password_request_token(request: web.Request) -> web.Response:
    return await _request_token(request, threepids.PASSWORD)


_VALIDATED_PAGE = (
    "<!DOCTYPE html><html><head><meta charset='utf-8'><title>E-mail validated</title></head>"
    "<body><p>Your e-mail address has been validated. You may return to your Matrix"
    " client.</p></body></html>"
)


def _submit_token_route(kind: str):
    """The link in the mail (GET, from a browser: a page, or a redirect to the client's
    next_link) and the spec's submit_url (POST, JSON {sid, client_secret, token}), as
    Synapse serves them per kind of session."""
    path = threepids.SUBMIT_PREFIX.format(kind=kind)

    @routes.get(path, auth=False, raw_path=True)
    async def submit_by_link(request: web.Request) -> web.Response:
        next_link = await _submit(request, dict(request.query), kind)
        if next_link:
            # Returned, not raised: the middleware turns raised HTTP exceptions into errors.
            return web.Response(status=302, headers={"Location": next_link})
        return web.Response(text=_VALIDATED_PAGE, content_type="text/html")

    @routes.post(path, auth=False, raw_path=True)
    async def submit_by_client(request: web.Request) -> web.Response:
        await _submit(request, await json_body(request), kind)
        return json_response({"success": True})


async def _submit(request: web.Request, params: dict, kind: str) -> str | None:
    hs = get_hs(request)
    hs.accounts.threepids.require_enabled()
    sid = secret_param(params, "sid")
    client_secret = secret_param(params, "client_secret")
    token = field(params, "token", str)
    if not 0 < len(token) <= 255:
        raise invalid_param("'token' must be 1-255 characters")
    # Guessing tokens costs the guesser the same bucket as asking for them.
    hs.accounts.threepids.ip_limiter.check(request.remote or "")
    return await hs.accounts.threepids.submit_token(sid, client_secret, token, kind)


for _kind in threepids.SUBMIT_PATHS.values():
    _submit_token_route(_kind)


@routes.get("/account/3pid")
async def list_threepids(request: web.Request, requester: Requester) -> web.Response:
    rows = await get_hs(request).accounts.threepids.store.of_user(requester.user_id)
    return json_response(
        {
            "threepids": [
                {
                    "medium": r["medium"],
                    "address": r["address"],
                    "validated_at": r["validated_ts"],
                    "added_at": r["added_ts"],
                }
                for r in rows
            ]
        }
    )


@routes.post("/account/3pid/add")
async def add_threepid(request: web.Request, requester: Requester) -> web.Response:
    hs = get_hs(request)
    service = hs.accounts.threepids
    service.require_enabled()
    body = await json_body(request)
    client_secret = secret_param(body, "client_secret")
    sid = secret_param(body, "sid")
    # Checked before UIA (so a bad session costs no password round), and spent after.
    session = await service.validated_session(sid, client_secret, threepids.ADD)
    service.check_allowed(session["address"])
    await uia.require(request, requester, body, await uia.user_flows(request, requester))
    async with hs.db.acquire() as conn:
        async with conn.transaction():
            await service.spend(conn, sid)
            await service.bind(conn, requester.user_id, session["address"], session["validated_ts"])
    return json_response({})


@routes.post("/account/3pid/delete")
async def delete_threepid(request: web.Request, requester: Requester) -> web.Response:
    hs = get_hs(request)
    body = await json_body(request)
    medium = field(body, "medium", str)
    raw_address = field(body, "address", str)
    id_server = field(body, "id_server", str, None)
    if medium != EMAIL:
        raise invalid_param("Only 'email' addresses are bound on this server")
    if not raw_address:
        raise missing_param("Missing 'address'")
    address = canonical_email(raw_address)
    # As in Synapse, deleting an address the account does not have succeeds, changing nothing.
    await hs.accounts.threepids.store.unbind(requester.user_id, EMAIL, address)
    return await _unbound_at_id_servers(request, requester, EMAIL, address, id_server)


async def _unbound_at_id_servers(
    request: web.Request, requester: Requester, medium: str, address: str, id_server: str | None
) -> web.Response:
    unbound = await get_hs(request).accounts.identity_servers.unbind(
        requester.user_id, medium, address, id_server
    )
    return json_response({"id_server_unbind_result": "success" if unbound else "no-support"})


# Also under /unstable: the paths of their MSC (2290), which SyTest and older clients call.
_BIND_VERSIONS = ("r0", "v3", "unstable")


@routes.post("/account/3pid/bind", versions=_BIND_VERSIONS)
async def bind_at_id_server(request: web.Request, requester: Requester) -> web.Response:
    body = await json_body(request)
    id_server = field(body, "id_server", str)
    id_access_token = field(body, "id_access_token", str)
    sid = secret_param(body, "sid")
    client_secret = secret_param(body, "client_secret")
    await get_hs(request).accounts.identity_servers.bind(
        requester.user_id, id_server, id_access_token, sid, client_secret
    )
    return json_response({})


@routes.post("/account/3pid/unbind", versions=_BIND_VERSIONS)
async def unbind_at_id_server(request: web.Request, requester: Requester) -> web.Response:
    body = await json_body(request)
    medium = field(body, "medium", str)
    address = field(body, "address", str)
    id_server = field(body, "id_server", str, None)
    if medium == EMAIL:
        address = canonical_email(address)
    return await _unbound_at_id_servers(request, requester, medium, address, id_server)
