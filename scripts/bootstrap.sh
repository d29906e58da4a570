#!/usr/bin/env bash
# Create .venv (if missing or stale) and install Ladle with every extra and the dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.ladle-installed
if [ ! -x .venv/bin/python ] || [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] \
   || [ src/ladle/online/redis/_cluster_plan.c -nt "$stamp" ] || [ hatch_build.py -nt "$stamp" ]; then
  echo "bootstrap: installing Ladle and its dependencies into .venv (first run takes a minute or two)"
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -m pip install -q -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -c "import ladle, redis, psycopg, grpc, duckdb" 
  touch "$stamp"
fi
# Headless Chromium for the web UI's browser tests (tests/ui): Debian's package, never a browser download.
# Only when it is missing and apt can run; without it those tests skip loudly (and fail under CI=true).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "bootstrap: installing Debian's chromium for the UI browser tests"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
    || echo "bootstrap: could not install chromium; the UI browser tests will not run" >&2
fi
