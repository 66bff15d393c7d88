"""Helpers of tests/runtime/ (the fixtures are in conftest.py beside this file)."""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNTIMES_TOML = REPO / "infra" / "runtimes.toml"
BUILD_TIMEOUT = 900  # from scratch it takes 1-2 minutes here (docs/runtimes.md); pip downloads ~1 GB at most
# What the test process's environment must not hand to a runtime's processes: they import only
# what the runtime and the deployment give them.
_LOCAL_ONLY = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_HOME",
               "PYTHONSTARTUP", "PIP_REQUIRE_VIRTUALENV")


def runtimes_config() -> dict:
    with RUNTIMES_TOML.open("rb") as handle:
        return tomllib.load(handle)


def runtime_env(**extra: str) -> dict[str, str]:
    """The environment for a process of a runtime: the test's, less the local stack's Python settings."""
    env = {k: v for k, v in os.environ.items() if k not in _LOCAL_ONLY}
    env.update(extra)
    return env


def run(command: list, *, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """Run ``command``; on a non-zero exit fail the test with the tail of its output."""
    done = subprocess.run([str(c) for c in command], check=False, capture_output=True, text=True, timeout=timeout,
                          **kwargs)
    if done.returncode != 0:
        pytest.fail(f"exit {done.returncode}: {' '.join(map(str, command))}\n--- stdout\n{done.stdout[-6000:]}\n"
                    f"--- stderr\n{done.stderr[-6000:]}", pytrace=False)
    return done
