"""A job's identity is its code, its inputs and its request (issue 24), measured through the scheduler.

On the stack of tests/e2e/conftest.py, after the batch chain ran for DS (and test_batch_chain's reruns):
a second `make run`, a corrected re-delivery of a raw partition, a code change in the stack's copy of
include/ (``CHURN_INCLUDE_DIR``, tests/e2e/stack.py: the repository is never touched) deployed as a person
deploys it (``make deploy-local``), a task process killed while its job runs, a request AWS rejects, and
a changed training script, deployed likewise. Each test counts the jobs in the control plane before and after (EMR Serverless: ListJobRuns; SageMaker: the control
plane's job folders, since the local target does not answer ListTrainingJobs) and reads the task
logs for the job a task reused. Every test restores what it changed (the raw file, the code) and
deletes the runs it created that a later module could trip over; none leaves a DAG paused.

The order matters and is the file's: `make run` twice first, while nothing of DS has changed since the
first run; the training test last, for an older date (two tuning trials, never published: the endpoint
and the production model the later modules use stay as they are). The Glue backend cannot be switched
on a running stack (CHURN_SPARK_BACKEND is read when the DAGs are parsed): operator-level tests cover it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import psutil
import pyarrow.dataset as ds_
import pytest
from airflow_runs import AirflowError

from churn_ml.dag_support import MODEL_POINTER_KEY
from e2e.stack import REPO, airflow, aws, backfill, day, deploy_code, registered, run_cli

pytestmark = pytest.mark.e2e

# The features tests rerun churn_features for SNAPSHOT, a date test_batch_chain backfilled with the default
# params (one raw partition a day): DS's run rebuilds 150 days of history (history_days), minutes of Spark
# for each of the four jobs these tests need, and proves nothing more.
SNAPSHOT = day(-4)
RAW_DAY = day(-5)  # the raw partition SNAPSHOT's run cleans
RAW_EVENTS = f"raw/events/dt={RAW_DAY}/part-00000.jsonl"


# ---------------------------------------------------------------- helpers


def _elapsed(label: str, started: float) -> None:
    print(f"\n[job identity] {label}: {time.monotonic() - started:.0f} s", flush=True)


def _emr_runs(stack: dict) -> dict[str, dict]:
    """Every job run of the stack's EMR Serverless application (ListJobRuns, paginated), by id."""
    client = aws(stack, "emr-serverless")
    apps = [a["id"] for a in client.list_applications()["applications"]]
    assert len(apps) == 1, f"expected the one application the DAGs run on, found {apps}"
    runs: dict[str, dict] = {}
    for page in client.get_paginator("list_job_runs").paginate(applicationId=apps[0]):
        runs.update({r["id"]: r for r in page["jobRuns"]})
    assert runs, "ListJobRuns answered no runs, although the batch chain ran its Spark jobs on the application"
    return runs


def _emr_run(stack: dict, run_id: str) -> dict:
    client = aws(stack, "emr-serverless")
    app = client.list_applications()["applications"][0]["id"]
    return client.get_job_run(applicationId=app, jobRunId=run_id)["jobRun"]


def _new_runs(before: dict[str, dict], after: dict[str, dict]) -> list[dict]:
    return sorted((after[i] for i in set(after) - set(before)), key=lambda r: r["createdAt"])


def _sagemaker_jobs(lake: Path) -> dict[str, set[str]]:
    """The control plane's training and tuning jobs (its folders: moto's List* does not see them)."""
    control = lake.parent / ".control-plane/sagemaker"
    return {kind: {p.name for p in (control / kind).iterdir()} if (control / kind).exists() else set()
            for kind in ("training-jobs", "tuning-jobs")}


def _attempt_logs(stack: dict, dag_id: str, run_id: str, task_id: str) -> dict[int, str]:
    """Each try's task log (attempt=N.log; not the triggers' attempt=N.log.trigger.M.log)."""
    folder = (Path(stack["env"]["AIRFLOW_HOME"]) / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
              / f"task_id={task_id}")
    logs = {}
    for path in folder.glob("attempt=*.log"):
        match = re.fullmatch(r"attempt=(\d+)\.log", path.name)
        if match:
            logs[int(match.group(1))] = path.read_text(errors="replace")
    return logs


def _reuse_line(log: str, name: str) -> str | None:
    """The log line saying the task reused job ``name`` (operators/base.py: "reusing <kind> <name> ...")."""
    return next((line for line in log.splitlines() if re.search(r"\breusing\b", line, re.I) and name in line), None)


def _clear_and_wait(stack: dict, dag_id: str, ds: str, timeout: float = 1200) -> dict:
    """`airflow tasks clear` of the date's run (every task, as "Clear" on the run), then wait for it."""
    client = airflow(stack)
    run_id = client.run_for(dag_id, ds)["dag_run_id"]
    run_cli(stack, "tasks", "clear", dag_id, "--start-date", ds, "--end-date", ds, "--yes")
    assert client.run(dag_id, run_id)["state"] != "success", "nothing was cleared"
    return client.wait(dag_id, run_id, timeout=timeout, poll=2)


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()}


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _summary(lake: Path) -> dict:
    return json.loads((lake / f"_runs/churn_features/ds={SNAPSHOT}/summary.json").read_text())


def _partition(summary: dict) -> dict:
    """The features run summary's counts of the raw events partition the test changes."""
    return summary["entities"]["events"]["partitions"][RAW_DAY]


def _features_run(stack: dict) -> dict:
    """SNAPSHOT's churn_features run (test_batch_chain's backfill made it; run alone, this module does)."""
    client = airflow(stack)
    run = client.run_for("churn_features", SNAPSHOT)
    if run is None:
        run = client.wait("churn_features", client.trigger("churn_features", SNAPSHOT), timeout=1200)
    assert run["state"] == "success", run
    return run


def _delete_run(stack: dict, dag_id: str, run_id: str) -> None:
    try:
        airflow(stack).request("DELETE", f"/dags/{dag_id}/dagRuns/{run_id}")
    except AirflowError as err:  # cleanup: say so; the test's own assertion matters more
        print(f"could not delete {dag_id} {run_id}: {err}")


# ---------------------------------------------------------------- make run twice


# The summary's lines about the newest registry version (test_batch_chain registers one for an older
# date between the two runs) and the wall times legitimately differ; every other line must not.
# The cost lines are measured (a rescored date's transform ran again, the endpoint's day grows): the number of jobs is not.
_VARYING = ("registry", "spot training", "wall time", "cost")


def _summary_lines(stdout: str) -> dict[str, list[str]]:
    """summarize_run.py's lines, grouped by their label (continuation lines belong to the label above)."""
    text = stdout.split("=== churn batch chain on the local target: done ===", 1)[-1]
    groups: dict[str, list[str]] = {}
    label = None
    for line in text.splitlines():
        if not line.strip() or line.startswith("Airflow UI"):
            continue
        if not line.startswith(" "):
            label = line[:17].strip()
        groups.setdefault(label, []).append(line.rstrip())
    return groups


def test_make_run_a_second_time_exits_0_and_prints_the_same_summary(stack):
    started = time.monotonic()
    proc = subprocess.run(["bash", str(REPO / "scripts/run_local.sh")], env=stack["env"], capture_output=True,
                          text=True, timeout=2400)
    _elapsed("the second make run (scripts/run_local.sh on the running stack)", started)
    assert proc.returncode == 0, f"the second run_local.sh failed:\n{proc.stdout[-5000:]}\n{proc.stderr[-5000:]}"
    print(proc.stdout[-2500:])
    first, second = _summary_lines(stack["first"]), _summary_lines(proc.stdout)
    assert set(first) == set(second), (sorted(first), sorted(second))
    differing = {label: (first[label], second[label]) for label in first
                 if label not in _VARYING and first[label] != second[label]}
    assert not differing, "the second make run printed another summary:\n" + "\n".join(
        f"{label}:\n  first:  {a}\n  second: {b}" for label, (a, b) in differing.items())
    assert f"{len(registered(stack))} version(s)" in second["registry"][0]
    jobs = [re.search(r"USD for (\d+) job\(s\)", lines[0]).group(1) for lines in (first["cost"], second["cost"])]
    assert jobs[0] == jobs[1], (first["cost"], second["cost"])


# ---------------------------------------------------------------- a corrected re-delivery


def _valid_event_line(lake: Path, raw: Path) -> dict:
    """A raw line of the partition that the first run cleaned as valid (its event id is in clean/)."""
    clean = set(ds_.dataset(lake / f"clean/events/dt={RAW_DAY}", format="parquet").to_table(
        columns=["event_id"]).column("event_id").to_pylist())
    for line in raw.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event_id") in clean:
            return record
    raise AssertionError(f"no line of {raw} was cleaned as valid")


def test_a_corrected_redelivery_recomputes_the_features_and_an_unchanged_clear_reuses_the_job(stack):
    lake, client = stack["lake"], airflow(stack)
    raw = lake / RAW_EVENTS
    original = raw.read_bytes()
    assert original.endswith(b"\n") and (raw.parent / "_SUCCESS").exists()
    _features_run(stack)
    before, features_before = _summary(lake), _files(lake / f"features/dt={SNAPSHOT}")
    runs_before = _emr_runs(stack)
    record = {**_valid_event_line(lake, raw), "event_id": "E9999-0000001"}  # as an upstream re-export adds one
    try:
        raw.write_bytes(original + (json.dumps(record) + "\n").encode())
        started = time.monotonic()
        run = _clear_and_wait(stack, "churn_features", SNAPSHOT)
        _elapsed(f"clear of churn_features {SNAPSHOT} after one raw record was added", started)
        assert run["state"] == "success", client.task_states("churn_features", run["dag_run_id"])
        new = _new_runs(runs_before, runs_after := _emr_runs(stack))
        assert len(new) == 1, f"expected one new features job run, got {[r['name'] for r in new]}"
        name = new[0]["name"]
        assert name.startswith("churn-features"), name
        after = _summary(lake)
        assert _partition(after)["records"] == _partition(before)["records"] + 1
        assert _partition(after)["bad"] == _partition(before)["bad"], "the added record was not valid"
        assert after["entities"]["events"]["records"] == before["entities"]["events"]["records"] + 1
        features_after = _files(lake / f"features/dt={SNAPSHOT}")
        assert features_after and features_after != features_before, f"features/dt={SNAPSHOT} was not replaced"

        started = time.monotonic()
        run = _clear_and_wait(stack, "churn_features", SNAPSHOT)
        _elapsed(f"clear of churn_features {SNAPSHOT} with nothing changed", started)
        assert run["state"] == "success"
        assert _emr_runs(stack).keys() == runs_after.keys(), "a clear with nothing changed started a job run"
        assert _summary(lake) == after and _files(lake / f"features/dt={SNAPSHOT}") == features_after, "recomputed"
        ti = client.task_instance("churn_features", run["dag_run_id"], "build_features")
        log = _attempt_logs(stack, "churn_features", run["dag_run_id"], "build_features")[ti["try_number"]]
        reused = _reuse_line(log, name)
        assert reused, f"the log of try {ti['try_number']} does not say it reused {name}:\n{log[-3000:]}"
        print(f"  {reused.strip()}")
    finally:
        # The raw file as it was (with a new modification time, so a new ETag locally: the next features
        # run of SNAPSHOT, the code-change test's backfill right below, rebuilds the features from it).
        raw.write_bytes(original)


# ---------------------------------------------------------------- a code change


def test_a_code_change_runs_a_new_job_under_the_new_code_version_and_keeps_the_old_version(stack):
    from churn_ml import artifacts

    lake, include = stack["lake"], stack["include"]
    code = lake.parent / "churn-artifacts" / "code"
    module = include / "churn" / "features.py"
    original = module.read_bytes()
    old_version = artifacts.fingerprint(include)
    old_objects = _tree(code / old_version)
    assert old_objects, f"the code version the stack ran, {old_version}, is not under {code}: {sorted(code.iterdir())}"
    conf = _features_run(stack)["conf"]  # the backfill keeps the run's params
    runs_before = _emr_runs(stack)
    try:
        module.write_bytes(original + b"\n# tests/e2e/test_job_identity.py: a harmless change of the code\n"
                                      b"E2E_CODE_CHANGE = 1\n")
        new_version = artifacts.fingerprint(include)
        assert new_version != old_version
        deploy_code(stack)  # as a person deploys a change (make deploy-local; infra/deploy_mwaa.py on AWS)
        started = time.monotonic()
        runs = backfill(stack, "churn_features", SNAPSHOT, SNAPSHOT, "--reprocess-behavior", "completed",
                        "--dag-run-conf", json.dumps(conf), timeout=1200)
        _elapsed(f"backfill --reprocess-behavior completed of churn_features {SNAPSHOT} after a code change", started)
        assert runs[SNAPSHOT]["state"] == "success", runs
    finally:
        module.write_bytes(original)
        deploy_code(stack)  # the later tests run the stack's original code version
    new = _new_runs(runs_before, _emr_runs(stack))
    assert len(new) == 1, f"expected one new features job run, got {[r['name'] for r in new]}"
    submit = _emr_run(stack, new[0]["id"])["jobDriver"]["sparkSubmit"]
    assert submit["entryPoint"].endswith(f"/code/{new_version}/jobs/churn_features.py"), submit
    assert f"/code/{new_version}/lib/churn.zip" in submit["sparkSubmitParameters"], submit
    assert _tree(code / old_version) == old_objects, f"the objects of the old version {old_version} changed"
    with zipfile.ZipFile(code / new_version / "lib/churn.zip") as library:
        assert library.read("churn/features.py").endswith(b"E2E_CODE_CHANGE = 1\n"), "the new version lacks the change"
    # The features match the raw data as it is now (the re-delivery test above restored its file).
    raw_lines = len((lake / RAW_EVENTS).read_text().splitlines())
    assert _partition(_summary(lake))["records"] == raw_lines


# ---------------------------------------------------------------- a retry while the job runs


def _task_process(client, dag_id: str, run_id: str, task_id: str, timeout: float) -> psutil.Process:
    """The current try's task process, as soon as it exists: the supervisor's child, which titles itself
    "airflow worker -- <task instance id>" when it starts."""
    deadline = time.monotonic() + timeout
    while True:
        ti = client.task_instance(dag_id, run_id, task_id)
        if ti["state"] in ("queued", "running"):
            title = f"airflow worker -- {ti['id']}"
            for proc in psutil.process_iter(["cmdline"]):
                if " ".join(proc.info["cmdline"] or []).strip() == title:
                    return proc
        assert time.monotonic() < deadline, f"{dag_id}.{task_id} had no task process within {timeout:.0f} s: {ti}"
        time.sleep(0.05)


def test_a_retry_after_the_task_process_is_killed_while_its_job_runs_reattaches_to_it(stack):
    """build_features (EMR Serverless) of a date without a features run yet. Its task is deferrable: the
    try's process lives from StartJobRun to the deferral only. So the try's process is stopped (SIGSTOP)
    the moment the control plane creates the job run, before it can read StartJobRun's answer and defer;
    once the job runs, that process is SIGKILLed. The retry must find the same job run."""
    lake, client = stack["lake"], airflow(stack)
    target = day(-2)
    existing = client.run_for("churn_features", target)
    if existing:
        _delete_run(stack, "churn_features", existing["dag_run_id"])
    job_runs = lake.parent / ".control-plane" / "spark" / "job-runs"
    known = set(os.listdir(job_runs))
    runs_before = _emr_runs(stack)
    started = time.monotonic()
    run_id = client.trigger("churn_features", target)
    task = _task_process(client, "churn_features", run_id, "build_features", timeout=600)
    created, killed = None, False
    deadline = time.monotonic() + 300
    while created is None:
        fresh = set(os.listdir(job_runs)) - known
        if fresh:
            task.suspend()  # SIGSTOP: the run exists; the try has not read StartJobRun's answer yet
            created = fresh.pop()
        else:
            assert time.monotonic() < deadline, "no job run was created within 300 s"
            time.sleep(0.002)
    try:
        ti = client.task_instance("churn_features", run_id, "build_features")
        assert ti["state"] == "running" and ti["try_number"] == 1, (
            f"the first try is {ti['state']} (try {ti['try_number']}): it deferred before its process was stopped, "
            "so this run proves nothing; run the test again")
        state_file = job_runs / created / "job-run.json"
        deadline = time.monotonic() + 180
        while not (state_file.exists() and json.loads(state_file.read_text() or "{}").get("state") == "RUNNING"):
            assert time.monotonic() < deadline, f"job run {created} did not start running within 180 s"
            time.sleep(0.2)
        task.send_signal(signal.SIGKILL)
        killed = True
        print(f"\n  SIGKILL of the first try's task process {task.pid} while job run {created} is RUNNING")
        deadline = time.monotonic() + 120
        while (ti := client.task_instance("churn_features", run_id, "build_features"))["try_number"] == 1 \
                and ti["state"] == "running":
            assert time.monotonic() < deadline, "the killed try was still running 120 s after SIGKILL"
            time.sleep(0.5)
    finally:
        if not killed:
            with contextlib.suppress(psutil.NoSuchProcess):
                task.resume()  # let it go on as it was
    run = client.wait("churn_features", run_id, timeout=900, poll=2)
    _elapsed("trigger of churn_features for day(-2), a killed try and its retry", started)
    ti = client.task_instance("churn_features", run_id, "build_features")
    assert run["state"] == "success" and ti["state"] == "success", client.task_states("churn_features", run_id)
    assert ti["try_number"] >= 2, "the kill did not end the first try"
    new = _new_runs(runs_before, _emr_runs(stack))
    assert [r["id"] for r in new] == [created], f"expected exactly the run {created}, got {[r['id'] for r in new]}"
    name = new[0]["name"]
    logs = _attempt_logs(stack, "churn_features", run_id, "build_features")
    reused = _reuse_line(logs[2], name)
    assert reused, f"the retry's log does not say it reused {name}:\n{logs[2][-3000:]}"
    print(f"  {reused.strip()}")


# ---------------------------------------------------------------- an error a retry cannot fix


def test_a_request_aws_rejects_fails_its_task_on_the_first_try_saying_what_to_do(stack):
    """A tuning budget of zero jobs (the trigger form's `tuning` param): CreateHyperParameterTuningJob's
    MaxNumberOfTrainingJobs is at least 1, so botocore refuses the request against the service's model
    (ParamValidationError) before sending it, where AWS would answer ValidationException. Either way the
    same request fails again: the task has a retry, it must not use it, and its log must say what to fix."""
    lake, client = stack["lake"], airflow(stack)
    target = day(-14)  # a date without a training run: its training set is built, then tuning is refused
    existing = client.run_for("churn_training", target)
    if existing:
        _delete_run(stack, "churn_training", existing["dag_run_id"])
    tuning_before = _sagemaker_jobs(lake)["tuning-jobs"]
    started = time.monotonic()
    run_id = client.trigger("churn_training", target, {"tuning": {"max_jobs": 0, "max_parallel": 2}})
    try:
        run = client.wait("churn_training", run_id, timeout=1200, poll=2)
        _elapsed("churn_training with a tuning budget of 0 jobs", started)
        states = client.task_states("churn_training", run_id)
        ti = client.task_instance("churn_training", run_id, "tune_hyperparameters")
        assert run["state"] == "failed" and states["build_training_set"] == "success", states
        assert ti["state"] == "failed" and ti["max_tries"] >= 1, ti
        assert ti["try_number"] == 1, f"the rejected request was tried {ti['try_number']} times"
        log = _attempt_logs(stack, "churn_training", run_id, "tune_hyperparameters")[1]
        assert "MaxNumberOfTrainingJobs" in log, log[-3000:]
        assert re.search(r"not retried", log), f"the log does not say the error is not retried:\n{log[-3000:]}"
        assert re.search(r"fix the request", log, re.I), f"the log does not say what to do:\n{log[-3000:]}"
        assert _sagemaker_jobs(lake)["tuning-jobs"] == tuning_before, "a tuning job was created anyway"
    finally:
        _delete_run(stack, "churn_training", run_id)


# ---------------------------------------------------------------- training after a code change


def test_a_changed_training_script_trains_a_new_model_and_registers_a_new_version(stack):
    """churn_training for an older date (two tuning trials: quick, and never published, so the endpoint
    and the production model stay what the later modules expect). The other half, an unchanged script
    re-attaching and adding no version, is test_batch_chain's
    test_a_second_training_run_of_the_date_starts_no_job_and_adds_no_version."""
    from churn_ml import artifacts

    lake, client, include = stack["lake"], airflow(stack), stack["include"]
    target = day(-7)
    if client.run_for("churn_training", target) is None:  # test_batch_chain made it; alone, this test does
        client.trigger("churn_training", target, {"tuning": {"max_jobs": 2, "max_parallel": 2}})
        run = client.wait("churn_training", client.run_for("churn_training", target)["dag_run_id"], timeout=1800)
        assert run["state"] == "success"
    script = include / "sagemaker" / "churn_train.py"
    original = script.read_bytes()
    pointer, endpoint = (lake / MODEL_POINTER_KEY).read_text(), stack["endpoint"]()["EndpointConfigName"]
    jobs, versions = _sagemaker_jobs(lake), [v["ModelPackageArn"] for v in registered(stack)]
    try:
        script.write_bytes(original + b"\n# tests/e2e/test_job_identity.py: a harmless change of the code\n"
                                      b"E2E_CODE_CHANGE = 1\n")
        new_version = artifacts.fingerprint(include)
        deploy_code(stack)
        started = time.monotonic()
        run = _clear_and_wait(stack, "churn_training", target, timeout=1800)
        _elapsed("clear of churn_training for an older date after churn_train.py changed", started)
    finally:
        script.write_bytes(original)
        deploy_code(stack)
    states = client.task_states("churn_training", run["dag_run_id"])
    assert run["state"] == "success", states
    after = _sagemaker_jobs(lake)
    new_tuning, new_training = after["tuning-jobs"] - jobs["tuning-jobs"], after["training-jobs"] - jobs["training-jobs"]
    assert len(new_tuning) == 1, f"expected one new tuning job, got {sorted(new_tuning)}"
    now = registered(stack)
    assert [v["ModelPackageArn"] for v in now[:-1]] == versions and len(now) == len(versions) + 1, \
        "expected exactly one new registry version"
    job_name = now[-1]["CustomerMetadataProperties"]["training_job_name"]
    assert job_name in new_training, f"the new version's training job {job_name} is not new: {sorted(new_training)}"
    request = (lake.parent / ".control-plane/sagemaker/training-jobs" / job_name / "request.json").read_text()
    assert f"/code/{new_version}/sagemaker/sourcedir.tar.gz" in request, "the training job ran another code version"
    # Not published (older data than production): what the endpoint and batch scoring use is unchanged.
    assert states["publish_model"] == states["deploy_model"] == "skipped", states
    assert (lake / MODEL_POINTER_KEY).read_text() == pointer
    assert stack["endpoint"]()["EndpointConfigName"] == endpoint
