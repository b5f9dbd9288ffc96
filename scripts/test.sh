#!/usr/bin/env bash
# Installs what the tests need into .venv and runs them.
# Uses the PostgreSQL on 127.0.0.1:5432 when one answers (HS_TEST_DSN may name another);
# otherwise the tests start an embedded PostgreSQL of their own.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real parts the deploy tests start or check: nginx (with its stream module) as the load
# balancer in front of two workers, promtool for the alert rules (Debian's packages).
missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || missing+=(libnginx-mod-stream)
command -v promtool >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
fi

python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e '.[test,speed]'

if [ -z "${HS_TEST_DSN:-}" ]; then
  if .venv/bin/python - <<'PY' 2>/dev/null
import asyncio, asyncpg
async def probe():
    conn = await asyncio.wait_for(asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres"), 3)
    await conn.close()
asyncio.run(probe())
PY
  then
    export HS_TEST_DSN="postgresql://postgres@127.0.0.1:5432/postgres"
  fi
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
