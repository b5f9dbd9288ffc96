"""The server's ed25519 signing key, stored in the format Synapse uses."""

from __future__ import annotations

import os
from pathlib import Path

from signedjson.key import (
    decode_signing_key_base64,
    encode_signing_key_base64,
    generate_signing_key,
    get_verify_key,
)

from homeserver.config import ConfigError


def new_signing_key_line(version: str = "a_0001") -> str:
    key = generate_signing_key(version)
    return f"{key.alg} {key.version} {encode_signing_key_base64(key)}\n"


def write_signing_key(path: Path, version: str = "a_0001") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 from the start: the key must never be world-readable, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(new_signing_key_line(version))


def load_signing_key(path: Path):
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError("signing_key_path", f"cannot read {path}: {e.strerror}") from None
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or parts[0] != "ed25519":
            raise ConfigError("signing_key_path", f"{path} is not an ed25519 signing key file")
        try:
            return decode_signing_key_base64(parts[0], parts[1], parts[2])
        except Exception:
            raise ConfigError("signing_key_path", f"{path} holds a malformed key") from None
    raise ConfigError("signing_key_path", f"{path} is empty")


def verify_key_id(signing_key) -> str:
    return f"{signing_key.alg}:{signing_key.version}"


__all__ = [
    "get_verify_key",
    "load_signing_key",
    "new_signing_key_line",
    "verify_key_id",
    "write_signing_key",
]
