"""
### churn_streaming — keeps the near-real-time scoring job running and healthy (every 5 minutes)

Events on the Kinesis stream are scored within seconds by a long-running Spark Structured Streaming
job (`include/jobs/churn_stream_scoring.py`: Glue streaming job on AWS, a detached local Spark process on
the local target) that calls the SageMaker endpoint and writes `stream_predictions/dt=/hour=/batch_id=/`.

1. **ensure_endpoint** — the endpoint must be serving (InService, or Updating during a blue/green
   deployment). If it is missing or failed, redeploy with `churn_training`.
2. **ensure_streaming_job** — a run in progress is left alone; otherwise a run is started, and it
   resumes from its checkpoint (after a failure, the task log says why the last run failed). The
   job scores through the endpoint by name, so a newly deployed model is used by the next batch.
3. **check_health** — registers the days of `stream_predictions/` in the Glue Data Catalog (and drops
   the days whose data expired: `churn_ml.catalog`); then, from the run's `progress.json`: progress age, batch duration, lag from the
   stream to the prediction, share of quarantined/unscorable events (input and processing rates
   are reported), and whether a batch was scored since the endpoint last changed. Fails with what
   is wrong; the limits are DAG params.

**Stopping** is explicit: pause this DAG, then trigger `churn_streaming_stop` (or run
`python -m local_aws.glue_streaming stop` on the local target). This DAG never stops the job.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import Param, chain, dag, task

from churn_ml.dag_support import DEFAULT_ARGS, OWNER, USER_MACROS

# Every run is the next check: no retries, no overlap, no catch-up.
STREAMING_ARGS = {**DEFAULT_ARGS, "retries": 0}


@dag(
    dag_id="churn_streaming",
    schedule="*/5 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(minutes=10),
    default_args=STREAMING_ARGS,
    user_defined_macros=USER_MACROS,
    params={
        "max_progress_age_seconds": Param(120, type="number", minimum=10),
        "max_batch_seconds": Param(60, type="number", minimum=1),
        "max_error_rate": Param(0.05, type="number", minimum=0, maximum=1),
        "max_lag_seconds": Param(120, type="number", minimum=1),
        "startup_grace_seconds": Param(300, type="number", minimum=0),
    },
    tags=["churn", "streaming", "kinesis", "glue"],
    doc_md=__doc__,
)
def churn_streaming():
    @task
    def ensure_endpoint() -> dict:
        """The endpoint the job scores with is serving."""
        import logging

        from churn_ml import stream_job

        return stream_job.ensure_endpoint(logging.getLogger("airflow.task"))

    @task
    def ensure_streaming_job() -> dict:
        """A run of the streaming job is in progress (started or restarted from its checkpoint if not)."""
        import logging

        from churn_ml import stream_job

        return stream_job.ensure_job(logging.getLogger("airflow.task"))

    @task
    def check_health(run: dict, endpoint: dict, params: dict | None = None) -> dict:
        """Register the stream's prediction partitions in the catalog; fail with a clear message when the run is not
        keeping up, not progressing or erroring."""
        import logging

        from churn_ml import catalog, stream_job

        catalog.register_present("stream_predictions")  # the days the job wrote; expired ones dropped

        limits = {k: float(params[k]) for k in ("max_progress_age_seconds", "max_batch_seconds", "max_error_rate",
                                                  "max_lag_seconds", "startup_grace_seconds")}
        return stream_job.check_health(run, endpoint, logging.getLogger("airflow.task"), **limits)

    endpoint = ensure_endpoint()
    run = ensure_streaming_job()
    chain(endpoint, run)
    check_health(run, endpoint)


@dag(
    dag_id="churn_streaming_stop",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"owner": OWNER, "retries": 0},
    user_defined_macros=USER_MACROS,
    tags=["churn", "streaming", "glue"],
    doc_md="""
### churn_streaming_stop — stops the streaming scoring job (manual trigger only)

Pause `churn_streaming` first, or its next run starts the job again. The job stops after the batch
in flight; its checkpoint stays, so the next start resumes where it stopped.
""",
)
def churn_streaming_stop():
    @task
    def stop_streaming_job() -> dict | None:
        import logging

        from churn_ml import stream_job

        return stream_job.stop_job(logging.getLogger("airflow.task"))

    stop_streaming_job()


churn_streaming()
churn_streaming_stop()
