"""The end-to-end tests' Airflow stack: started once by the README's run command, stopped after the
last test of this folder (package scope), so that it does not idle beside the tests that follow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from e2e.stack import REPO, stack_env
from support import free_port


def _env_sh(env: dict, command: str, timeout: float) -> subprocess.CompletedProcess:
    """``command`` with scripts/env.sh sourced: what a person does before using the airflow CLI."""
    return subprocess.run(["bash", "-c", f". scripts/env.sh && {command}"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="package")
def stack():
    # Not under pytest's 0700 temporary root: PostgreSQL runs as the user postgres when tests run as root.
    work = Path(tempfile.mkdtemp(prefix="churn-e2e-"))
    work.chmod(0o755)
    env = stack_env(work, free_port(), free_port(), free_port())
    started = time.monotonic()
    try:
        run = subprocess.run(["bash", str(REPO / "scripts/run_local.sh")], env=env, capture_output=True, text=True,
                             timeout=2400)
        assert run.returncode == 0, f"run_local.sh failed:\n{run.stdout[-5000:]}\n{run.stderr[-5000:]}"
        print(f"\nrun_local.sh through the scheduler: {time.monotonic() - started:.0f} s\n{run.stdout[-1500:]}")
        # The airflow CLI as a person runs it, with scripts/env.sh sourced (the stack's database and ports).
        shell = _env_sh(env, "env -0", 60)
        cli_env = dict(item.split("=", 1) for item in shell.stdout.split("\0") if "=" in item)

        def endpoint() -> dict:
            proc = subprocess.run([sys.executable, "-m", "local_aws.endpoints", "describe", "churn-xgboost"],
                                  env=cli_env, capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, proc.stderr
            return json.loads(proc.stdout)

        # "include": the copy of include/ the stack's jobs are built from (CHURN_INCLUDE_DIR, e2e/stack.py).
        yield {"lake": work / "lake" / "churn-lake", "first": run.stdout, "env": cli_env, "endpoint": endpoint,
               "work": work, "include": Path(env["CHURN_INCLUDE_DIR"])}
    finally:
        # The sessions the stack started (scheduler, dag-processor, triggerer, api-server): each must be
        # empty after stop, task processes included; and nothing may still name the test's folder.
        sessions = [int(p.read_text()) for p in (work / "airflow/stack-pids").glob("*.pid")]
        stop = _env_sh(env, "bash scripts/stack.sh stop", 300)
        print(stop.stdout, stop.stderr)
        leftover = subprocess.run(["pgrep", "-af", str(work)], capture_output=True, text=True).stdout
        leftover += "".join(subprocess.run(["pgrep", "-a", "-s", str(s)], capture_output=True, text=True).stdout
                            for s in sessions)
        if not leftover.strip():
            shutil.rmtree(work, ignore_errors=True)
        assert stop.returncode == 0, f"scripts/stack.sh stop failed:\n{stop.stdout}\n{stop.stderr}"
        assert sessions, "the stack left no pid files: was it started?"
        assert not leftover.strip(), f"processes left behind after scripts/stack.sh stop:\n{leftover}"
