"""The local runners' subprocess streaming: the job log is readable while the job runs, and the
time limit holds even when the process keeps its output open."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from local_aws.common import stream

LOG = logging.getLogger("test")


def _eventually(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def _log_has(log_file: Path, text: str) -> bool:
    return log_file.exists() and text in log_file.read_text()


def test_the_log_file_shows_each_line_while_the_process_runs(tmp_path, monkeypatch):
    """The child prints one line (plain print: stdout is a pipe, so Python block-buffers it unless
    told not to) and then waits until the test has seen that line in the log file. With a
    buffered child or a buffered log file the line only lands at exit, and the test gives up."""
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    release = tmp_path / "release"
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(f"""
        import pathlib, time
        print("first line")
        deadline = time.monotonic() + 60
        while not pathlib.Path({str(release)!r}).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        print("released" if pathlib.Path({str(release)!r}).exists() else "gave up waiting")
    """))
    log_file = tmp_path / "logs" / "job.log"
    result: dict = {}

    def run() -> None:
        result["out"] = stream([sys.executable, str(script)], env=dict(os.environ), log=LOG, log_file=log_file)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    try:
        seen = _eventually(lambda: _log_has(log_file, "first line\n"), 20)
        still_running = runner.is_alive()
    finally:
        release.touch()
        runner.join(60)
    assert seen, f"the first line never reached {log_file} while the process ran: {log_file.read_text()!r}"
    assert still_running
    assert result["out"] == (0, ["first line", "released"])
    assert log_file.read_text() == "first line\nreleased\n"


def test_the_time_limit_kills_a_process_that_keeps_running(tmp_path):
    """The limit is enforced while the output is still open, not only after the process ends."""
    script = tmp_path / "hang.py"
    script.write_text("import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    log_file = tmp_path / "hang.log"
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        stream([sys.executable, str(script)], env=dict(os.environ), log=LOG, log_file=log_file, timeout=1.0)
    assert time.monotonic() - started < 30
    assert caught.value.output == "started"
    assert log_file.read_text() == "started\n"
