-- Core schema: accounts, rooms, events, state, streams.

-- One row per stream. A writer bumps `pos` inside its own transaction; the row lock it takes
-- is held until commit, so positions become visible strictly in order and a reader that sees
-- position N has every position below N committed already.
CREATE TABLE stream_positions (
    stream TEXT PRIMARY KEY,
    pos BIGINT NOT NULL
);
INSERT INTO stream_positions (stream, pos) VALUES
    ('events', 0), ('to_device', 0), ('device_lists', 0), ('receipts', 0),
    ('account_data', 0), ('typing', 0), ('presence', 0);

CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    password_hash TEXT,
    created_ts BIGINT NOT NULL,
    is_admin BOOLEAN NOT NULL DEFAULT FALSE,
    deactivated BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE profiles (
    user_id TEXT PRIMARY KEY,
    displayname TEXT,
    avatar_url TEXT
);

CREATE TABLE devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    created_ts BIGINT NOT NULL,
    last_seen_ts BIGINT,
    last_seen_ip TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- Only the SHA-256 of a token is stored: a database dump gives no usable credential.
CREATE TABLE access_tokens (
    token_hash BYTEA PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);

CREATE TABLE uia_sessions (
    session_id TEXT PRIMARY KEY,
    created_ts BIGINT NOT NULL,
    request_key TEXT NOT NULL,
    user_id TEXT,
    completed TEXT[] NOT NULL DEFAULT '{}',
    -- what completed stages established, e.g. the registration token used
    results JSONB NOT NULL DEFAULT '{}'
);

CREATE TABLE registration_tokens (
    token TEXT PRIMARY KEY,
    uses_allowed INTEGER,
    pending INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    expiry_time BIGINT
);

CREATE TABLE filters (
    filter_id BIGSERIAL PRIMARY KEY,
    user_id TEXT NOT NULL,
    filter_json TEXT NOT NULL
);

CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY,
    room_version TEXT NOT NULL,
    creator TEXT NOT NULL,
    is_public BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts BIGINT NOT NULL
);

-- Event JSON is kept as canonical text: jsonb would reorder keys and reject \u0000, and
-- signatures are made over exact bytes.
CREATE TABLE events (
    stream_ordering BIGINT PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT,
    sender TEXT NOT NULL,
    membership TEXT,
    depth BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    state_group_before BIGINT,
    state_group BIGINT,
    txn_device_id TEXT,
    txn_id TEXT,
    -- server-computed unsigned additions (prev_content, replaces_state, invite_room_state)
    unsigned_json TEXT,
    json TEXT NOT NULL
);
CREATE INDEX events_room_stream ON events (room_id, stream_ordering);
CREATE INDEX events_member_target ON events (state_key, stream_ordering)
    WHERE type = 'm.room.member';

CREATE TABLE event_txns (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

CREATE TABLE redactions (
    redacts TEXT PRIMARY KEY,
    redaction_id TEXT NOT NULL
);

CREATE TABLE room_forward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- State snapshots as bounded delta chains: a group stores only what changed since
-- prev_group, and every MAX_CHAIN groups a full snapshot resets the chain.
CREATE TABLE state_groups (
    id BIGINT PRIMARY KEY,
    room_id TEXT NOT NULL,
    prev_group BIGINT,
    chain_length INTEGER NOT NULL
);
CREATE SEQUENCE state_group_ids;

CREATE TABLE state_group_entries (
    state_group BIGINT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (state_group, type, state_key)
);

CREATE TABLE current_state (
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    membership TEXT,
    PRIMARY KEY (room_id, type, state_key)
);
CREATE INDEX current_state_user_rooms ON current_state (state_key, membership)
    WHERE type = 'm.room.member';

CREATE TABLE forgotten_rooms (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);

CREATE TABLE room_aliases (
    alias TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

-- room_id '' holds global account data.
CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_stream ON account_data (user_id, stream_pos);

-- thread_id '' is the unthreaded receipt.
CREATE TABLE receipts (
    room_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    stream_pos BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_room_stream ON receipts (room_id, stream_pos);

CREATE TABLE typing (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    expires_ts BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE TABLE typing_changes (
    room_id TEXT PRIMARY KEY,
    stream_pos BIGINT NOT NULL
);

CREATE TABLE presence (
    user_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    status_msg TEXT,
    last_active_ts BIGINT NOT NULL,
    stream_pos BIGINT NOT NULL
);
CREATE INDEX presence_stream ON presence (stream_pos);
