"""Binding addresses at an identity server through this server: only at the identity
servers the operator lists; unbound there when removed or when the account closes."""

from __future__ import annotations

from tests.integration.accounts.test_accounts_devices import _uia_session, password_auth
from tests.integration.identity_server import ID_TOKEN, IdentityServer

V3 = "/_matrix/client/v3"


async def _bind(server, client, ids: IdentityServer, sid: str) -> tuple[int, dict]:
    return await server.request(
        "POST",
        f"{V3}/account/3pid/bind",
        token=client.access_token,
        json={
            "id_server": ids.name,
            "id_access_token": ID_TOKEN,
            "sid": sid,
            "client_secret": "secret",
        },
    )


async def test_bind_unbind_and_deactivation_at_a_listed_identity_server(make_server, tmp_path):
    ids = IdentityServer(tmp_path)
    await ids.start()
    try:
        server = await make_server(
            identity={"id_servers": ["127.0.0.1"], "id_servers_insecure_tls": True}
        )
        alice = await server.client("alice")
        status, body = await _bind(server, alice, ids, "alice1")
        assert status == 200, body
        assert ids.bound == {"alice1@example.org": alice.user_id}

        # /unbind without naming the server: the one it was bound at through us, asked
        # with this server's X-Matrix signature.
        status, body = await server.request(
            "POST",
            f"{V3}/account/3pid/unbind",
            token=alice.access_token,
            json={"medium": "email", "address": "alice1@example.org"},
        )
        assert (status, body) == (200, {"id_server_unbind_result": "success"})
        assert ids.bound == {}
        [(unbind, authorization)] = ids.unbinds
        assert unbind == {
            "mxid": alice.user_id,
            "threepid": {"medium": "email", "address": "alice1@example.org"},
        }
        assert authorization.startswith(f'X-Matrix origin="{server.server_name}"')

        # Closing the account unbinds what is still bound.
        status, body = await _bind(server, alice, ids, "alice2")
        assert status == 200, body
        path = f"{V3}/account/deactivate"
        session = await _uia_session(server, alice, path, {})
        status, body = await server.request(
            "POST", path, token=alice.access_token, json={"auth": password_auth(alice, session)}
        )
        assert (status, body) == (200, {"id_server_unbind_result": "success"})
        assert ids.bound == {}
    finally:
        assert ids.runner is not None
        await ids.runner.cleanup()


async def test_identity_servers_not_listed_are_never_contacted(make_server, tmp_path):
    ids = IdentityServer(tmp_path)
    await ids.start()
    try:
        server = await make_server()  # the default: no identity server
        alice = await server.client("alice")
        status, body = await _bind(server, alice, ids, "alice1")
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
        status, body = await server.request(
            "POST",
            f"{V3}/account/3pid/delete",
            token=alice.access_token,
            json={"medium": "email", "address": "a@example.org", "id_server": ids.name},
        )
        assert (status, body) == (200, {"id_server_unbind_result": "no-support"})
        assert ids.bound == {} and ids.unbinds == []
    finally:
        assert ids.runner is not None
        await ids.runner.cleanup()
