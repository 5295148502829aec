#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what is missing, then lint, types, and
# every test layer (unit, pair, config corpus, real-server checks, netns, interop with
# keepalived, kernel IPVS in a throw-away VM). Extra arguments go to pytest.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash scripts/bootstrap.sh test
echo "== ruff"
.venv/bin/ruff check src tests bench
echo "== mypy --strict"
.venv/bin/mypy src/lvsd
echo "== pytest"
exec .venv/bin/pytest -p no:cacheprovider -rfEs --durations=25 "$@"
