#!/usr/bin/env bash
# The whole test suite on a fresh machine: set up, lint and type-check, then run pytest with
# the sandbox integration tests (plain `pytest` runs only the fast lane).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check heatgen tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest -m "" "$@"  # every lane: unit, sandbox, pool
