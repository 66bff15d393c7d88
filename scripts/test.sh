#!/usr/bin/env bash
# The test command: installs what is missing (scripts/bootstrap.sh), then runs pytest.
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not e2e".
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
bash scripts/bootstrap.sh
# The tests set their own spot interruptions; the e2e runs of make run get env.sh's default again.
unset CHURN_LOCAL_SPOT_INTERRUPTIONS
# The UI check drives Debian's chromium through its chromedriver (tests/e2e/test_ui.py).
if [[ "$*" != *"not e2e"* ]] && { ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing chromium and chromium-driver (apt-get) for the UI check"
    { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
      || echo "note: could not install chromium and chromium-driver; the UI check will say so" >&2
  else
    echo "note: chromium and chromedriver are missing; the UI check needs them: apt-get install chromium chromium-driver" >&2
  fi
fi
# Lint first: a finding fails the command before any test runs (ruff check --fix repairs most).
echo "==> ruff check"
ruff check .
# Two workers (pytest-xdist): the end-to-end stack's tests in order on one, the other files on the other
# (tests/conftest.py, pytest_xdist_make_scheduler); CHURN_TEST_WORKERS=0 runs everything in this process, in order.
exec python -m pytest -n "${CHURN_TEST_WORKERS:-2}" "$@"
