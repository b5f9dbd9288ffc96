"""mxc:// URIs found in event content: only well-formed ones are taken (never raises)."""

from __future__ import annotations

import pytest

from homeserver.media.ids import parse_mxc
from homeserver.media.room_media import media_in_event


@pytest.mark.parametrize(
    "uri",
    [
        "mxc://127.0.0.1/../../etc/passwd",
        "mxc://server/a/b",
        "mxc://server/",
        "mxc://../abc",
        "mxc://ser ver/abc",
        "https://server/abc",
        None,
        42,
        {"url": "mxc://server/abc"},
    ],
)
def test_malformed_uris_are_ignored(uri):
    assert parse_mxc(uri) is None


def test_well_formed_uris():
    assert parse_mxc("mxc://example.org:8448/abc_DEF-1") == ("example.org:8448", "abc_DEF-1")
    assert parse_mxc("mxc://[::1]/x") == ("[::1]", "x")


def test_media_in_event_reads_only_the_fields_that_name_media():
    event = {
        "type": "m.room.message",
        "content": {
            "body": "mxc://a.example/inBody",
            "url": "mxc://a.example/url",
            "info": {"thumbnail_url": "mxc://a.example/thumb", "thumbnail_file": "bad"},
            "file": {"url": "mxc://a.example/file"},
            "m.new_content": {"info": {"thumbnail_file": {"url": "mxc://b.example/t"}}},
        },
    }
    assert list(media_in_event(event)) == [
        ("a.example", "url"),
        ("a.example", "thumb"),
        ("a.example", "file"),
        ("b.example", "t"),
    ]
    assert list(media_in_event({"type": "m.room.member", "content": {"url": "mxc://a/b"}})) == []
    assert list(media_in_event({"type": "m.room.avatar", "content": "not a dict"})) == []
