"""Server description endpoints: well-known, capabilities, versions, VoIP, 3PN, auth issuer."""

from __future__ import annotations

import base64
import hashlib
import hmac

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS


async def test_well_known_points_at_base_url(server):
    status, body = await server.request("GET", "/.well-known/matrix/client")
    assert status == 200
    assert body["m.homeserver"]["base_url"] == server.hs.config.base_url.rstrip("/")


async def test_well_known_uses_public_baseurl(make_server):
    srv = await make_server(public_baseurl="https://matrix.example.org/")
    status, body = await srv.request("GET", "/.well-known/matrix/client")
    assert status == 200
    assert body == {"m.homeserver": {"base_url": "https://matrix.example.org"}}


async def test_capabilities(server):
    client = await server.client()
    status, body = await server.request(
        "GET", "/_matrix/client/v3/capabilities", token=client.access_token
    )
    assert status == 200
    caps = body["capabilities"]
    assert caps["m.change_password"] == {"enabled": True}
    assert caps["m.room_versions"]["default"] == server.hs.config.default_room_version
    assert set(caps["m.room_versions"]["available"]) == set(KNOWN_ROOM_VERSIONS)
    assert set(caps["m.room_versions"]["available"].values()) == {"stable"}
    assert caps["m.set_displayname"] == {"enabled": True}
    assert caps["m.set_avatar_url"] == {"enabled": True}
    assert caps["m.3pid_changes"] == {"enabled": False}


async def test_capabilities_needs_auth(server):
    status, body = await server.request("GET", "/_matrix/client/v3/capabilities")
    assert status == 401 and body["errcode"] == "M_MISSING_TOKEN"


async def test_versions_lists_stable_versions(server):
    status, body = await server.request("GET", "/_matrix/client/versions")
    assert status == 200
    assert {"v1.1", "v1.12"} <= set(body["versions"])
    assert isinstance(body["unstable_features"], dict)


async def test_versions_leads_element_to_cross_signing_set_up(server):
    # Element's postLoginSetup() offers cross-signing only when /versions names this
    # feature; its next request is the UIA probe of device_signing/upload, which must
    # answer 401 with flows (the rest of the flow: test_e2ee_backup_signing.py).
    status, body = await server.request("GET", "/_matrix/client/versions")
    assert status == 200 and body["unstable_features"]["org.matrix.e2e_cross_signing"] is True
    client = await server.client()
    status, body = await server.request(
        "POST",
        "/_matrix/client/unstable/keys/device_signing/upload",
        token=client.access_token,
        json={},
    )
    assert status == 401 and body["flows"] and body["session"]


async def test_turn_server_not_configured_is_404(server):
    client = await server.client()
    status, body = await server.request(
        "GET", "/_matrix/client/v3/voip/turnServer", token=client.access_token
    )
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"


async def test_turn_server_shared_secret_credentials(make_server):
    srv = await make_server(
        voip={
            "turn_uris": ["turn:turn.example.org:3478?transport=udp"],
            "turn_shared_secret": "s3cret",
        }
    )
    client = await srv.client()
    status, body = await srv.request(
        "GET", "/_matrix/client/v3/voip/turnServer", token=client.access_token
    )
    assert status == 200
    assert body["uris"] == ["turn:turn.example.org:3478?transport=udp"]
    assert body["ttl"] == 86400
    expiry, user_id = body["username"].split(":", 1)
    assert user_id == client.user_id and int(expiry) > 0
    expected = hmac.new(b"s3cret", body["username"].encode(), hashlib.sha1).digest()
    assert base64.b64decode(body["password"]) == expected


async def test_thirdparty_protocols_empty(server):
    client = await server.client()
    status, body = await server.request(
        "GET", "/_matrix/client/v3/thirdparty/protocols", token=client.access_token
    )
    assert status == 200 and body == {}


async def test_auth_issuer_unrecognized(server):
    status, body = await server.request(
        "GET", "/_matrix/client/unstable/org.matrix.msc2965/auth_issuer"
    )
    assert status == 404 and body["errcode"] == "M_UNRECOGNIZED"
