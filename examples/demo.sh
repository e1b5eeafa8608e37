#!/usr/bin/env bash
# The demo: installs tuner into ./.venv and runs search_spaces/quick.yaml end to end on the
# embedded default (no database server needed), then prints the best trial.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install
.venv/bin/tuner launch search_spaces/quick.yaml
.venv/bin/tuner best search_spaces/quick.yaml
echo "Next: .venv/bin/tuner report search_spaces/quick.yaml --out report.html"
