"""Which servers we federate with: the operator's allow-list, applied in both directions.

An entry is either an exact server name ("hs.example.org" or "hs.example.org:8448")
or a wildcard "*.example.gouv.fr" that admits every host strictly below that domain.
An entry without a port admits that host on any port. The empty list admits nobody.
"""

from __future__ import annotations

from homeserver.metrics import federation_refused


def split_server_name(server_name: str) -> tuple[str, int | None]:
    """("host", port or None); IPv6 literals keep their brackets."""
    if server_name.startswith("["):
        end = server_name.find("]")
        host, rest = server_name[: end + 1], server_name[end + 1 :]
    else:
        host, _, port_part = server_name.partition(":")
        rest = ":" + port_part if port_part else ""
    if rest.startswith(":") and rest[1:].isdigit():
        return host, int(rest[1:])
    return host, None


class ServerPolicy:
    def __init__(self, allowed_servers: tuple[str, ...]):
        self._exact: set[str] = set()
        self._suffixes: list[str] = []
        for entry in allowed_servers:
            entry = entry.lower()
            if entry.startswith("*."):
                self._suffixes.append(entry[1:])  # keeps the dot: ".example.gouv.fr"
            else:
                self._exact.add(entry)

    @property
    def federates(self) -> bool:
        return bool(self._exact or self._suffixes)

    def is_allowed(self, server_name: str) -> bool:
        name = server_name.lower()
        if name in self._exact:
            return True
        host, _port = split_server_name(name)
        if host in self._exact:
            return True
        return any(host.endswith(suffix) for suffix in self._suffixes)

    def check_inbound(self, origin: str) -> bool:
        """Like is_allowed, and counts a refusal in the metrics."""
        if self.is_allowed(origin):
            return True
        federation_refused.labels("inbound").inc()
        return False

    def check_outbound(self, destination: str) -> bool:
        if self.is_allowed(destination):
            return True
        federation_refused.labels("outbound").inc()
        return False
