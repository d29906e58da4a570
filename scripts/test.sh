#!/usr/bin/env bash
# The whole test suite: set up .venv, make sure Redis, PostgreSQL and MariaDB are up, lint, type-check, test.
# With no arguments the tests run in three phases (tests/conftest.py marks which test goes where):
# everything not marked `serial` or `paired` on two xdist workers; the `paired` tests (the broker tests,
# which mostly wait) two at a time; then the `serial` tests (latency, timeout and fd-limit assertions,
# Ray) one at a time. With arguments, one plain pytest run of what they select.
# mypy's cache is kept in the user cache ($LADLE_CACHE_DIR, else $XDG_CACHE_HOME/ladle, else
# ~/.cache/ladle), as the Feast venv of the compatibility tests is (tests/feast_venv.py).
# Bytecode is written even where the environment says not to (PYTHONDONTWRITEBYTECODE): without
# it, every pytest process (each phase, each xdist worker) re-compiles and assertion-rewrites the
# ~470 test modules, ~13 s each time.
set -euo pipefail
cd "$(dirname "$0")/.."
unset PYTHONDONTWRITEBYTECODE
bash scripts/bootstrap.sh
bash scripts/services.sh
.venv/bin/ruff check src tests bench scripts feature_repo hatch_build.py
cache="${LADLE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ladle}"
mkdir -p "$cache"
MYPY_CACHE_DIR="$cache/mypy" .venv/bin/mypy
pytest=(.venv/bin/pytest -q -p no:cacheprovider)
if [ "$#" -gt 0 ]; then
  exec "${pytest[@]}" "$@"
fi
parallel=0
"${pytest[@]}" -n 2 -m "not serial and not paired" || parallel=$?
paired=0
"${pytest[@]}" -n 2 -m paired || paired=$?
serial=0
"${pytest[@]}" -m serial || serial=$?
echo "test.sh: parallel phase exit ${parallel}, paired phase exit ${paired}, serial phase exit ${serial}"
[ "$parallel" -eq 0 ] && [ "$paired" -eq 0 ] && [ "$serial" -eq 0 ]
