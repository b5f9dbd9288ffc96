"""A deleted device (logout, DELETE /devices with UIA) takes its sliding sync connections
with it: their rows go, and the old `pos` is unknown even to a new login that takes the
same device ID."""

from __future__ import annotations

from nio import DeleteDevicesAuthResponse, DeleteDevicesResponse, LoginResponse

from tests.harness import PASSWORD
from tests.integration.sliding_sync.helpers import Connection


async def _device_ids(server) -> list[str]:
    rows = await server.db.fetch("SELECT device_id FROM sliding_sync_connections ORDER BY id")
    return [r["device_id"] for r in rows]


async def test_a_deleted_device_takes_its_connections_with_it(server):
    alice = await server.client("alice")
    device_id = alice.device_id
    other = await server.login("alice")  # a second device, whose connection stays
    conn = Connection(server, alice.access_token)
    await conn.sync({"lists": {"all": {"ranges": [[0, 9]]}}})
    await Connection(server, other.access_token).sync({})
    assert await _device_ids(server) == [device_id, other.device_id]

    await alice.logout()
    assert await _device_ids(server) == [other.device_id]
    assert await server.db.fetchval("SELECT count(*) FROM sliding_sync_positions") == 1

    again = server.new_client("alice")
    again.device_id = device_id  # a new login taking the same device ID
    resp = await again.login(PASSWORD)
    assert isinstance(resp, LoginResponse) and resp.device_id == device_id, resp
    status, body = await Connection(server, again.access_token).raw({}, pos=conn.pos)
    assert (status, body["errcode"]) == (400, "M_UNKNOWN_POS")
    assert await _device_ids(server) == [other.device_id]

    # DELETE /devices (with UIA) from the other device drops the new connection too.
    await Connection(server, again.access_token).sync({})
    assert await _device_ids(server) == [other.device_id, device_id]
    first = await other.delete_devices([device_id])
    assert isinstance(first, DeleteDevicesAuthResponse), first
    auth = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "alice"},
        "password": PASSWORD,
        "session": first.session,
    }
    done = await other.delete_devices([device_id], auth)
    assert isinstance(done, DeleteDevicesResponse), done
    assert await _device_ids(server) == [other.device_id]
