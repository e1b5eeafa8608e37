#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs pytest against the machine's
# PostgreSQL (127.0.0.1:5432), a real Chromium and real worker processes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install --test
# Two processes: most tests wait on worker processes and PostgreSQL, so two keep both cores busy.
exec .venv/bin/python -m pytest -q -ra --durations=15 -n 2 --dist loadgroup "$@"
