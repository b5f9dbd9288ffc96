"""The media repository (content repository).

What it owns (its handlers are in `routes/`): uploads (`POST /_matrix/media/v3/upload`,
async `v1/create` + `PUT`), authenticated downloads and thumbnails under
`/_matrix/client/v1/media/` (`routes/client.py`), URL previews (`preview.py`: guarded
fetches, og:image kept as server-owned media, a PostgreSQL cache), the legacy
`/_matrix/media/v3` download paths (frozen by default), what the federation media
endpoints serve (`federation_file`, `federation_thumbnail`; the routes and the remote
fetcher live in federation/: `routes/media.py`, `media_fetcher.py`), and the
operations the media admin API calls (its handlers are homeserver/admin/routes/media.py:
quarantine of one item or of a room's media (`room_media.py`), deletion, remote cache
purge, per-user usage).

How data flows: an upload is streamed in chunks to a scratch file under the store path
(never held whole in memory; the size limit is checked while streaming), then handed to
the storage backend (`backends.py`: local disk or S3-compatible object storage) under a
key built only from validated IDs; its metadata goes to PostgreSQL (`storage/media.py`).
Thumbnails are made with Pillow in a thread pool (`thumbnailer.py`), stored through the
same backend and recorded in the database, so every worker process can serve them.

Federation seam: `MediaRepository.remote_fetcher` (see `remote.py`) is the one place
where remote media enters; the composition root hands it in when federation is configured. Concurrent
requests for one remote file or one preview URL share one fetch (`singleflight.py`).
"""
