"""Keeping the streaming scoring job healthy, on either target: what the churn_streaming DAG calls.

* ``ensure_endpoint`` - the endpoint the job scores with must be serving (InService, or Updating
  during a blue/green deployment, which keeps serving).
* ``ensure_job`` - the Glue streaming job must have a run in progress: none or a finished one ->
  start one (it resumes from its checkpoint); FAILED -> start one and report why the last failed.
  Retry-safe: the job allows one concurrent run, and a start that races another returns that run.
* ``assess`` - health from the progress the job writes (``include/jobs/churn_stream_scoring.py``): progress
  age, batch duration, share of bad events, lag from the stream's arrival time to the prediction.
* ``stop_job`` - stop the active run; only ever called explicitly (CLI or the stop DAG).

The provider's GlueJobHook and SageMakerHook, on both targets (locally, the control plane runs the
Glue run as a detached Spark process reading its Kinesis, and serves the endpoint).

The job scores through the endpoint by name, so once a new model version is deployed every later
batch is scored by it: no restart is needed. ``assess`` reports whether a batch has been committed
since the endpoint last changed (``scored_since_deployment``).

What the DAG's tasks call fails fast (``failing_fast``) on what no retry can fix: no endpoint, an endpoint
that failed or is being deleted, in-process scoring with no published model (``StreamingSetupError``),
and a Glue job or request AWS rejects as invalid. An unhealthy run (``StreamingHealthError``) or an
endpoint that is still being created may recover: those keep the usual handling.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from churn_ml import lake
from churn_ml.errors import CannotSucceedOnRetry, failing_fast
from churn_ml.settings import settings

SERVING = ("InService", "Updating")
# Endpoint states SageMaker does not leave by itself: a person (or a deployment) has to act.
STUCK = ("Failed", "OutOfService", "Deleting", "UpdateRollbackFailed")
ACTIVE_RUN_STATES = ("STARTING", "RUNNING", "STOPPING", "WAITING")


class StreamingHealthError(RuntimeError):
    """The streaming job or its endpoint is not healthy; the message says what and what to do."""


class StreamingSetupError(CannotSucceedOnRetry, StreamingHealthError):
    """What the streaming job needs is not there (an endpoint, a published model): no retry brings it."""


def root() -> str:
    return f"{settings.lake}/_streaming/churn_streaming"


SCRIPT = "churn_stream_scoring"  # include/jobs/churn_stream_scoring.py


def run_arguments() -> dict[str, str]:
    """StartJobRun Arguments, the same on both targets. On AWS the job's defaults add ``--source glue``,
    the stream ARN and the region (infra/cloudformation/churn.yaml); locally, the control plane adds its
    Kinesis and Runtime endpoints (local_aws.spark_api). With CHURN_STREAMING_SCORING=in_process, the
    run scores with the published model (the production pointer's model.tar.gz) in its driver.

    The run names the code version the DAGs use now (``--scriptLocation`` and ``--extra-py-files`` of
    ``code/<version>/``, which override the job definition's for this run): a restart after a deploy
    runs the new code, and a running run keeps the code it started with."""
    from churn_ml import artifacts

    scoring: dict[str, str] = {}
    if settings.streaming_scoring == "in_process":
        from churn_ml.dag_support import MODEL_POINTER_KEY

        pointer = f"{settings.lake}/{MODEL_POINTER_KEY}"
        if not lake.exists(pointer):
            raise StreamingSetupError(f"CHURN_STREAMING_SCORING=in_process scores with the published model, and "
                                      f"{pointer} does not exist: publish one with the churn_training DAG first")
        scoring = {"--scoring": "in_process", "--model-data-url": lake.read_json(pointer)["model_data_url"]}
    return {
        **artifacts.glue_code_arguments(artifacts.current_version(), SCRIPT),
        **scoring,
        "--lake": settings.lake,
        "--endpoint-name": settings.endpoint_name,
        "--checkpoint": f"{root()}/checkpoint",
        "--progress-root": f"{root()}/runs",
        "--output": f"{settings.lake}/stream_predictions",
        "--errors": f"{settings.lake}/errors/stream_events",
        "--trigger-seconds": f"{settings.streaming_trigger_seconds:g}",
        "--allowed-lateness-seconds": f"{settings.streaming_allowed_lateness_seconds:g}",
    }


# ------------------------------------------------------------------ endpoint

@failing_fast
def ensure_endpoint(log: logging.Logger) -> dict:
    name = settings.endpoint_name
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook
    from botocore.exceptions import ClientError

    try:
        described = SageMakerHook(aws_conn_id=settings.aws_conn_id).describe_endpoint(name)
    except ClientError as err:
        if "could not find" not in str(err).lower():
            raise
        described = None
    if described is None:
        raise StreamingSetupError(
            f"endpoint {name} does not exist; the streaming job scores through it. Deploy a model with the "
            f"churn_training DAG (its deploy_model task) first."
        )
    status = described["EndpointStatus"]
    if status not in SERVING:
        raise (StreamingSetupError if status in STUCK else StreamingHealthError)(
            f"endpoint {name} is {status}, not serving ({described.get('FailureReason', 'no reason given')}). "
            f"Redeploy with the churn_training DAG; the streaming job waits for it and resumes from its checkpoint."
        )
    log.info("endpoint %s is %s on %s", name, status, described.get("EndpointConfigName"))
    return {"name": name, "status": status, "config": described.get("EndpointConfigName"),
            "last_modified": str(described["LastModifiedTime"]) if described.get("LastModifiedTime") else None}


# ------------------------------------------------------------------ the job's runs

def _glue_hook():
    # Starts runs of the template's job; never creates or updates it (the template owns the definition).
    from churn_ml.operators import StartOnlyGlueJobHook

    return StartOnlyGlueJobHook(job_name=settings.streaming_job_name, aws_conn_id=settings.aws_conn_id,
                                update_config=False)


def latest_run() -> dict | None:
    """The job's newest run (GetJobRun shape) or None."""
    runs = _glue_hook().conn.get_job_runs(JobName=settings.streaming_job_name, MaxResults=10)["JobRuns"]
    return max(runs, key=lambda r: r["StartedOn"]) if runs else None


def _mark_code_used(run: dict, log: logging.Logger) -> None:
    """Keep the code version a run uses from expiring (``artifacts.mark_used``; aws target only)."""
    from churn_ml import artifacts

    version = artifacts.version_of((run.get("Arguments") or {}).get("--scriptLocation", ""))
    if version:
        log.info("streaming job run %s runs code version %s", run.get("Id"), version)
        artifacts.mark_used(version)


def _start(log: logging.Logger) -> dict:
    hook = _glue_hook()
    try:
        run_id = hook.initialize_job(script_arguments=run_arguments())["JobRunId"]
    except hook.conn.exceptions.ConcurrentRunsExceededException:
        return latest_run()  # another attempt started it a moment ago: that run is ours
    return hook.conn.get_job_run(JobName=settings.streaming_job_name, RunId=run_id)["JobRun"]


@failing_fast
def ensure_job(log: logging.Logger) -> dict:
    """A run of the streaming job in progress: the current one, or one started now."""
    run = latest_run()
    if run and run["JobRunState"] in ACTIVE_RUN_STATES:
        log.info("streaming job run %s is %s since %s", run["Id"], run["JobRunState"], run["StartedOn"])
        _mark_code_used(run, log)
        return {"run_id": run["Id"], "state": run["JobRunState"], "action": "none", "started_on": str(run["StartedOn"])}
    if run is None:
        reason = "it has never run"
    elif run["JobRunState"] == "FAILED" or run.get("ErrorMessage"):
        reason = f"run {run['Id']} {run['JobRunState']}: {run.get('ErrorMessage', 'no error message')}"
        log.warning("the streaming job failed; restarting it from its checkpoint. %s", reason)
    else:
        reason = f"run {run['Id']} is {run['JobRunState']}"
    started = _start(log)
    log.info("started streaming job run %s (%s); it resumes from %s/checkpoint", started["Id"], reason, root())
    _mark_code_used(started, log)
    return {"run_id": started["Id"], "state": started["JobRunState"], "action": "started", "reason": reason,
            "started_on": str(started["StartedOn"])}


@failing_fast
def stop_job(log: logging.Logger) -> dict | None:
    """Stop the active run (explicit only: the stop DAG, or ``python -m local_aws.glue_streaming stop`` locally)."""
    run = latest_run()
    if not run or run["JobRunState"] not in ACTIVE_RUN_STATES:
        log.info("no active run of %s", settings.streaming_job_name)
        return run
    answer = _glue_hook().conn.batch_stop_job_run(JobName=settings.streaming_job_name, JobRunIds=[run["Id"]])
    if answer.get("Errors"):
        raise RuntimeError(f"could not stop run {run['Id']}: {answer['Errors']}")
    log.info("stopping %s run %s", settings.streaming_job_name, run["Id"])
    return run


# ------------------------------------------------------------------ health

def read_progress(run_id: str) -> dict | None:
    """The run's ``progress.json``, or None while it has written none (or its folder was removed).

    The job replaces the file whole (a local file is written aside and renamed over it; on S3 it is
    one PUT), so what is read here is one complete version."""
    uri = f"{root()}/runs/{run_id}/progress.json"
    if not lake.exists(uri):
        return None
    try:
        return lake.read_json(uri)
    except FileNotFoundError:  # removed between the two calls, e.g. a lake being cleaned up
        return None


def _parse(value: str | None) -> dt.datetime | None:
    """An ISO timestamp (or ``str(datetime)``) as an aware datetime; naive ones are UTC."""
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def assess(progress: dict | None, now: dt.datetime, *, started_on: dt.datetime, endpoint_modified: dt.datetime | None,
           startup_grace_seconds: float = 300, max_progress_age_seconds: float = 120, max_batch_seconds: float = 60,
           max_error_rate: float = 0.05, max_lag_seconds: float = 120, recent: int = 20) -> tuple[dict[str, Any], list[str]]:
    """(metrics, problems) from a run's progress; no problems means healthy."""
    if progress is None:
        waited = (now - started_on).total_seconds()
        if waited <= startup_grace_seconds:
            return {"state": "STARTING", "waited_seconds": round(waited)}, []
        return {"state": "UNKNOWN"}, [f"the run started {waited:.0f}s ago and has written no progress yet"]
    problems: list[str] = []
    age = (now - _parse(progress["updated_at"])).total_seconds()
    batches = progress.get("recent_batches", [])[-recent:]
    last = progress.get("last_progress") or {}
    inputs = sum(b["input"] for b in batches)
    bad = sum(b["quarantined"] + b["unscored"] + b.get("rejected", 0) for b in batches)  # rejected: by the endpoint
    durations = [b["duration_ms"] / 1000 for b in batches]
    latencies = [b["latency_ms"]["p99"] for b in batches if b.get("latency_ms")]
    lags = [b["arrival_lag_ms"]["max"] / 1000 for b in batches if b.get("arrival_lag_ms")]
    last_commit = _parse(batches[-1]["committed_at"]) if batches else None
    metrics = {
        "state": progress["state"],
        "progress_age_seconds": round(age, 1),
        "batches": progress["totals"]["batches"],
        "events_total": progress["totals"]["input"],
        "input_rows_per_second": last.get("inputRowsPerSecond"),
        "processed_rows_per_second": last.get("processedRowsPerSecond"),
        "recent_batch_seconds_max": max(durations) if durations else None,
        "recent_error_rate": round(bad / inputs, 4) if inputs else 0.0,
        "recent_latency_p99_ms_max": max(latencies) if latencies else None,
        "recent_arrival_lag_seconds_max": round(max(lags), 1) if lags else None,
        "last_commit": batches[-1]["committed_at"] if batches else None,
        "scored_since_deployment": bool(last_commit and endpoint_modified and last_commit > endpoint_modified),
    }
    if progress["state"] != "RUNNING":
        problems.append(f"the job reports {progress['state']}: {progress.get('error') or 'no error recorded'}")
    if age > max_progress_age_seconds:
        problems.append(f"no progress for {age:.0f}s (limit {max_progress_age_seconds:.0f}s): the driver is hung or gone")
    if durations and max(durations) > max_batch_seconds:
        problems.append(f"a recent micro-batch took {max(durations):.0f}s (limit {max_batch_seconds:.0f}s): the job is "
                        f"falling behind or waiting for the endpoint")
    if inputs >= 20 and bad / inputs > max_error_rate:
        problems.append(f"{bad} of the last {inputs} events ({bad / inputs:.1%}) were quarantined, had no feature "
                        f"snapshot or were rejected by the endpoint (limit {max_error_rate:.0%}); see {settings.lake}/errors/stream_events/")
    # Falling behind: the last batches all wrote events long after they reached the stream. (One
    # batch's input rate above its processing rate is only a burst; the rates are in the metrics.)
    if len(lags) >= 3 and min(lags[-3:]) > max_lag_seconds:
        problems.append(f"the last 3 batches wrote events up to {lags[-1]:.0f}s after they reached the stream "
                        f"(limit {max_lag_seconds:.0f}s): the job is falling behind its input")
    return metrics, problems


@failing_fast
def check_health(run: dict, endpoint: dict, log: logging.Logger, **limits: float) -> dict:
    """Assess the run; raise StreamingHealthError with every problem found."""
    progress = read_progress(run["run_id"])
    now = dt.datetime.now(dt.UTC)
    started = _parse(run.get("started_on")) or now
    metrics, problems = assess(progress, now, started_on=started, endpoint_modified=_parse(endpoint.get("last_modified")),
                               **limits)
    log.info("streaming health: %s", metrics)
    if problems:
        raise StreamingHealthError(
            f"streaming job run {run['run_id']} is unhealthy: " + "; ".join(problems)
            + f". Progress: {root()}/runs/{run['run_id']}/progress.json"
        )
    return metrics
