"""Two JSON encoders: canonical JSON where bytes are hashed or signed, orjson elsewhere."""

from __future__ import annotations

from typing import Any

import orjson
from canonicaljson import encode_canonical_json


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def dumps_str(value: Any) -> str:
    return orjson.dumps(value).decode()


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def canonical(value: Any) -> bytes:
    return encode_canonical_json(value)


def canonical_str(value: Any) -> str:
    return encode_canonical_json(value).decode()
