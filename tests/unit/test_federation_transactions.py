"""Pure parts of transactions and EDUs: body checks, the origin rule, receipts."""

from __future__ import annotations

import pytest

from federation.edus import speaks_only_for
from federation.edus.ephemeral import _parse_receipt, _receipt_users
from federation.transactions import parse_transaction
from homeserver.http.errors import MatrixError

ORIGIN = "hs2.example"


def errcode(content) -> tuple[int, str]:
    with pytest.raises(MatrixError) as err:
        parse_transaction(ORIGIN, "t1", content)
    return err.value.status, err.value.errcode


def test_transaction_bodies():
    edu = {"edu_type": "m.typing", "content": {}}
    assert parse_transaction(ORIGIN, "t1", {"origin": ORIGIN, "pdus": []}) == ([], [])
    assert parse_transaction(ORIGIN, "t1", {"pdus": [{}], "edus": [edu]}) == ([{}], [edu])
    assert errcode(None) == (400, "M_NOT_JSON")
    assert errcode([]) == (400, "M_NOT_JSON")
    assert errcode({"pdus": [{}] * 51}) == (400, "M_BAD_JSON")
    assert errcode({"edus": [edu] * 101}) == (400, "M_BAD_JSON")
    assert errcode({"pdus": "x"}) == (400, "M_BAD_JSON")
    assert errcode({"edus": [{"edu_type": 3, "content": {}}]}) == (400, "M_BAD_JSON")
    assert errcode({"edus": [{"edu_type": "m.typing", "content": []}]}) == (400, "M_BAD_JSON")
    assert errcode({"origin": "elsewhere", "pdus": []}) == (403, "M_FORBIDDEN")
    # At the limits exactly.
    pdus, edus = parse_transaction(ORIGIN, "t1", {"pdus": [{}] * 50, "edus": [edu] * 100})
    assert (len(pdus), len(edus)) == (50, 100)


def test_an_edu_may_only_speak_for_its_origins_users():
    def typing(c):
        return [c["user_id"]]

    ours = {"!r:x": {"m.read": {f"@a:{ORIGIN}": {}, f"@b:{ORIGIN}": {}}}}
    mixed = {"!r:x": {"m.read": {f"@a:{ORIGIN}": {}, "@c:hs3.example": {}}}}
    assert speaks_only_for(ORIGIN, _receipt_users, ours)
    assert not speaks_only_for(ORIGIN, _receipt_users, mixed)
    assert not speaks_only_for(ORIGIN, _receipt_users, {"!r:x": "not an object"})
    assert not speaks_only_for(ORIGIN, typing, {"user_id": 5})
    # A user on the origin's host but another port is another server.
    assert not speaks_only_for(ORIGIN, typing, {"user_id": f"@a:{ORIGIN}:8448"})
    assert speaks_only_for(ORIGIN, None, {"anything": 1})


def test_receipts():
    assert _parse_receipt({"event_ids": ["$e"], "data": {"ts": 1}}) == ("$e", None)
    assert _parse_receipt({"event_ids": ["$e"], "data": {"thread_id": "main"}}) == ("$e", "main")
    assert _parse_receipt({"event_ids": ["$e"], "data": {"thread_id": "bad"}}) == (None, None)
    assert _parse_receipt({"event_ids": []}) == (None, None)
    assert _parse_receipt("x") == (None, None)
