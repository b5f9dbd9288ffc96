-- The outbound transaction queue: what we owe each destination, oldest first.
-- PDUs are queued by event ID (the event is read when the transaction is built); EDUs
-- that must survive a restart (device lists, signing keys, to-device) carry their
-- content. Rows are deleted when the destination answers 200 to the transaction that
-- carried them. txn_id is set when a transaction is built, so that after a failure the
-- very same transaction (same ID, same contents) is retried: the receiver's
-- idempotency per (origin, txnId) then makes a lost answer harmless.
CREATE TABLE federation_outbound_queue (
    id BIGSERIAL PRIMARY KEY,
    destination TEXT NOT NULL,
    event_id TEXT,                     -- a PDU
    edu_type TEXT,                     -- else an EDU
    edu_content TEXT,
    txn_id TEXT,
    queued_ts BIGINT NOT NULL,
    CHECK ((event_id IS NULL) <> (edu_type IS NULL))
);
CREATE INDEX federation_outbound_queue_dest ON federation_outbound_queue (destination, id);

-- Per-destination delivery state: exponential backoff after failures, and a lease so
-- that only one process at a time sends to a destination.
CREATE TABLE federation_destinations (
    destination TEXT PRIMARY KEY,
    failures INTEGER NOT NULL DEFAULT 0,
    retry_at_ts BIGINT NOT NULL DEFAULT 0,
    last_success_ts BIGINT,
    lease_owner TEXT,
    lease_until_ts BIGINT NOT NULL DEFAULT 0
);

-- Inbound /send: the answer we gave to each (origin, txnId), returned again for a retry.
CREATE TABLE federation_inbound_txns (
    origin TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    response_json TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
CREATE INDEX federation_inbound_txns_ts ON federation_inbound_txns (received_ts);

-- Inbound m.direct_to_device message IDs already delivered (idempotency per origin).
CREATE TABLE federation_inbound_to_device (
    origin TEXT NOT NULL,
    message_id TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, message_id)
);
CREATE INDEX federation_inbound_to_device_ts ON federation_inbound_to_device (received_ts);
