-- What we owe each application service, oldest first (a transactional outbox: rows are
-- written in the transaction that commits what they carry). kind 'event' names a room
-- event; 'ephemeral' and 'to_device' carry their JSON; 'keys' carries nothing and only
-- asks for a transaction with the MSC3202 key counts (a one-time key was claimed).
-- txn_id is set when a transaction is built, so that a failed one is retried with the
-- same ID and the same contents; rows go when the appservice answers 200.
CREATE TABLE appservice_queue (
    id BIGSERIAL PRIMARY KEY,
    as_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('event', 'ephemeral', 'to_device', 'keys')),
    event_id TEXT,
    content TEXT,
    txn_id BIGINT,
    queued_ts BIGINT NOT NULL
);
CREATE INDEX appservice_queue_as ON appservice_queue (as_id, id);

-- Per appservice: backoff after failures, the last transaction ID used (IDs only grow,
-- across restarts), a lease so that one process at a time sends, and how far the
-- device_lists stream has been reported (MSC3202).
CREATE TABLE appservice_state (
    as_id TEXT PRIMARY KEY,
    failures INTEGER NOT NULL DEFAULT 0,
    retry_at_ts BIGINT NOT NULL DEFAULT 0,
    last_txn_id BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until_ts BIGINT NOT NULL DEFAULT 0,
    device_list_pos BIGINT
);
