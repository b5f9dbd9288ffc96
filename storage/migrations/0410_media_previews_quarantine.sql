-- URL preview cache, quarantine of remote media not cached yet, legacy-endpoint freeze.

-- Open Graph answers of /preview_url, so that the same URL is not fetched again while an
-- answer is fresh. bucket = fetch time divided by the cache lifetime: a client's `ts`
-- picks the answer of its period if still kept. image_media_id is the local copy of
-- og:image (local_media, owned by the server), deleted with the row.
CREATE TABLE media_url_previews (
    url TEXT NOT NULL,
    bucket BIGINT NOT NULL,
    og_json TEXT NOT NULL,
    image_media_id TEXT,
    fetched_ts BIGINT NOT NULL,
    expires_ts BIGINT NOT NULL,
    PRIMARY KEY (url, bucket)
);
CREATE INDEX media_url_previews_expiry ON media_url_previews (expires_ts);

-- Remote media an admin quarantined before this server ever fetched it (e.g. everything
-- referenced in a room): it is never fetched while listed here.
CREATE TABLE remote_media_quarantine (
    origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    quarantined_by TEXT NOT NULL,
    PRIMARY KEY (origin, media_id)
);

-- Spec v1.11 "freeze": media created (or remote media cached) while the unauthenticated
-- /_matrix/media/v3 download endpoints were open stays downloadable there after the
-- operator freezes them; media created while frozen is served only by the authenticated
-- endpoints. Rows from before this column existed are treated as created while frozen.
ALTER TABLE local_media ADD COLUMN legacy_access BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE remote_media ADD COLUMN legacy_access BOOLEAN NOT NULL DEFAULT FALSE;
