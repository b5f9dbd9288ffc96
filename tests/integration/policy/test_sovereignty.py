"""Sovereignty switches: presence modes, the URL-preview domain allow-list, discovery
documents without external services, config validation naming the key, and
`homeserver audit-sovereignty` (destinations, plaintext scan, exit code)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from nio import JoinResponse, RoomCreateResponse, RoomPreset, SyncResponse

from homeserver.config import ConfigError, parse_config
from tests.federation_ca import start_federating_server
from tests.integration.media.test_media_preview import PREVIEW, Site
from tests.integration.server.test_operator_cli import _cli, _config


async def _presence(server, client) -> dict:
    status, body = await server.request(
        "GET",
        f"/_matrix/client/v3/presence/{quote(client.user_id)}/status",
        token=client.access_token,
    )
    assert status == 200, body
    return body


async def test_presence_modes(make_server):
    local = await make_server()
    assert local.hs.presence.mode == "local"
    alice = await local.client("alice")
    await alice.set_presence("unavailable", "busy")
    assert (await _presence(local, alice))["presence"] == "unavailable"

    off = await make_server(presence={"mode": "off"})
    bob = await off.client("bob")
    await bob.set_presence("unavailable", "busy")
    body = await _presence(off, bob)
    assert body["presence"] == "offline" and "status_msg" not in body


async def test_url_preview_domain_allow_list(make_server):
    server = await make_server(
        media={"url_preview_enabled": True, "url_preview_allowed_networks": ["127.0.0.1/32"]},
        url_previews={"allowed_domains": ["localhost"]},
    )
    client = await server.client()
    async with Site() as site:
        status, body = await server.request(
            "GET",
            f"{PREVIEW}?url={quote(f'http://localhost:{site.port}/page', safe='')}",
            token=client.access_token,
        )
        assert status == 200 and body["og:title"] == "Sovereign news", body
        hits = dict(site.hits)
        status, body = await server.request(
            "GET",
            f"{PREVIEW}?url={quote(site.url('/page'), safe='')}",
            token=client.access_token,
        )
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body
        assert dict(site.hits) == hits


async def test_discovery_names_no_external_service(server):
    status, body = await server.request("GET", "/.well-known/matrix/client")
    assert status == 200 and body == {
        "m.homeserver": {"base_url": server.hs.config.base_url.rstrip("/")}
    }
    status, body = await server.request("GET", "/_matrix/client/versions")
    assert status == 200 and set(body) == {"versions", "unstable_features"}
    assert "identity" not in str(body) and "http" not in str(body)


@pytest.mark.parametrize(
    "section, key",
    [
        ({"presence": {"mode": "everywhere"}}, "presence.mode"),
        ({"access_rules": {"enabled": "yes"}}, "access_rules.enabled"),
        ({"access_rules": {"external_servers": ["not a server"]}}, "access_rules.external_servers"),
        ({"url_previews": {"allowed_domains": ["http://x"]}}, "url_previews.allowed_domains"),
        ({"external_users": {"default_validity_s": -1}}, "external_users.default_validity_s"),
    ],
)
def test_config_errors_name_the_key(tmp_path, section, key):
    raw = {
        "server_name": "t.local",
        "data_dir": str(tmp_path),
        "listeners": {"client": "127.0.0.1:8008"},
    }
    with pytest.raises(ConfigError) as e:
        parse_config({**raw, **section}, tmp_path)
    assert str(e.value).startswith(key), str(e.value)
    defaults = parse_config(raw, tmp_path)
    assert not defaults.access_rules.enabled and defaults.presence.mode == "local"
    assert defaults.url_previews.allowed_domains is None and not defaults.media.url_preview_enabled


async def test_audit_sovereignty(make_server, tmp_path):
    server = await make_server(media={"url_preview_enabled": True})
    dsn = server.hs.config.database.dsn
    cfg = _config(
        tmp_path,
        server.server_name,
        dsn,
        federation={"allowed_servers": ["peer.gouv.example"]},
        url_previews={"allowed_domains": ["wiki.gouv.example"]},
        media={"url_preview_enabled": True},
        identity={"id_servers": ["id.gouv.example"]},
        push={"allowed_gateways": ["https://sygnal.gouv.example/"]},
    )
    alice = await server.client("alice")
    room = await alice.room_create(
        initial_state=[
            {
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }
        ]
    )
    assert isinstance(room, RoomCreateResponse), room
    await alice.room_send(
        room.room_id, "m.room.encrypted", {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "xyz"}
    )
    code, out, err = await _cli("audit-sovereignty", "-c", cfg)
    assert code == 0, (out, err)
    assert "federation: peer.gouv.example" in out
    assert "url previews: wiki.gouv.example" in out
    # Every destination the operator configured is named, none summarised away.
    assert "identity server: id.gouv.example" in out
    assert "identity servers: none" not in out
    assert "push gateway: https://sygnal.gouv.example/" in out
    assert "plaintext in encrypted rooms: none" in out

    # A client that sends a clear message into the encrypted room: found, never shown.
    status, _ = await server.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(room.room_id)}/send/m.room.message/t1",
        token=alice.access_token,
        json={"msgtype": "m.text", "body": "top secret words"},
    )
    assert status == 200
    code, out, err = await _cli("audit-sovereignty", "-c", cfg)
    assert code == 1, (out, err)
    assert f"{room.room_id} m.room.message 1" in out
    assert "top secret" not in out and "top secret" not in err
    assert Path(cfg).exists() and yaml.safe_load(Path(cfg).read_text())


async def test_local_presence_never_leaves_the_server(make_server, ca):
    """presence.mode local (the default): users see each other's presence on this server,
    but nothing of it goes over federation, in either direction."""
    hs1 = await start_federating_server(make_server, ca, "hs1.test.local", ["hs2.test.local"])
    hs2 = await start_federating_server(make_server, ca, "hs2.test.local", ["hs1.test.local"])
    alice, bob = await hs1.client("alice"), await hs2.client("bob")
    room = await alice.room_create(preset=RoomPreset.public_chat, alias="lobby")
    assert isinstance(room, RoomCreateResponse), room
    assert isinstance(await bob.join(f"#lobby:{hs1.server_name}"), JoinResponse)
    await alice.sync(timeout=0)

    await bob.set_presence("unavailable", "in a meeting")
    await alice.set_presence("online", "at my desk")
    # A message sent after the presence changes, as a barrier: once it has crossed, so
    # would a presence update queued before it.
    sent = await bob.room_send(room.room_id, "m.room.message", {"msgtype": "m.text", "body": "x"})
    seen_presence: list = []
    for _ in range(30):
        resp = await alice.sync(timeout=2000)
        assert isinstance(resp, SyncResponse), resp
        seen_presence += [e for e in resp.presence_events if e.user_id == bob.user_id]
        timeline = resp.rooms.join.get(room.room_id)
        if timeline and any(e.event_id == sent.event_id for e in timeline.timeline.events):
            break
    else:
        raise AssertionError("bob's message never reached hs1")
    assert seen_presence == []
    assert await hs1.hs.presence.store.get(bob.user_id) is None
    assert await hs2.hs.presence.store.get(alice.user_id) is None
    # Each server keeps its own users' presence.
    assert (await hs2.hs.presence.store.get(bob.user_id)) is not None
