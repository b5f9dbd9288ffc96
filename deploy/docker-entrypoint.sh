#!/bin/sh
# First start: write /data/homeserver.yaml and a signing key from the environment;
# later starts reuse them (edit /data/homeserver.yaml for anything else).
set -eu
CONFIG=/data/homeserver.yaml
if [ ! -f "$CONFIG" ]; then
    : "${SERVER_NAME:?set SERVER_NAME, the part after the colon in @user:SERVER_NAME}"
    : "${DATABASE_DSN:?set DATABASE_DSN}"
    homeserver generate-config --server-name "$SERVER_NAME" --data-dir /data \
        --listen 0.0.0.0:8008 --metrics-listen 0.0.0.0:9000 \
        --database-dsn "$DATABASE_DSN" --output "$CONFIG"
fi
exec homeserver run -c "$CONFIG"
