#!/usr/bin/env bash
# Creates .venv (Python 3.12 preferred, 3.11 accepted), installs the pinned local requirements
# when they changed (and the infrastructure checkers into .venv-tools, the SageMaker SDK into .venv-sdk). The Airflow stack (PostgreSQL and
# the Airflow processes) is scripts/stack.sh's.
# Idempotent: a second run with nothing changed takes a few seconds.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

find_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  local cand
  for cand in python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 \
              python3.11 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.11*/bin/python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 12))' 2>/dev/null; then
      command -v "$cand"; return
    fi
  done
  echo "error: no Python 3.12 or 3.11 found. Install one (e.g. 'pyenv install 3.12') or set PYTHON=/path/to/python3.12." >&2
  exit 1
}

pinned_env() {  # pinned_env VENV REQUIREMENTS LOCK: create VENV, install REQUIREMENTS under LOCK when either changed
  local venv=$1 requirements=$2 lock=$3 py stamp want
  if [ ! -x "$venv/bin/python" ]; then
    py=$(find_python)
    echo "==> creating $venv with $py ($("$py" --version))"
    "$py" -m venv "$venv"
  fi
  stamp=$venv/.requirements.sha256
  want=$(cat "$requirements" "$lock" | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "==> installing $requirements (pinned by $lock)"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -r "$requirements" -c "$lock"
    echo "$want" > "$stamp"
  fi
}

pinned_env .venv requirements-local.txt constraints-local.txt
# The infrastructure checkers (cfn-lint, checkov, check-jsonschema) in their own environment.
pinned_env .venv-tools infra/requirements-tools.txt infra/constraints-tools.txt
# The SageMaker Python SDK, a client of the local target in the tests (tests/local_aws/test_sagemaker_sdk.py),
# in its own environment too: its pins conflict with Airflow's.
pinned_env .venv-sdk requirements-sdk.txt constraints-sdk.txt

mkdir -p "$AIRFLOW_HOME" "$LAKE_ROOT"
