#!/usr/bin/env bash
# The whole test suite: set up .venv, make sure Redis, PostgreSQL and MariaDB are up, lint, type-check, test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/services.sh
.venv/bin/ruff check src tests bench scripts feature_repo
.venv/bin/mypy
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
