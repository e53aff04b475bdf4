#!/usr/bin/env bash
# The whole test suite: installs what it needs, then lint, types and tests.
# Extra arguments go to pytest (scripts/test.sh -k conformance).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== services"
source scripts/services.sh
trap stop_services EXIT
echo "== pytest"
.venv/bin/python -m pytest "$@"
