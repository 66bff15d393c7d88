"""Local runner for the Glue streaming job: the same script as a detached local Spark process.

``start_job_run`` takes the Glue job definition (CreateJob's ``Command`` and ``DefaultArguments``)
and the StartJobRun ``Arguments``, like Glue merges them (a run's ``--scriptLocation`` and
``--extra-py-files`` replace the job's script and library, as on Glue), adds ``--JOB_RUN_ID`` as Glue
does and starts ``spark-submit`` in its own session: the run outlives the Airflow task that started it, like
a Glue streaming run. Like a job with ``MaxConcurrentRuns: 1`` it refuses a second concurrent run.

Each run's state is in the control plane (``.control-plane/streaming/<job>/runs/<run id>.json``:
pid, process start time, state); its driver log is in the lake next to the progress the job
writes (``<progress root>/<run id>/driver.log``). ``get_job_run`` answers like GetJobRun: a run
whose process is gone is FAILED with the error from its log, or STOPPED after ``stop_job_run``.

``python -m local_aws.glue_streaming status|stop|logs [--job churn-streaming]``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from churn_ml import naming
from local_aws import jobs, lake_files
from local_aws.common import LocalJobError, control_plane, now, read_state, tail, write_state
from local_aws.spark import argv, glue_script_location, spark_submit, split_glue_arguments

ACTIVE = ("STARTING", "RUNNING", "STOPPING")
STOP_SECONDS = 60.0
log = logging.getLogger(__name__)


class ConcurrentRunsExceeded(LocalJobError):
    """The job already has a run in progress (Glue: ConcurrentRunsExceededException)."""


def _runs_dir(job: str) -> Path:
    return control_plane("streaming", job, "runs")


def _alive(state: dict) -> bool:
    proc = jobs.same_process(state["pid"], state["create_time"])
    if proc is None:
        return False
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            with contextlib.suppress(ChildProcessError):  # the control plane started it: reap it
                os.waitpid(state["pid"], os.WNOHANG)
            return False
        return True
    except psutil.NoSuchProcess:
        return False


def _error_from_log(path: Path) -> str:
    if not path.exists():
        return f"the process exited and left no log at {path}"
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    errors = [line for line in lines if re.search(r"(Error|Exception)\b", line) and "WARN" not in line]
    return (errors[-1] if errors else "the process exited without an error message (killed?)") + \
        f"; last lines:\n{tail(lines, 8)}\nFull log: {path}"


def get_job_run(job: str, run_id: str | None = None) -> dict | None:
    """GetJobRun for ``run_id`` (default: the latest run), with a state that reflects the process."""
    runs = _runs_dir(job)
    if run_id is None:
        pointer = read_state(runs.parent / "latest.json")
        if not pointer:
            return None
        run_id = pointer["Id"]
    path = runs / f"{run_id}.json"
    state = read_state(path)
    if state is None:
        return None
    if state["JobRunState"] in ACTIVE and not _alive(state):
        stopped = state["JobRunState"] == "STOPPING"
        state.update(JobRunState="STOPPED" if stopped else "FAILED", CompletedOn=now())
        if not stopped:
            state["ErrorMessage"] = _error_from_log(Path(state["LogFile"]))
        write_state(path, state)
    return state


def start_job_run(definition: dict, arguments: dict, log: logging.Logger, run_id: str | None = None) -> dict:
    """StartJobRun: start the job's script with the merged arguments; returns the GetJobRun state.
    ``run_id``: the id the control plane gave the run (default: a new one)."""
    job = definition["Name"]
    current = get_job_run(job)
    if current and current["JobRunState"] in ACTIVE:
        raise ConcurrentRunsExceeded(f"job {job} already has run {current['Id']} in state {current['JobRunState']}")
    merged = {**definition.get("DefaultArguments", {}), **arguments}
    run_id = run_id or f"jr_{naming.content_hash({'job': job, 'started': now(), 'pid': os.getpid()}, 32)}"
    merged["--JOB_RUN_ID"] = run_id
    if "--progress-root" not in merged:
        raise LocalJobError(f"job {job}: the local runner keeps the run's log under --progress-root; pass it")
    py_files, conf, script_args = split_glue_arguments(merged)
    log_file = lake_files.local_path(f"{merged['--progress-root'].rstrip('/')}/{run_id}/driver.log")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    workdir = control_plane("streaming", job, "work", run_id)
    command, env = spark_submit(name=f"{job}-{run_id[:12]}", entry_point=glue_script_location(definition["Command"], merged),
                                arguments=argv(script_args), py_files=py_files, spark_conf=conf, workdir=workdir)
    with log_file.open("ab") as sink:
        proc = subprocess.Popen(command, env=env, cwd=workdir, stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    state = {
        "Id": run_id, "JobName": job, "JobRunState": "RUNNING", "StartedOn": now(), "Arguments": merged,
        "pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time(), "LogFile": str(log_file),
    }
    write_state(_runs_dir(job) / f"{run_id}.json", state)
    write_state(_runs_dir(job).parent / "latest.json", {"Id": run_id})
    log.info("started %s run %s (pid %d); log: %s", job, run_id, proc.pid, log_file)
    return state


def _driver(state: dict) -> psutil.Process | None:
    """The job's Python driver: the spark-submit JVM's child running the script."""
    try:
        children = psutil.Process(state["pid"]).children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    for child in children:
        try:
            if any(part.endswith(".py") for part in child.cmdline()):
                return child
        except psutil.Error:
            continue
    return None


def stop_job_run(job: str, log: logging.Logger, timeout: float = STOP_SECONDS) -> dict | None:
    """Stop the active run: SIGTERM to the driver (it stops the query after the batch in flight and
    records STOPPED), then SIGKILL of the whole process group after ``timeout`` seconds."""
    state = get_job_run(job)
    if not state or state["JobRunState"] not in ACTIVE:
        log.info("job %s has no active run", job)
        return state
    path = _runs_dir(job) / f"{state['Id']}.json"
    state["JobRunState"] = "STOPPING"
    write_state(path, state)
    driver = _driver(state)
    if driver:
        driver.terminate()
    else:
        os.killpg(state["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(state) and time.monotonic() < deadline:
        time.sleep(0.5)
    if _alive(state):
        log.warning("run %s did not stop within %.0fs: killing it", state["Id"], timeout)
        os.killpg(state["pid"], signal.SIGKILL)
        psutil.Process(state["pid"]).wait(30)
    log.info("stopped %s run %s", job, state["Id"])
    return get_job_run(job, state["Id"])


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(prog="python -m local_aws.glue_streaming")
    parser.add_argument("command", choices=["status", "stop", "logs"])
    parser.add_argument("--job", default="churn-streaming")
    args = parser.parse_args(argv)
    state = get_job_run(args.job)
    if args.command == "stop":
        state = stop_job_run(args.job, log)
    if state is None:
        print(f"job {args.job} has never run on this lake")
        return 1
    if args.command == "logs":
        print(Path(state["LogFile"]).read_text(encoding="utf-8", errors="replace")[-20000:])
        return 0
    print(f"{state['JobName']} {state['Id']}: {state['JobRunState']} since {state['StartedOn']} (pid {state['pid']})")
    if state.get("ErrorMessage"):
        print(state["ErrorMessage"])
    print(f"log: {state['LogFile']}")
    return 0 if state["JobRunState"] in ACTIVE else 1


if __name__ == "__main__":
    raise SystemExit(main())
