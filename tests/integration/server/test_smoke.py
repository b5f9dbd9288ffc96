async def test_versions(server):
    status, body = await server.request("GET", "/_matrix/client/versions")
    assert status == 200 and "v1.1" in body["versions"]
    status, body = await server.request("GET", "/_matrix/client/v3/nope")
    assert status == 404 and body["errcode"] == "M_UNRECOGNIZED"
