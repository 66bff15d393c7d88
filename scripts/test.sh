#!/usr/bin/env bash
# The test command: installs what is missing (scripts/bootstrap.sh), then runs pytest.
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not e2e".
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
bash scripts/bootstrap.sh
exec python -m pytest "$@"
