"""EMR Serverless: a Spark job run; locally, ``spark-submit`` of the same jobDriver."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.exceptions import AirflowException
from airflow.providers.amazon.aws.operators.emr import EmrServerlessStartJobOperator
from airflow.providers.amazon.aws.triggers.emr import EmrServerlessStartJobTrigger
from botocore.exceptions import ClientError

from churn_ml import inputs
from churn_ml.cost.usage import emr_serverless_usage
from churn_ml.errors import fail_fast
from churn_ml.job_logs import CloudWatchLog, JobLogMixin, S3Log
from churn_ml.operators.base import Found, IdentifiedJobMixin, superseded
from churn_ml.operators.cost import JobCostMixin

RUNNING = ("SUBMITTED", "PENDING", "SCHEDULED", "RUNNING", "QUEUED")
SUCCEEDED = ("SUCCESS",)
LOOKBACK = dt.timedelta(days=90)  # how far back a run is looked up by name (ListJobRuns createdAtAfter)
INPUT_DIGEST_ARG = "--input-digest"
CLOUDWATCH_DEFAULT_GROUP = "/aws/emr-serverless"  # cloudWatchLoggingConfiguration without a logGroupName


class SparkOnEmrServerlessOperator(JobLogMixin, JobCostMixin, IdentifiedJobMixin, EmrServerlessStartJobOperator):
    """StartJobRun named by the job's identity (code version, input fingerprint, request).

    ``inputs`` (templated input specs) are fingerprinted at execute; the digest is appended to the
    job's arguments (``--input-digest``: visible in the request, and the jobs ignore it), so a changed
    input is a changed request. The run is looked up by name with ListJobRuns first: a running or
    succeeded run is reused, a failed or cancelled one makes the next attempt ``-rN``. The name is
    also the ``clientToken``, so a retry racing its earlier try's StartJobRun gets the same run back.
    """

    template_fields: Sequence[str] = (*EmrServerlessStartJobOperator.template_fields, "inputs")
    job_kind, cost_service = "EMR Serverless job run", "emr-serverless"

    def __init__(self, *, job_name_prefix: str, inputs: list[dict] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("deferrable", True)
        super().__init__(**kwargs)
        self.job_name_prefix = job_name_prefix
        self.inputs = inputs or []

    def execute(self, context: Any, event: dict[str, Any] | None = None) -> str | None:
        with fail_fast(f"{self.task_id}: "):
            return self._start_or_reuse(context, event)

    def _start_or_reuse(self, context: Any, event: dict[str, Any] | None) -> str | None:
        submit = self.job_driver["sparkSubmit"]
        arguments = list(submit.get("entryPointArguments") or [])
        if self.inputs and INPUT_DIGEST_ARG not in arguments:
            fingerprint = inputs.fingerprint(self.inputs)
            submit["entryPointArguments"] = [*arguments, INPUT_DIGEST_ARG, fingerprint["digest"]]
        else:
            fingerprint = None
        identity = self.job_identity(
            context, self.job_name_prefix,
            {"jobDriver": self.job_driver, "configurationOverrides": self.configuration_overrides},
            inputs=fingerprint,
        )
        runs = self._runs()
        self.name, found = self.find_attempt(identity, lambda name: self._lookup(name, runs),
                                             usable=lambda job: self._current(job, identity, runs))
        self.client_request_token = self.name
        if found is None:
            return super().execute(context, event)
        self.job_id = found.job["id"]
        self.persist_links(context)
        if found.state == "succeeded":
            self.record_job_cost(context, self.job_id)
        if found.state == "succeeded" or not self.wait_for_completion:
            return self.job_id
        self.defer(
            trigger=EmrServerlessStartJobTrigger(
                application_id=self.application_id, job_id=self.job_id, waiter_delay=self.waiter_delay,
                waiter_max_attempts=self.waiter_max_attempts, aws_conn_id=self.aws_conn_id,
                cancel_on_kill=self.cancel_on_kill,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.waiter_max_attempts * self.waiter_delay),
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> str | None:
        """The provider's, after the driver's stdout and stderr are printed into the task log (``job_logs``).

        On a failure the provider cancels the run, which EMR Serverless refuses for a run that already
        ended (ValidationException): the task then fails with the run's own state and reason instead."""
        try:
            return super().execute_complete(context, event)
        except ClientError as err:
            details = (event or {}).get("job_details") or {}
            run = self.hook.conn.get_job_run(applicationId=details.get("application_id") or self.application_id,
                                             jobRunId=details.get("job_id"))["jobRun"]
            raise AirflowException(
                f"EMR Serverless job run {run['jobRunId']} ({run.get('name')}) is {run['state']}: "
                f"{run.get('stateDetails') or 'no reason given'}. Its driver's log is printed above."
            ) from err
        finally:
            self.print_job_log(event)
            self.record_job_cost(context, ((event or {}).get("job_details") or {}).get("job_id"))

    def job_answer(self, name: str) -> tuple[str, dict]:
        """The run (GetJobRun), recorded under the run's name (its identity)."""
        run = self.hook.conn.get_job_run(applicationId=self.application_id, jobRunId=name)["jobRun"]
        return run.get("name") or name, run

    def job_usages(self, answer: dict) -> list:
        return emr_serverless_usage(answer)  # billedResourceUtilization

    def job_log_sources(self, event: dict[str, Any]) -> list[S3Log | CloudWatchLog]:
        """The driver's ``stdout.gz`` and ``stderr.gz`` under the request's S3 ``logUri``
        (``<logUri>/applications/<app>/jobs/<run>/SPARK_DRIVER/``), and its CloudWatch streams when the
        request enables them, as EMR Serverless writes them."""
        details = event.get("job_details") or {}
        application_id, run_id = details.get("application_id") or self.application_id, details.get("job_id")
        if not run_id:
            return []
        monitoring = (self.configuration_overrides or {}).get("monitoringConfiguration") or {}
        sources: list[S3Log | CloudWatchLog] = []
        log_uri = (monitoring.get("s3MonitoringConfiguration") or {}).get("logUri")
        if log_uri:
            prefix = f"{log_uri.rstrip('/')}/applications/{application_id}/jobs/{run_id}/SPARK_DRIVER/"
            sources += [S3Log(f"{prefix}stdout.gz", f"driver stdout of EMR Serverless run {run_id}"),
                        S3Log(f"{prefix}stderr.gz", f"driver stderr of EMR Serverless run {run_id}")]
        cloudwatch = monitoring.get("cloudWatchLoggingConfiguration") or {}
        if cloudwatch.get("enabled"):
            stream_prefix = (cloudwatch.get("logStreamNamePrefix") or "").rstrip("/")
            sources.append(CloudWatchLog(cloudwatch.get("logGroupName") or CLOUDWATCH_DEFAULT_GROUP,
                                         f"{stream_prefix}/applications/{application_id}/jobs/{run_id}/SPARK_DRIVER/",
                                         f"driver log of EMR Serverless run {run_id}"))
        if not sources:
            self.log.info("EMR Serverless run %s: the request names no monitoringConfiguration, so its driver's "
                          "log is only in the EMR Studio console", run_id)
        return sources

    def _runs(self) -> list[dict]:
        """The application's job runs of the last LOOKBACK (ListJobRuns)."""
        after = dt.datetime.now(dt.UTC) - LOOKBACK
        pages = self.hook.conn.get_paginator("list_job_runs").paginate(applicationId=self.application_id,
                                                                        createdAtAfter=after)
        return [run for page in pages for run in page.get("jobRuns", [])]

    def _current(self, job: dict, identity, runs: list[dict]) -> bool:
        """Whether a succeeded run's outputs are still its own: no later run of the task and date succeeded."""
        later = [(r["name"], r["createdAt"]) for r in runs if r.get("state") in SUCCEEDED and r.get("name")]
        replaced_by = superseded(identity, job["name"], job["createdAt"], later)
        if replaced_by:
            self.log.info("%s %s was followed by %s, which replaced its outputs", self.job_kind, job["name"], replaced_by)
        return replaced_by is None

    @staticmethod
    def _lookup(name: str, runs: list[dict]) -> Found | None:
        """The newest run named ``name``, if any."""
        named = [run for run in runs if run.get("name") == name]
        if not named:
            return None
        newest = max(named, key=lambda run: run["createdAt"])
        status = newest["state"]
        return Found.of(status, newest, RUNNING, SUCCEEDED)
