"""Whether a job's worker still runs (local_aws.jobs): the same process, across a jump of the boot time.

The kernel's ``btime`` (psutil's boot time, whole seconds recomputed from the clock) moved by one second
between two readings during a CI run, so a running Glue job read as FAILED ("the local worker exited
without finishing the job") while its worker ran on. The worker is the same process as long as its
start differs by less than ``SAME_START_SECONDS`` from the recorded one."""

from __future__ import annotations

import subprocess
import sys

import psutil

from local_aws import jobs


def test_a_one_second_jump_of_the_boot_time_is_still_the_same_process(monkeypatch, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        recorded = psutil.Process(proc.pid).create_time()
        assert jobs.same_process(proc.pid, recorded) is not None
        booted = psutil._pslinux.boot_time()
        monkeypatch.setattr(psutil._pslinux, "boot_time", lambda: booted + 1)
        assert psutil.Process(proc.pid).create_time() - recorded >= 0.99  # what psutil reads after the jump
        assert jobs.same_process(proc.pid, recorded) is not None
        assert jobs.same_process(proc.pid, recorded - 60) is None  # another process under a reused pid
        (tmp_path / "worker.json").write_text(f'{{"pid": {proc.pid}, "create_time": {recorded}}}')
        assert jobs.running(tmp_path)
    finally:
        proc.kill()
        proc.wait()
    assert jobs.same_process(proc.pid, recorded) is None  # it ended
    assert not jobs.running(tmp_path)
