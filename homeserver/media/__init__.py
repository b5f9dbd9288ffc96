"""The media repository (content repository).

What it owns: uploads (`POST /_matrix/media/v3/upload`, async `v1/create` + `PUT`),
authenticated downloads and thumbnails under `/_matrix/client/v1/media/`, URL previews,
the frozen legacy `/_matrix/media/v3` download paths, and the Synapse-shaped admin API
for quarantine, deletion and per-user usage.

How data flows: an upload is streamed in chunks to a scratch file under the store path
(never held whole in memory; the size limit is checked while streaming), then handed to
the storage backend (`backends.py`: local disk or S3-compatible object storage) under a
key built only from validated IDs; its metadata goes to PostgreSQL (`storage/media.py`).
Thumbnails are made with Pillow in a thread pool (`thumbnailer.py`), stored through the
same backend and recorded in the database, so every worker process can serve them.

Federation seam: `MediaRepository.remote_fetcher` (see `remote.py`) is the one place
where remote media enters; it is None until the federation client provides one.
"""
