-- The media repository: metadata here, bytes in the configured storage backend.

-- Media uploaded to this server. A row with uploaded_ts NULL is a reservation made by
-- POST /_matrix/media/v1/create whose bytes have not arrived yet.
CREATE TABLE local_media (
    media_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    media_type TEXT,
    media_length BIGINT,
    upload_name TEXT,
    sha256 TEXT,
    created_ts BIGINT NOT NULL,
    uploaded_ts BIGINT,
    expires_ts BIGINT,
    last_access_ts BIGINT,
    quarantined_by TEXT,
    safe_from_quarantine BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX local_media_by_user ON local_media (user_id, created_ts);
CREATE INDEX local_media_pending ON local_media (user_id) WHERE uploaded_ts IS NULL;

-- Media fetched from other servers over federation and cached here.
CREATE TABLE remote_media (
    origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    media_type TEXT NOT NULL,
    media_length BIGINT NOT NULL,
    upload_name TEXT,
    created_ts BIGINT NOT NULL,
    last_access_ts BIGINT,
    quarantined_by TEXT,
    PRIMARY KEY (origin, media_id)
);

-- Thumbnails of local (origin = our server name) and remote media. (req_width,
-- req_height, method, animated) is what was asked for; width/height what was made.
CREATE TABLE media_thumbnails (
    origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    req_width INTEGER NOT NULL,
    req_height INTEGER NOT NULL,
    method TEXT NOT NULL,
    animated BOOLEAN NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    media_type TEXT NOT NULL,
    length BIGINT NOT NULL,
    storage_key TEXT NOT NULL,
    PRIMARY KEY (origin, media_id, req_width, req_height, method, animated)
);
