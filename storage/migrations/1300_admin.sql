-- The admin API (homeserver/admin): account flags, the audit log, reports, blocked rooms,
-- server-notice rooms, rate-limit overrides and the status of long admin tasks.

-- Synapse's per-account flags. shadow_banned, locked and suspended are set by the admin
-- API; user_type is Synapse's free-form account type (NULL for a regular user).
ALTER TABLE users
    ADD COLUMN shadow_banned BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN locked BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN suspended BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN user_type TEXT,
    ADD COLUMN erased BOOLEAN NOT NULL DEFAULT FALSE;

-- Every admin action: who did what to which target, when. `details` holds non-secret
-- parameters only (never passwords, tokens or message contents).
CREATE TABLE admin_audit_log (
    id BIGSERIAL PRIMARY KEY,
    ts BIGINT NOT NULL,
    admin_user_id TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX admin_audit_log_target ON admin_audit_log (target, id);

-- POST /rooms/{roomId}/report/{eventId}: what a user reported, for the admin API.
CREATE TABLE event_reports (
    id BIGSERIAL PRIMARY KEY,
    received_ts BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    reason TEXT,
    score INTEGER
);
CREATE INDEX event_reports_room ON event_reports (room_id, id);
CREATE INDEX event_reports_user ON event_reports (user_id, id);

CREATE TABLE room_reports (
    id BIGSERIAL PRIMARY KEY,
    received_ts BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    reason TEXT NOT NULL
);

CREATE TABLE user_reports (
    id BIGSERIAL PRIMARY KEY,
    received_ts BIGINT NOT NULL,
    target_user_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    reason TEXT NOT NULL
);

-- Rooms the admins closed: local users may not join them.
CREATE TABLE blocked_rooms (
    room_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    blocked_ts BIGINT NOT NULL
);

-- The one server-notices room of each user who was sent a notice.
CREATE TABLE server_notice_rooms (
    user_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL
);

CREATE TABLE ratelimit_overrides (
    user_id TEXT PRIMARY KEY,
    messages_per_second INTEGER NOT NULL,
    burst_count INTEGER NOT NULL
);

-- Room deletion and history purges run after the request answers; their status is here
-- (not in process memory) so that any process can answer the status request.
CREATE TABLE admin_tasks (
    task_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    room_id TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    result TEXT NOT NULL DEFAULT '{}',
    created_ts BIGINT NOT NULL
);
CREATE INDEX admin_tasks_room ON admin_tasks (room_id, created_ts);
