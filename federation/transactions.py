"""Receiving transactions: PUT /_matrix/federation/v1/send/{txnId}.

Checks the body and its limits before anything is touched (bad input changes nothing),
answers a repeated (origin, txnId) with the answer stored the first time, and processes
one transaction per origin at a time, in arrival order: device-list updates and
to-device messages from one server keep their order. PDUs go to
`hs.federation.inbound.handle_pdus` (the inbound PDU pipeline) when it exists; EDUs to
`hs.federation.edus.dispatch`.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from federation.locks import KeyedLocks
from homeserver.http.errors import MatrixError, bad_json, forbidden
from homeserver.metrics import federation_transactions

if TYPE_CHECKING:
    from federation.service import Federation
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

MAX_PDUS = 50
MAX_EDUS = 100
MAX_TXN_ID_LENGTH = 255


def parse_transaction(origin: str, txn_id: str, content: Any) -> tuple[list[dict], list[dict]]:
    """(pdus, edus) of a well-formed transaction body; raises the Matrix error otherwise."""
    if content is None:
        raise MatrixError(400, "M_NOT_JSON", "Request body is empty; expected a JSON object")
    if not isinstance(content, dict):
        raise MatrixError(400, "M_NOT_JSON", "Request body must be a JSON object")
    if not txn_id or len(txn_id) > MAX_TXN_ID_LENGTH:
        raise bad_json("Invalid transaction ID")
    claimed = content.get("origin")
    if claimed is not None and claimed != origin:
        raise forbidden("The transaction's origin is not the server that signed the request")
    pdus = content.get("pdus", [])
    edus = content.get("edus", [])
    if not isinstance(pdus, list) or not isinstance(edus, list):
        raise bad_json("'pdus' and 'edus' must be lists")
    if len(pdus) > MAX_PDUS:
        raise bad_json(f"A transaction may carry at most {MAX_PDUS} PDUs")
    if len(edus) > MAX_EDUS:
        raise bad_json(f"A transaction may carry at most {MAX_EDUS} EDUs")
    if not all(isinstance(p, dict) for p in pdus):
        raise bad_json("Each PDU must be a JSON object")
    for edu in edus:
        if (
            not isinstance(edu, dict)
            or not isinstance(edu.get("edu_type"), str)
            or not isinstance(edu.get("content"), dict)
        ):
            raise bad_json("Each EDU must be an object with 'edu_type' and object 'content'")
    return pdus, edus


class TransactionReceiver:
    def __init__(self, hs: Homeserver, federation: Federation):
        self.hs = hs
        self.federation = federation
        self._origin_locks = KeyedLocks()

    async def receive(self, origin: str, txn_id: str, content: Any) -> dict:
        pdus, edus = parse_transaction(origin, txn_id, content)
        store = self.federation.sender.store
        # The origin is talking to us: whatever we queued for it can go now.
        await self.federation.sender.destination_is_back(origin)
        async with self._origin_locks.hold(origin):
            stored = await store.txn_response(origin, txn_id)
            if stored is not None:
                federation_transactions.labels("received", "repeat").inc()
                return orjson.loads(stored)
            # To-device first: a Megolm room key travels as a to-device message queued
            # before the events it decrypts, so a /sync must not show them before it.
            # The other EDUs (receipts, typing, device lists) may need the PDUs' joins.
            to_device = [e for e in edus if e["edu_type"] == "m.direct_to_device"]
            await self.federation.edus.dispatch(origin, to_device)
            response = {"pdus": await self._handle_pdus(origin, pdus)}
            await self.federation.edus.dispatch(
                origin, [e for e in edus if e["edu_type"] != "m.direct_to_device"]
            )
            await store.store_txn_response(
                origin, txn_id, orjson.dumps(response).decode(), int(time.time() * 1000)
            )
            federation_transactions.labels("received", "ok").inc()
            return response

    async def _handle_pdus(self, origin: str, pdus: list[dict]) -> dict[str, dict]:
        if not pdus:
            return {}
        return await self.federation.inbound.handle_pdus(origin, pdus)
