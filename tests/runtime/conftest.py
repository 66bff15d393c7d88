"""The AWS runtimes of infra/runtimes.toml as virtualenvs (scripts/runtime_venvs.py), for tests/runtime/.

The tests here run the repository's AWS-side scripts in subprocesses with the runtime venv's own
interpreter, never in the test process: the test process is the local stack (Python 3.12,
pandas 3, Spark 4), the venvs are what SageMaker, Glue and EMR run (docs/runtimes.md).

Building the venvs from scratch takes a minute or more (downloads, a pyspark source install per
Spark runtime). So that the other tests do not wait for it, the build starts in the background as
soon as collection shows that a selected test needs the venvs (``pytest_collection_finish``), at a
low CPU priority, and the ``runtime_venvs`` fixture waits for its result; with the venvs already
built it only checks their stamps (under a second). The build is stopped if the session ends first.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
from runtime_support import BUILD_TIMEOUT, REPO, run, runtime_env

# The build takes the CPU the tests leave idle (niceness 10), and has all of it while a test waits for it.
NICE = [nice, "-n", "10"] if (nice := shutil.which("nice")) else []


class _Build:
    """``scripts/runtime_venvs.py --json`` in a process of its own, with its own log."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="churn-runtime-venvs-"))
        self.log, self.out = self.folder / "build.log", self.folder / "build.json"
        self.started = time.monotonic()
        with self.log.open("wb") as log, self.out.open("wb") as out:
            self.proc = subprocess.Popen(
                [*NICE, sys.executable, str(REPO / "scripts" / "runtime_venvs.py"), "--json"], stdout=out,
                stderr=log, stdin=subprocess.DEVNULL, env=runtime_env(), cwd=REPO, start_new_session=True,
            )

    def result(self) -> dict:
        """What the build made (scripts/runtime_venvs.py --json); fails the test if it failed."""
        waiting = time.monotonic()
        try:
            code = self.proc.wait(timeout=max(1.0, BUILD_TIMEOUT - (waiting - self.started)))
        except subprocess.TimeoutExpired:
            self._kill()
            pytest.fail(f"scripts/runtime_venvs.py did not finish within {BUILD_TIMEOUT} s; its log: {self.log}\n"
                        f"{self._tail()}", pytrace=False)
        if code != 0:
            pytest.fail(f"building the runtime venvs failed (scripts/runtime_venvs.py --json, exit {code}); "
                        f"its log: {self.log}\n{self._tail()}", pytrace=False)
        # Which venvs were built and how long it took (shown with -s or on failure).
        sys.stderr.write(f"{self.log.read_text()}==> the build started at collection; the first test that needs it "
                         f"came {waiting - self.started:.0f} s later and waited {time.monotonic() - waiting:.0f} s\n")
        return json.loads(self.out.read_text())

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def _kill(self) -> None:
        """End the build if it still runs: pip and whatever it started (the build's process group)."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        """At the end of the session: a build still running is stopped (a venv it leaves half built has no
        stamp, so the next build starts it again); its log is kept only when it failed on its own."""
        interrupted = self.proc.poll() is None
        self._kill()
        if interrupted or self.proc.returncode == 0:
            shutil.rmtree(self.folder, ignore_errors=True)


_build: _Build | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the build when a selected test needs the venvs (not for --collect-only or a setup plan)."""
    global _build
    option = session.config.option
    if _build is not None or option.collectonly or getattr(option, "setupplan", False):
        return
    if any("runtime_venvs" in getattr(item, "fixturenames", ()) for item in session.items):
        _build = _Build()
        session.config.add_cleanup(_build.stop)


@pytest.fixture(scope="session")
def runtime_venvs() -> dict:
    """Every runtime venv, built or reused by scripts/runtime_venvs.py: name -> what it holds."""
    if _build is not None:
        return _build.result()
    # Not started at collection (e.g. the fixture requested some other way): build here and now.
    done = run([sys.executable, REPO / "scripts" / "runtime_venvs.py", "--json"], timeout=BUILD_TIMEOUT,
               env=runtime_env())
    sys.stderr.write(done.stderr)
    return json.loads(done.stdout)


@pytest.fixture(scope="session")
def deployed(tmp_path_factory) -> Path:
    """The code version of include/ exactly as the deployment uploads it: the folder of
    ``code/<version>/`` (jobs/, lib/churn.zip, sagemaker/sourcedir.tar.gz)."""
    from churn_ml import artifacts

    out = tmp_path_factory.mktemp("artifacts") / "artifacts"
    return artifacts.version_dir(out, artifacts.build(REPO / "include", out))


@pytest.fixture(scope="session")
def sourcedir(deployed, tmp_path_factory) -> Path:
    """code/<version>/sagemaker/sourcedir.tar.gz unpacked, as the framework container unpacks it into /opt/ml/code."""
    code = tmp_path_factory.mktemp("opt-ml-code")
    with tarfile.open(deployed / "sagemaker" / "sourcedir.tar.gz") as archive:
        archive.extractall(code, filter="data")
    return code
