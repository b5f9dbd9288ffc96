"""Headers on every media response: what the browser may do with bytes users uploaded.

Content-Disposition is `inline` only for the types the spec lists as safe to render
(content_repo.md, "Serving inline content"); everything else is an attachment, so an
uploaded HTML or SVG file can never run script in the client's origin.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from homeserver.http.middleware import CORS_HEADERS

INLINE_SAFE_TYPES = frozenset(
    {
        "text/css",
        "text/plain",
        "text/csv",
        "application/json",
        "application/ld+json",
        "image/jpeg",
        "image/gif",
        "image/png",
        "image/apng",
        "image/webp",
        "image/avif",
        "video/mp4",
        "video/webm",
        "video/ogg",
        "video/quicktime",
        "audio/mp4",
        "audio/webm",
        "audio/aac",
        "audio/mpeg",
        "audio/ogg",
        "audio/wave",
        "audio/wav",
        "audio/x-wav",
        "audio/x-pn-wav",
        "audio/flac",
        "audio/x-flac",
    }
)

# The policy the spec recommends for served content.
CONTENT_SECURITY_POLICY = (
    "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf;"
    " style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"
)

# type/subtype with optional parameters; no whitespace tricks, no CR/LF.
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
    r"(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=(\"[^\"\r\n]*\"|[A-Za-z0-9!#$&^_.+-]+))*"
)
# Characters that can go into a quoted filename="..." without escaping trouble.
_PLAIN_FILENAME = re.compile(r"[\x20-\x7e]+")


def valid_filename(name: str) -> bool:
    """A file name we will store and echo in Content-Disposition: short, no control
    characters (so no header injection)."""
    return 0 < len(name) <= 255 and not any(ord(c) < 0x20 or c == "\x7f" for c in name)


def clean_media_type(value: str | None) -> str:
    """The uploader's Content-Type if well-formed, else application/octet-stream. ASCII
    only: aiohttp reads header bytes that are not UTF-8 as lone surrogates, which
    PostgreSQL cannot store."""
    if value and len(value) <= 255 and value.isascii() and _MEDIA_TYPE.fullmatch(value.strip()):
        return value.strip()
    return "application/octet-stream"


def _base_type(media_type: str) -> str:
    return media_type.split(";", 1)[0].strip().lower()


def is_inline_safe(media_type: str) -> bool:
    return _base_type(media_type) in INLINE_SAFE_TYPES


def content_disposition(media_type: str, filename: str | None, force_inline=False) -> str:
    disposition = "inline" if force_inline or is_inline_safe(media_type) else "attachment"
    if not filename:
        return disposition
    if _PLAIN_FILENAME.fullmatch(filename):
        # RFC 6266 / RFC 9110 quoted-string: escape backslash and double quote.
        escaped = filename.replace("\\", "\\\\").replace('"', '\\"')
        return f'{disposition}; filename="{escaped}"'
    # Non-ASCII names use the RFC 8187 extended form; every unsafe byte percent-encoded.
    return f"{disposition}; filename*=utf-8''{quote(filename, safe='')}"


def media_headers(media_type: str, disposition: str, length: int | None) -> dict[str, str]:
    headers = {
        **CORS_HEADERS,
        "Content-Type": media_type,
        "Content-Disposition": disposition,
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "cross-origin",
        # Media never changes under its ID; private because the endpoints need a token.
        "Cache-Control": "private, max-age=86400, immutable",
    }
    if length is not None:
        headers["Content-Length"] = str(length)
    return headers
