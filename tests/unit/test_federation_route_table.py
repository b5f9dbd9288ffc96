"""The federation listener mounts only route tables that authenticate by default."""

from __future__ import annotations

import pytest

import federation.app
from federation.app import build_federation_app


def test_a_client_route_table_is_refused_on_the_federation_listener(monkeypatch):
    # homeserver.misc.routes is a client-API RouteTable, whose routes declare their own auth.
    monkeypatch.setattr(
        federation.app,
        "FEDERATION_ROUTE_MODULES",
        (*federation.app.FEDERATION_ROUTE_MODULES, "homeserver.misc.routes"),
    )
    with pytest.raises(TypeError, match="homeserver.misc.routes"):
        build_federation_app(object())
