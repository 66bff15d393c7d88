"""A later try of a Spark task finds the job its earlier try started, on both backends, against the
control plane: while the job runs (the earlier try's process was killed after StartJobRun), after it
succeeded (a clear with nothing changed), and not after its inputs changed (a new job), nor when the
inputs are back as the first job saw them but a later job replaced its outputs.

Each "try" is a new operator object with nothing carried over from the last one, as a new task
process has: all it knows is the control plane's answers. The scheduler-level tests (a clear, a
backfill, a code change) are in tests/e2e/test_job_identity.py.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import TaskDeferred

from churn_ml.settings import settings
from local_aws import control_plane, lake_files
from support import free_port

SCRIPT = "s3://churn-lake/tests/job-reuse/sleepy.py"
INPUT = "s3://churn-lake/tests/job-reuse/input/dt=2026-07-01/"
_URL: list[str] = []


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    lake_dir = tmp_path_factory.mktemp("job-reuse") / "lake"
    env = {"LAKE_ROOT": str(lake_dir), "ML_TARGET": "local", "CHURN_LOCAL_AWS_PORT": str(free_port()),
           "CHURN_LOCAL_RUNTIME_PORT": str(free_port()), "CHURN_LOCAL_SPARK_MEMORY": "512m"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        url = control_plane.ensure_server()
        _URL[:] = [url]
        patch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(control_plane.connection(url, role=None)))
        folder = lake_dir / "churn-lake/tests/job-reuse"
        (folder / "input/dt=2026-07-01").mkdir(parents=True)
        # Runs long enough for a second try to find it running; then succeeds.
        (folder / "sleepy.py").write_text("import time\nfrom pyspark.sql import SparkSession\n"
                                          "SparkSession.builder.getOrCreate().range(3).count()\ntime.sleep(4)\n")
        (folder / "input/dt=2026-07-01/part-0.txt").write_text("one\n")
        try:
            yield {"url": url, "lake": lake_dir}
        finally:
            control_plane.stop_server()


def _context():
    pushed = {}
    when = dt.datetime(2026, 7, 2, tzinfo=dt.UTC)
    dag_run = SimpleNamespace(run_id="scheduled__2026-07-02", logical_date=when, run_after=when, conf={}, clear_number=0)
    # What the OpenLineage provider reads to name the task's run for the job ([openlineage]
    # spark_inject_parent_job_info: scripts/env.sh sets it, as the MWAA template does).
    ti = SimpleNamespace(dag_id="churn_features", task_id="build_features", try_number=1, map_index=-1, dag_run=dag_run,
                         xcom_push=lambda key, value: pushed.__setitem__(key, value), xcom_pull=lambda **k: None)
    context = {"dag": SimpleNamespace(dag_id="churn_features"), "task": SimpleNamespace(task_id="build_features"),
               "ds": when.date().isoformat(), "run_id": dag_run.run_id, "logical_date": when,
               "params": {}, "dag_run": dag_run, "ti": ti}
    ti.get_template_context = lambda: context
    return context


def _operator(backend: str):
    from churn_ml.operators.emr_serverless import SparkOnEmrServerlessOperator
    from churn_ml.operators.glue import SparkOnGlueOperator

    inputs = [{"prefix": INPUT}]
    if backend == "glue":
        return SparkOnGlueOperator(task_id="build_features", job_name="churn-features", script_location=SCRIPT,
                                   script_args={"--scriptLocation": SCRIPT, "--extra-py-files": SCRIPT, "--ds": "2026-07-02"}, inputs=inputs,
                                   waiter_delay=1)
    return SparkOnEmrServerlessOperator(
        task_id="build_features", job_name_prefix="reuse", application_id=settings.emr_application_id,
        execution_role_arn="arn:aws:iam::000000000000:role/churn-emr-serverless-job",
        job_driver={"sparkSubmit": {"entryPoint": SCRIPT, "entryPointArguments": ["--ds", "2026-07-02"]}},
        configuration_overrides={}, inputs=inputs, waiter_delay=1)


def _try(backend: str) -> tuple[str, bool]:
    """One try of the task: (the job run it started or found, whether it deferred to wait for it)."""
    try:
        return _operator(backend).execute(_context()), False
    except TaskDeferred as deferred:
        kwargs = deferred.trigger.serialize()[1]
        return kwargs.get("job_id") or kwargs.get("run_id"), True


def _runs(backend: str) -> list[dict]:
    if backend == "glue":
        return control_plane.client("glue", _URL[0]).get_job_runs(JobName="churn-features")["JobRuns"]
    emr = control_plane.client("emr-serverless", _URL[0])
    return emr.list_job_runs(applicationId=settings.emr_application_id)["jobRuns"]


def _state(backend: str, run_id: str) -> str:
    if backend == "glue":
        return control_plane.client("glue", _URL[0]).get_job_run(JobName="churn-features", RunId=run_id)["JobRun"]["JobRunState"]
    emr = control_plane.client("emr-serverless", _URL[0])
    return emr.get_job_run(applicationId=settings.emr_application_id, jobRunId=run_id)["jobRun"]["state"]


def _wait(backend: str, run_id: str) -> None:
    deadline = time.monotonic() + 240
    while (state := _state(backend, run_id)) not in ("SUCCESS", "SUCCEEDED", "FAILED", "ERROR", "CANCELLED", "STOPPED"):
        assert time.monotonic() < deadline, f"job {run_id} still {state}"
        time.sleep(1)
    assert state in ("SUCCESS", "SUCCEEDED"), f"job {run_id} is {state}"


@pytest.mark.parametrize("backend", ["emr_serverless", "glue"])
def test_a_later_try_reuses_the_job_until_its_inputs_change(plane, backend):
    before = len(_runs(backend))
    first, deferred = _try(backend)
    assert deferred and _state(backend, first) in ("SUBMITTED", "SCHEDULED", "RUNNING", "STARTING")
    # The try's process is gone (killed after StartJobRun); the retry finds the job while it runs.
    again, deferred = _try(backend)
    assert (again, deferred) == (first, True)
    assert len(_runs(backend)) == before + 1
    _wait(backend, first)
    # Cleared with nothing changed: the succeeded job is the answer, without waiting or a new job.
    assert _try(backend) == (first, False)  # (the log line that says so: tests/unit/test_job_identity.py)
    assert len(_runs(backend)) == before + 1
    # A corrected input: a new job.
    lake_files.local_path(INPUT + "part-1.txt").write_text("two\n")
    try:
        changed, deferred = _try(backend)
        assert deferred and changed != first and len(_runs(backend)) == before + 2
        _wait(backend, changed)
    finally:
        lake_files.local_path(INPUT + "part-1.txt").unlink()
    # The input is as the first job saw it again, but the second job replaced that job's outputs since:
    # reusing the first would leave the second's outputs in place. A new attempt runs.
    reverted, deferred = _try(backend)
    assert deferred and reverted not in (first, changed) and len(_runs(backend)) == before + 3
    _wait(backend, reverted)
    assert _try(backend) == (reverted, False)  # and that one is reused
