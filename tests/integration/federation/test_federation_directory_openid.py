"""publicRooms over federation, and OpenID tokens: requested by a client, exchanged by a
third party at /openid/userinfo."""

from __future__ import annotations

import hashlib
import time

import aiohttp
import pytest
from nio import GetOpenIDTokenResponse
from yarl import URL

from federation.client import FederationError
from tests.schema import assert_matches_schema


async def test_public_rooms_for_an_admitted_server(pair):
    hs1, hs2 = pair
    alice = await hs1.client("alice")
    for name in ("Ministry lobby", "Budget talks", "Private"):
        visibility = "private" if name == "Private" else "public"
        resp = await alice.room_create(name=name, visibility=_visibility(visibility))
        assert resp.room_id
    client = hs2.hs.federation.client
    path = "/_matrix/federation/v1/publicRooms"
    listed = await client.get_json(hs1.server_name, path)
    assert_matches_schema("server-server/public_rooms.yaml", "/publicRooms", "get", 200, listed)
    assert sorted(r["name"] for r in listed["chunk"]) == ["Budget talks", "Ministry lobby"]
    page = await client.get_json(hs1.server_name, path, query={"limit": "1"})
    assert len(page["chunk"]) == 1 and page["next_batch"]
    found = await client.post_json(
        hs1.server_name, path, {"filter": {"generic_search_term": "lobby"}, "limit": 10}
    )
    assert_matches_schema("server-server/public_rooms.yaml", "/publicRooms", "post", 200, found)
    assert [r["name"] for r in found["chunk"]] == ["Ministry lobby"]
    with pytest.raises(FederationError) as err:
        await client.post_json(hs1.server_name, path, {"limit": "ten"})
    assert (err.value.status, err.value.errcode) == (400, "M_BAD_JSON")

    # A client of hs2 browses hs1's directory through its own server.
    bob = await hs2.client("bob")
    status, body = await hs2.request(
        "GET", f"/_matrix/client/v3/publicRooms?server={hs1.server_name}", token=bob.access_token
    )
    assert status == 200, body
    assert sorted(r["name"] for r in body["chunk"]) == ["Budget talks", "Ministry lobby"]
    status, body = await hs2.request(
        "POST",
        f"/_matrix/client/v3/publicRooms?server={hs1.server_name}",
        token=bob.access_token,
        json={"filter": {"generic_search_term": "budget"}},
    )
    assert status == 200, body
    assert [r["name"] for r in body["chunk"]] == ["Budget talks"]


def _visibility(value: str):
    from nio import RoomVisibility

    return RoomVisibility.public if value == "public" else RoomVisibility.private


async def userinfo(server, ca, token: str | None) -> tuple[int, dict]:
    """As a third-party service would call it: no X-Matrix signature."""
    import ssl

    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    query = "" if token is None else f"?access_token={token}"
    url = server.federation_url.rstrip("/") + "/_matrix/federation/v1/openid/userinfo" + query
    async with aiohttp.ClientSession() as http:
        async with http.get(
            URL(url, encoded=True), ssl=ctx, server_hostname=server.server_name.split(":")[0]
        ) as resp:
            return resp.status, await resp.json(content_type=None)


async def test_openid_token_exchange(pair, ca):
    hs1, _ = pair
    alice = await hs1.client("alice")
    resp = await alice.get_openid_token(alice.user_id)
    assert isinstance(resp, GetOpenIDTokenResponse), resp
    assert resp.matrix_server_name == hs1.server_name and resp.expires_in > 0
    assert await userinfo(hs1, ca, resp.access_token) == (200, {"sub": alice.user_id})
    # Only the hash is stored.
    stored = await hs1.db.fetch("SELECT token_hash FROM openid_tokens")
    assert [bytes(r["token_hash"]) for r in stored] == [
        hashlib.sha256(resp.access_token.encode()).digest()
    ]

    status, body = await userinfo(hs1, ca, "not-a-token")
    assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    status, body = await userinfo(hs1, ca, None)
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")
    # Served at the client listener too, where third parties may reach the server.
    path = "/_matrix/federation/v1/openid/userinfo"
    assert await hs1.request("GET", f"{path}?access_token={resp.access_token}") == (
        200,
        {"sub": alice.user_id},
    )
    status, body = await hs1.request("GET", f"{path}?access_token=an%2Finvalid%2Ftoken")
    assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    status, body = await hs1.request("GET", path)
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")
    # The token is not an access token for the client API.
    status, body = await hs1.request(
        "GET", "/_matrix/client/v3/account/whoami", token=resp.access_token
    )
    assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    # Expired tokens are refused.
    await hs1.db.execute("UPDATE openid_tokens SET expires_ts = $1", int(time.time() * 1000) - 1)
    status, body = await userinfo(hs1, ca, resp.access_token)
    assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    # Nobody gets a token in someone else's name.
    bob = await hs1.client("bob")
    status, body = await hs1.request(
        "POST",
        f"/_matrix/client/v3/user/{alice.user_id}/openid/request_token",
        token=bob.access_token,
        json={},
    )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
