"""The control plane's jobs: start a worker process for a request, and tell whether it still runs.

A job's folder (``.control-plane/<service>/<kind>/<name>/``) holds ``request.json`` (what Create*
or StartJobRun received), ``worker.json`` (the worker's pid and start), ``worker.log`` (its output)
and the runner's own record (``describe.json``, or ``job-run.json`` for Spark). The record is the
job's state; a worker that died without ending its record (killed, or the machine rebooted) makes
the job Failed with the worker's last error, instead of InProgress for ever.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import psutil

from local_aws.common import RUNNER_PATH, now, python, read_state, write_state

FAILED_LINE = "the job failed: "


def start(kind: str, job_dir: Path, request: dict) -> int:
    """Write the request and start ``python -m local_aws.worker kind`` on it; returns the pid.

    The worker stays in the control plane's session, so stopping the control plane stops its jobs."""
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "request.json").write_text(json.dumps(request, indent=1, default=str))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*RUNNER_PATH, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "PYTHONUNBUFFERED": "1",
    }
    with (job_dir / "worker.log").open("ab") as sink:
        proc = subprocess.Popen(
            [python(), "-m", "local_aws.worker", kind, str(job_dir / "request.json")],
            stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=job_dir,
        )
    started = psutil.Process(proc.pid).create_time()
    write_state(job_dir / "worker.json", {"pid": proc.pid, "create_time": started, "started": now()})
    _children[proc.pid] = proc
    return proc.pid


_children: dict[int, subprocess.Popen] = {}  # reaped on each check, so an ended worker is no zombie

# psutil's create_time() is the kernel's boot time (``btime`` of /proc/stat, whole seconds, recomputed
# from the clock: it moves by a second now and then) plus the process's start: two readings of the same
# process may differ by one second. A pid reused within that tolerance is not a concern here.
SAME_START_SECONDS = 2.0


def same_process(pid: int, create_time: float) -> psutil.Process | None:
    """The process ``pid`` if it is the one that started at ``create_time`` (psutil's), else None."""
    try:
        process = psutil.Process(pid)
        return process if abs(process.create_time() - create_time) < SAME_START_SECONDS else None
    except psutil.NoSuchProcess:
        return None


def running(job_dir: Path) -> bool:
    """Whether the job's worker is alive (the same process: its pid and start time match)."""
    state = read_state(job_dir / "worker.json")
    if not state:
        return False
    child = _children.get(state["pid"])
    if child is not None and child.poll() is not None:
        _children.pop(state["pid"], None)
        return False
    process = same_process(state["pid"], state["create_time"])
    try:
        return process is not None and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop(job_dir: Path) -> bool:
    """SIGTERM the job's worker (it records the job as Stopped); False when it was not running."""
    if not running(job_dir):
        return False
    os.kill(read_state(job_dir / "worker.json")["pid"], 15)
    return True


def last_error(job_dir: Path) -> str:
    """The worker's last ``the job failed: ...`` line, or where its log is."""
    log_file = job_dir / "worker.log"
    lines = log_file.read_text(errors="replace").splitlines() if log_file.exists() else []
    for line in reversed(lines):
        if FAILED_LINE in line:
            return line.split(FAILED_LINE, 1)[1][:900]
    return f"the local worker exited without finishing the job; see {log_file}"
