#!/usr/bin/env bash
# The whole test suite: set up .venv, make sure Redis, PostgreSQL and MariaDB are up, lint, type-check, test.
# With no arguments the tests run in two phases: everything not marked `serial` on two xdist workers,
# then the `serial` tests (latency, timeout and fd-limit assertions, brokers, Ray) one at a time
# (tests/conftest.py says which). With arguments, one plain pytest run of what they select.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/services.sh
.venv/bin/ruff check src tests bench scripts feature_repo
.venv/bin/mypy
pytest=(.venv/bin/pytest -q -p no:cacheprovider)
if [ "$#" -gt 0 ]; then
  exec "${pytest[@]}" "$@"
fi
parallel=0
"${pytest[@]}" -n 2 -m "not serial" || parallel=$?
serial=0
"${pytest[@]}" -m serial || serial=$?
echo "test.sh: parallel phase exit ${parallel}, serial phase exit ${serial}"
[ "$parallel" -eq 0 ] && [ "$serial" -eq 0 ]
