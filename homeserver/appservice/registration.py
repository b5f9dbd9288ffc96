"""Application service registration files: parsed and checked at start-up.

Each file is the YAML a bridge generates (spec: "Registration"). Every problem is a
ConfigError naming the file and the key, so that the operator gets one line to act on.
The checks across files: unique `id`, `as_token` and `hs_token` (the tokens identify an
appservice, and an hs_token shared by two would let one impersonate the server to the
other), and exclusive namespaces that overlap (two owners of one user ID).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from homeserver.config import ConfigError

NAMESPACE_KINDS = ("users", "aliases", "rooms")
# Characters that end a regex's literal prefix.
_REGEX_META = set(".^$*+?{}[]\\|()")


@dataclass(frozen=True)
class Namespace:
    regex: re.Pattern[str]
    exclusive: bool


@dataclass(frozen=True)
class AppService:
    id: str
    url: str | None
    as_token: str
    hs_token: str
    sender: str  # the full user ID of sender_localpart
    users: tuple[Namespace, ...]
    aliases: tuple[Namespace, ...]
    rooms: tuple[Namespace, ...]
    rate_limited: bool
    protocols: tuple[str, ...]
    receive_ephemeral: bool  # MSC2409 / spec v1.13: typing, receipts, presence
    receive_to_device: bool  # MSC4203: to-device messages for its users
    msc3202: bool  # device masquerading, OTK counts, fallback keys, device lists
    msc4190: bool  # device management by PUT/DELETE /devices without UIA
    source: str  # the file, for messages

    def __repr__(self) -> str:  # never the tokens
        return f"AppService({self.id!r})"

    @property
    def as_token_hash(self) -> bytes:
        return hashlib.sha256(self.as_token.encode()).digest()

    def is_user(self, user_id: str, *, exclusive_only: bool = False) -> bool:
        """Whether the user is ours: the sender, or in a users namespace."""
        if user_id == self.sender:
            return True
        return _matches(self.users, user_id, exclusive_only)

    def is_alias(self, alias: str, *, exclusive_only: bool = False) -> bool:
        return _matches(self.aliases, alias, exclusive_only)

    def is_room(self, room_id: str) -> bool:
        return _matches(self.rooms, room_id, False)


def _matches(namespaces: Iterable[Namespace], value: str, exclusive_only: bool) -> bool:
    return any(ns.regex.fullmatch(value) for ns in namespaces if ns.exclusive or not exclusive_only)


def _flag(data: dict, key: str, where: str, *names: str) -> bool:
    """A boolean under any of its names (the stable one and the MSC's unstable ones)."""
    for name in (key, *names):
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, bool):
            raise ConfigError(f"{where}.{name}", "must be true or false")
        if value:
            return True
    return False


def _string(data: dict, key: str, where: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{where}.{key}", "is required")
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key}", "must be a non-empty string")
    return value


def _namespaces(data: Any, where: str) -> tuple[Namespace, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ConfigError(where, "must be a list")
    result = []
    for i, entry in enumerate(data):
        key = f"{where}[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(key, "must be a mapping with regex and exclusive")
        regex = entry.get("regex")
        if not isinstance(regex, str) or not regex:
            raise ConfigError(f"{key}.regex", "is required (a non-empty string)")
        try:
            compiled = re.compile(regex)
        except re.error as e:
            raise ConfigError(f"{key}.regex", f"is not a valid regular expression: {e}") from None
        exclusive = entry.get("exclusive")
        if not isinstance(exclusive, bool):
            raise ConfigError(f"{key}.exclusive", "is required (true or false)")
        result.append(Namespace(compiled, exclusive))
    return tuple(result)


def parse_registration(data: Any, source: str, server_name: str) -> AppService:
    where = source
    if not isinstance(data, dict):
        raise ConfigError(where, "must be a mapping")
    as_id = _string(data, "id", where)
    assert as_id is not None
    url = data.get("url")
    if url is not None and (not isinstance(url, str) or not re.match(r"^https?://", url)):
        raise ConfigError(f"{where}.url", "must be an http(s) URL or null")
    if "url" not in data:
        raise ConfigError(f"{where}.url", "is required (null for no traffic)")
    as_token = _string(data, "as_token", where)
    hs_token = _string(data, "hs_token", where)
    localpart = _string(data, "sender_localpart", where)
    assert as_token is not None and hs_token is not None and localpart is not None
    if ":" in localpart or localpart.startswith("@"):
        raise ConfigError(f"{where}.sender_localpart", "must be a localpart, not a user ID")
    ns = data.get("namespaces")
    if not isinstance(ns, dict):
        raise ConfigError(f"{where}.namespaces", "is required (a mapping)")
    kinds = {k: _namespaces(ns.get(k), f"{where}.namespaces.{k}") for k in NAMESPACE_KINDS}
    rate_limited = data.get("rate_limited", True)
    if not isinstance(rate_limited, bool):
        raise ConfigError(f"{where}.rate_limited", "must be true or false")
    protocols = data.get("protocols") or []
    if not isinstance(protocols, list) or not all(isinstance(p, str) for p in protocols):
        raise ConfigError(f"{where}.protocols", "must be a list of strings")
    receive_ephemeral = _flag(
        data, "receive_ephemeral", where, "de.sorunome.msc2409.push_ephemeral", "push_ephemeral"
    )
    return AppService(
        id=as_id,
        url=url.rstrip("/") if url else None,
        as_token=as_token,
        hs_token=hs_token,
        sender=f"@{localpart}:{server_name}",
        users=kinds["users"],
        aliases=kinds["aliases"],
        rooms=kinds["rooms"],
        rate_limited=rate_limited,
        protocols=tuple(protocols),
        receive_ephemeral=receive_ephemeral,
        # Bridges that set up encryption ask for to-device with either MSC flag.
        receive_to_device=_flag(data, "org.matrix.msc4203", where, "de.sorunome.msc2409.to_device")
        or _flag(data, "org.matrix.msc3202", where),
        msc3202=_flag(data, "org.matrix.msc3202", where),
        msc4190=_flag(data, "io.element.msc4190", where),
        source=source,
    )


def load_registrations(paths: Sequence[Path], server_name: str) -> tuple[AppService, ...]:
    """Reads and checks every registration file; raises ConfigError on the first problem."""
    services = []
    for i, path in enumerate(paths):
        where = f"app_services[{i}] ({path.name})"
        try:
            text = path.read_text()
        except OSError as e:
            raise ConfigError(where, f"cannot read {path}: {e.strerror}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(where, f"is not valid YAML{line}") from None
        services.append(parse_registration(data, where, server_name))
    check_unique(services)
    return tuple(services)


def check_unique(services: Sequence[AppService]) -> None:
    for attr in ("id", "as_token", "hs_token"):
        seen: dict[str, AppService] = {}
        for svc in services:
            value = getattr(svc, attr)
            if value in seen:
                raise ConfigError(f"{svc.source}.{attr}", f"is the same as in {seen[value].source}")
            seen[value] = svc
    for kind in ("users", "aliases", "rooms"):
        for i, a in enumerate(services):
            for b in services[i + 1 :]:
                for na in getattr(a, kind):
                    for nb in getattr(b, kind):
                        if na.exclusive and nb.exclusive and _overlap(na.regex, nb.regex):
                            raise ConfigError(
                                f"{b.source}.namespaces.{kind}",
                                f"exclusive regex {nb.regex.pattern!r} overlaps"
                                f" {na.regex.pattern!r} of {a.source}",
                            )
    for a in services:
        for b in services:
            if a is not b and b.is_user(a.sender, exclusive_only=True):
                raise ConfigError(
                    f"{a.source}.sender_localpart", f"is in an exclusive namespace of {b.source}"
                )


def _literal_prefix(pattern: str) -> str:
    pattern = pattern.removeprefix("^")
    out = []
    for ch in pattern:
        if ch in _REGEX_META:
            break
        out.append(ch)
    return "".join(out)


def _sample(pattern: str) -> str:
    """A string the usual namespace regex matches: wildcards filled in, escapes undone."""
    pattern = pattern.removeprefix("^").removesuffix("$")
    pattern = re.sub(r"\.[*+]\??", "x", pattern)
    return re.sub(r"\\(.)", r"\1", pattern)


def _overlap(a: re.Pattern[str], b: re.Pattern[str]) -> bool:
    """Whether two regexes can match one string. Undecidable in general: this tries the
    equal patterns, a string each pattern matches (its wildcards filled in), and strings
    built from each one's literal prefix, which catches the usual `@_irc_.*:example.org`
    against `@_irc_bridge_.*:example.org`."""
    if a.pattern == b.pattern:
        return True
    candidates = {_sample(a.pattern), _sample(b.pattern)}
    for prefix in (_literal_prefix(a.pattern), _literal_prefix(b.pattern)):
        for tail in ("", "a", "_a", "a:a", "_a:a", "1"):
            candidates.add(prefix + tail)
    return any(a.fullmatch(c) and b.fullmatch(c) for c in candidates)
