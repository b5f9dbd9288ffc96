"""The error of an outbound federation request, in a module of its own (no imports) so
that homeserver code which calls other servers can catch it without importing the client."""

from __future__ import annotations

from typing import Any


class FederationError(Exception):
    """A federation request that did not produce a successful answer.

    status is the remote HTTP status, or None when no answer came (refused by policy,
    unresolvable, unreachable, timed out)."""

    def __init__(self, message: str, status: int | None = None, body: Any = None):
        super().__init__(message)
        self.status = status
        self.body = body

    @property
    def errcode(self) -> str | None:
        return self.body.get("errcode") if isinstance(self.body, dict) else None
