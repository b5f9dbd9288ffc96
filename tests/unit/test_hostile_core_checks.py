"""The checks at the boundary (issue 17): int64 bounds on tokens and IDs, canonical JSON
of events (local and received), U+0000 in the values stored in their own columns."""

from __future__ import annotations

import socket

import asyncpg
import orjson
import pytest

from federation.events.validation import InvalidPdu, parse_pdu
from homeserver.events.storable import canonical_json_problem, nul_column_problem
from homeserver.http.errors import MatrixError
from homeserver.http.request import parse_int64
from homeserver.tokens import decode_pagination_token, decode_sync_token
from storage.availability import is_unavailable
from tests.unit.test_federation_validation import make_event


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("-1", -1),
        (str(2**63 - 1), 2**63 - 1),
        (str(-(2**63)), -(2**63)),
        (str(2**63), None),
        (str(-(2**63) - 1), None),
        ("99999999999999999999", None),
        ("", None),
        (" 1", None),
        ("+1", None),
        ("1_000", None),
        ("\u0661", None),  # ARABIC-INDIC DIGIT ONE: int() takes it
        ("\u00b2", None),  # SUPERSCRIPT TWO: isdigit() says yes, int() fails
    ],
)
def test_parse_int64(text, value):
    assert parse_int64(text) == value


@pytest.mark.parametrize(
    "token",
    [
        "t" + str(2**63),
        "t-" + str(2**63 + 1),
        "s" + str(2**63),
        "s1_2_-3",
        "t\u0661",
        "s" + "1_" * 20,
    ],
)
def test_tokens_beyond_int64_or_negative_are_invalid_params(token):
    with pytest.raises(MatrixError) as caught:
        decode_pagination_token(token)
    assert (caught.value.status, caught.value.errcode) == (400, "M_INVALID_PARAM")


def test_tokens_within_bounds():
    assert decode_sync_token(f"s{2**63 - 1}_0")["events"] == 2**63 - 1
    # Backfilled history is ordered below zero.
    assert decode_pagination_token(f"t-{2**63}") == -(2**63)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ({"a": [2**53 - 1, -(2**53 - 1)]}, True),
        ({"a": {"b": [2**53]}}, False),
        ({"a": 1.0}, False),
        ({"a": True, "b": None, "c": "1.5"}, True),
        (orjson.loads(b'{"n": 18446744073709551616}'), False),  # orjson: a float
    ],
)
def test_canonical_json_problem(value, ok):
    assert (canonical_json_problem(value) is None) is ok


def test_canonical_json_check_survives_deep_nesting():
    deep: list = [1.5]
    for _ in range(5000):
        deep = [deep]
    assert canonical_json_problem(deep) is not None


def test_nul_in_column_values():
    assert nul_column_problem({"type": "m.room\0message"}) == "type contains U+0000"
    assert nul_column_problem({"content": {"membership": "jo\0in"}}) is not None
    assert nul_column_problem({"type": "m.room.message", "content": {"body": "\0"}}) is None


@pytest.mark.parametrize("version", ["6", "10", "11", "12"])
def test_received_pdu_with_2_64_is_refused_from_v6(version):
    """A remote server's PDU as the transaction parser reads it: orjson turns 2**64 into
    a float; from v6 on that makes the PDU invalid."""
    raw = orjson.dumps(make_event(version)).replace(b'"hello"', b'"hello","n":18446744073709551616')
    with pytest.raises(InvalidPdu):
        parse_pdu(orjson.loads(raw), version)


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (asyncpg.exceptions._base.DataError("invalid input for query argument $1"), False),
        (asyncpg.CharacterNotInRepertoireError("invalid byte sequence"), False),
        (asyncpg.CheckViolationError("check"), False),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), False),
        (asyncpg.ConnectionDoesNotExistError("closed"), True),
        (asyncpg.CannotConnectNowError("starting up"), True),
        (asyncpg.AdminShutdownError("terminating"), True),
        (asyncpg.TooManyConnectionsError("too many"), True),
        (asyncpg.DiskFullError("could not extend file"), True),
        (ConnectionRefusedError(), False),  # not asyncpg's: a file's or another peer's
    ],
)
def test_which_batch_failures_are_retried_event_by_event(error, unavailable):
    """A failure of the database itself fails the batch at once (and answers 503); any
    other is retried event by event, to find the event it is about."""
    assert is_unavailable(error) is unavailable


async def test_a_refused_database_connection_counts_as_unavailable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(OSError) as raised:
        await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", timeout=5)
    assert is_unavailable(raised.value)


def test_sync_tokens_are_remembered_but_each_caller_gets_its_own_dict():
    longest = "s" + "_".join([str(2**63 - 1)] * 7)
    first, second = decode_sync_token(longest), decode_sync_token(longest)
    assert first == second and first is not second
    first["events"] = 0
    assert decode_sync_token(longest)["events"] == 2**63 - 1
    # Longer than any token of ours: refused before it is remembered.
    with pytest.raises(MatrixError) as caught:
        decode_sync_token(longest + "0" * 10_000)
    assert caught.value.errcode == "M_INVALID_PARAM"
