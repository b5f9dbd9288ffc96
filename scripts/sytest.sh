#!/bin/bash
# Run SyTest (matrix-org/sytest) against this homeserver, natively (no Docker).
#
#   scripts/sytest.sh [OUTPREFIX] [run-tests.pl args / test files...]
#
# OUTPREFIX defaults to $ANCHORS/sytest/results/run-<UTC time>; writes OUTPREFIX.tap,
# OUTPREFIX.log and prints the per-group table (tests/sytest/tap-summary.py).
# Test files after OUTPREFIX run a subset, e.g. tests/30rooms/01state.pl.
#
# Needs: SyTest's source checked out at $SYTEST_SRC (default $ANCHORS/sytest/src, ANCHORS
# default ~/anchors), its Perl dependencies (tests/sytest/README.md), PostgreSQL
# ($SYTEST_PG_DSN) and the project venv ($PROJECT_PYTHON, default ./.venv/bin/python).
# Env: ROOM_VERSION (10), PORTS (48200:48399), WORK (server dirs: homeserver.log/.yaml),
#      BLACKLIST, TIMEOUT_FACTOR, SYTEST_HS_LOG_LEVEL.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export ANCHORS=${ANCHORS:-$HOME/anchors}
OUT=${1:-$ANCHORS/sytest/results/run-$(date -u +%Y%m%dT%H%M%S)}
[ $# -gt 0 ] && shift
case "$OUT" in /*) ;; *) OUT=$PWD/$OUT ;; esac
PY=${PROJECT_PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || { echo "no python at $PY (make the venv or set PROJECT_PYTHON)" >&2; exit 2; }
[ -d "${SYTEST_SRC:-$ANCHORS/sytest/src}" ] || {
    echo "no SyTest checkout at ${SYTEST_SRC:-$ANCHORS/sytest/src}" >&2; exit 2; }
export HS_COMMAND="$PY $ROOT/tests/sytest/project-external-adapter.py"
export WORK=${WORK:-$ANCHORS/sytest/work-project}
mkdir -p "$(dirname "$OUT")"
"$ROOT/tests/sytest/run-sytest-external.sh" "$OUT" --client-http \
    --room-version "${ROOM_VERSION:-10}" "$@"
rc=$?
python3 "$ROOT/tests/sytest/tap-summary.py" "$OUT"
echo "results: $OUT.tap $OUT.log; servers: $WORK"
exit $rc
