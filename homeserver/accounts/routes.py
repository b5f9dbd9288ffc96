"""Accounts: registration, login, devices, passwords, profiles, account data, filters."""

from __future__ import annotations

from homeserver.http.routes import RouteTable

routes = RouteTable()
