"""Devices with nio (list, rename, delete behind m.login.password UIA), password change and
deactivation."""

from nio import (
    DeleteDevicesAuthResponse,
    DeleteDevicesResponse,
    DevicesResponse,
    LoginResponse,
    RoomCreateResponse,
    UpdateDeviceResponse,
    WhoamiResponse,
)

from tests.harness import PASSWORD
from tests.schema import assert_matches_schema

V3 = "/_matrix/client/v3"


def password_auth(client, session, password=PASSWORD):
    return {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": client.user_id},
        "password": password,
        "session": session,
    }


async def test_list_and_rename_devices(server):
    phone = await server.client("alice")
    laptop = await server.login("alice")
    resp = await phone.devices()
    assert isinstance(resp, DevicesResponse)
    assert {d.id for d in resp.devices} == {phone.device_id, laptop.device_id}

    resp = await laptop.update_device(phone.device_id, {"display_name": "Phone"})
    assert isinstance(resp, UpdateDeviceResponse)
    status, body = await server.request(
        "GET", f"{V3}/devices/{phone.device_id}", token=laptop.access_token
    )
    assert status == 200 and body["display_name"] == "Phone"
    assert_matches_schema("device_management.yaml", "/devices/{deviceId}", "get", 200, body)
    await laptop.update_device(laptop.device_id, {"display_name": "Laptop"})
    status, body = await server.request("GET", f"{V3}/devices", token=laptop.access_token)
    assert_matches_schema("device_management.yaml", "/devices", "get", 200, body)

    status, body = await server.request(
        "PUT", f"{V3}/devices/NOSUCHDEV", token=laptop.access_token, json={"display_name": "x"}
    )
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    status, body = await server.request(
        "PUT",
        f"{V3}/devices/{phone.device_id}",
        token=laptop.access_token,
        json={"display_name": 7},
    )
    assert status == 400 and body["errcode"] == "M_BAD_JSON"
    # Another user's devices are invisible.
    other = await server.client("mallory")
    status, body = await server.request(
        "GET", f"{V3}/devices/{phone.device_id}", token=other.access_token
    )
    assert status == 404


async def test_delete_devices_with_uia(server):
    keep = await server.client("bob")
    gone = [await server.login("bob"), await server.login("bob")]
    ids = [c.device_id for c in gone]

    first = await keep.delete_devices(ids)
    assert isinstance(first, DeleteDevicesAuthResponse)
    assert first.flows == [{"stages": ["m.login.password"]}]

    wrong = await keep.delete_devices(ids, auth=password_auth(keep, first.session, "wrong pw!"))
    assert not isinstance(wrong, DeleteDevicesResponse)
    assert await server.db.fetchval("SELECT count(*) FROM devices") == 3

    done = await keep.delete_devices(ids, auth=password_auth(keep, first.session))
    assert isinstance(done, DeleteDevicesResponse), done
    remaining = await keep.devices()
    assert [d.id for d in remaining.devices] == [keep.device_id]
    for client in gone:
        assert not isinstance(await client.whoami(), WhoamiResponse)
    # The spent session cannot authorise another deletion.
    status, body = await server.request(
        "POST",
        f"{V3}/delete_devices",
        token=keep.access_token,
        json={"devices": [keep.device_id], "auth": password_auth(keep, first.session)},
    )
    assert status == 400 and await server.db.fetchval("SELECT count(*) FROM devices") == 1


async def test_delete_single_device_and_bad_input(server):
    alice = await server.client("carol")
    other = await server.login("carol")
    path = f"{V3}/devices/{other.device_id}"
    status, body = await server.request("DELETE", path, token=alice.access_token)
    assert status == 401
    assert_matches_schema("device_management.yaml", "/devices/{deviceId}", "delete", 401, body)
    # Someone else's valid password (a stolen token used with the thief's own password)
    # is refused outright: 403, not a stage to retry (SyTest, as Synapse).
    eve = await server.client("eve")
    status, body = await server.request(
        "DELETE",
        path,
        token=alice.access_token,
        json={"auth": {**password_auth(eve, body["session"])}},
    )
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    assert await server.db.fetchval(
        "SELECT count(*) FROM devices WHERE device_id = $1", other.device_id
    )
    status, body = await server.request(
        "POST", f"{V3}/delete_devices", token=alice.access_token, json={"devices": "all"}
    )
    assert status == 400 and body["errcode"] == "M_BAD_JSON"
    status, body = await server.request(
        "POST", f"{V3}/delete_devices", token=alice.access_token, data=b"nope"
    )
    assert status == 400 and body["errcode"] == "M_NOT_JSON"
    assert (
        await server.db.fetchval("SELECT count(*) FROM devices WHERE user_id = $1", alice.user_id)
        == 2
    )

    status, body = await server.request("DELETE", path, token=alice.access_token, json={})
    status, body = await server.request(
        "DELETE",
        path,
        token=alice.access_token,
        json={"auth": password_auth(alice, body["session"])},
    )
    assert status == 200
    assert not isinstance(await other.whoami(), WhoamiResponse)


async def _uia_session(server, client, path, body):
    status, challenge = await server.request("POST", path, token=client.access_token, json=body)
    assert status == 401, challenge
    return challenge["session"]


async def test_change_password(server):
    main = await server.client("dave")
    other = await server.login("dave")
    path = f"{V3}/account/password"
    new = "a brand new passphrase"

    status, body = await server.request(
        "POST", path, token=main.access_token, json={"new_password": "short"}
    )
    assert status == 400 and body["errcode"] == "M_WEAK_PASSWORD"
    session = await _uia_session(server, main, path, {"new_password": new})
    status, body = await server.request(
        "POST",
        path,
        token=main.access_token,
        json={"new_password": new, "auth": password_auth(main, session)},
    )
    assert status == 200, body
    # The current device stays, every other one is logged out.
    assert isinstance(await main.whoami(), WhoamiResponse)
    assert not isinstance(await other.whoami(), WhoamiResponse)
    assert not isinstance(await server.new_client("dave").login(PASSWORD), LoginResponse)
    assert isinstance(await server.new_client("dave").login(new), LoginResponse)


async def test_change_password_keeping_devices(server):
    main = await server.client("erin")
    other = await server.login("erin")
    path = f"{V3}/account/password"
    body = {"new_password": "another passphrase", "logout_devices": False}
    session = await _uia_session(server, main, path, body)
    status, _ = await server.request(
        "POST", path, token=main.access_token, json={**body, "auth": password_auth(main, session)}
    )
    assert status == 200
    assert isinstance(await other.whoami(), WhoamiResponse)


async def test_deactivate(server):
    user = await server.client("frank")
    room = await user.room_create()
    assert isinstance(room, RoomCreateResponse)
    path = f"{V3}/account/deactivate"
    session = await _uia_session(server, user, path, {})
    status, body = await server.request(
        "POST",
        path,
        token=user.access_token,
        json={"auth": password_auth(user, session, "bad pw!!")},
    )
    assert status == 401 and body["errcode"] == "M_FORBIDDEN"
    assert not await server.db.fetchval("SELECT deactivated FROM users")

    status, body = await server.request(
        "POST", path, token=user.access_token, json={"auth": password_auth(user, session)}
    )
    assert status == 200 and body == {"id_server_unbind_result": "no-support"}
    assert_matches_schema("account_deactivation.yaml", "/account/deactivate", "post", 200, body)
    assert not isinstance(await user.whoami(), WhoamiResponse)
    assert await server.db.fetchval("SELECT count(*) FROM devices") == 0
    # The account left its rooms on the way out.
    membership = await server.db.fetchval(
        "SELECT membership FROM current_state WHERE room_id = $1 AND type = 'm.room.member'"
        " AND state_key = $2",
        room.room_id,
        user.user_id,
    )
    assert membership == "leave"
    status, body = await server.request(
        "POST",
        f"{V3}/login",
        json={"type": "m.login.password", "user": "frank", "password": PASSWORD},
    )
    assert status == 403 and body["errcode"] == "M_USER_DEACTIVATED"
    status, body = await server.request(
        "POST",
        f"{V3}/register",
        json={"username": "frank", "password": PASSWORD, "auth": {"type": "m.login.dummy"}},
    )
    assert status == 400 and body["errcode"] == "M_USER_IN_USE"


async def test_threepids_are_empty(server):
    client = await server.client()
    status, body = await server.request("GET", f"{V3}/account/3pid", token=client.access_token)
    assert status == 200 and body == {"threepids": []}
    assert_matches_schema("administrative_contact.yaml", "/account/3pid", "get", 200, body)


async def test_uia_session_is_bound_to_the_operation(server):
    """A session begun to delete one device cannot delete another (SyTest)."""
    alice = await server.client("dora")
    first = await server.login("dora")
    second = await server.login("dora")
    status, body = await server.request(
        "DELETE", f"{V3}/devices/{first.device_id}", token=alice.access_token, json={}
    )
    assert status == 401
    status, body = await server.request(
        "DELETE",
        f"{V3}/devices/{second.device_id}",
        token=alice.access_token,
        json={"auth": password_auth(alice, body["session"])},
    )
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    assert await server.db.fetchval(
        "SELECT count(*) FROM devices WHERE device_id = $1", second.device_id
    )


async def test_login_and_rename_move_the_device_list(server):
    """Members sharing a room see the user in device_lists.changed after a new login or a
    rename; the user sees their own change too."""
    alice = await server.client("erin")
    bob = await server.client("finn")
    room_id = (await alice.room_create(invite=[bob.user_id])).room_id
    await bob.join(room_id)
    await alice.sync(timeout=0)
    await bob.sync(timeout=0)

    await server.login("erin")
    sync = await bob.sync(timeout=5_000, since=bob.next_batch)
    assert alice.user_id in sync.device_list.changed
    sync = await alice.sync(timeout=5_000, since=alice.next_batch)
    assert alice.user_id in sync.device_list.changed

    status, _ = await server.request(
        "PUT",
        f"{V3}/devices/{alice.device_id}",
        token=alice.access_token,
        json={"display_name": "renamed"},
    )
    assert status == 200
    sync = await bob.sync(timeout=5_000, since=bob.next_batch)
    assert alice.user_id in sync.device_list.changed


async def test_password_change_removes_pushers_of_other_sessions(server):
    main = await server.client("gina")
    other = await server.login("gina")
    pusher = {
        "kind": "http",
        "app_id": "sytest",
        "app_display_name": "a",
        "device_display_name": "d",
        "lang": "en",
        "data": {"url": "https://push.example/_matrix/push/v1/notify"},
    }
    for client, key in ((main, "mine"), (other, "theirs")):
        status, _ = await server.request(
            "POST", f"{V3}/pushers/set", token=client.access_token, json={**pusher, "pushkey": key}
        )
        assert status == 200
    path = f"{V3}/account/password"
    body = {"new_password": "another long passphrase", "logout_devices": False}
    session = await _uia_session(server, main, path, body)
    status, _ = await server.request(
        "POST", path, token=main.access_token, json={**body, "auth": password_auth(main, session)}
    )
    assert status == 200
    status, body = await server.request("GET", f"{V3}/pushers", token=main.access_token)
    assert [p["pushkey"] for p in body["pushers"]] == ["mine"]
