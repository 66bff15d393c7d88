"""EMR Serverless: a Spark job run; locally, ``spark-submit`` of the same jobDriver."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.amazon.aws.operators.emr import EmrServerlessStartJobOperator
from airflow.providers.amazon.aws.triggers.emr import EmrServerlessStartJobTrigger

from churn_ml import inputs
from churn_ml.errors import fail_fast
from churn_ml.operators.base import Found, IdentifiedJobMixin

RUNNING = ("SUBMITTED", "PENDING", "SCHEDULED", "RUNNING", "QUEUED")
SUCCEEDED = ("SUCCESS",)
LOOKBACK = dt.timedelta(days=90)  # how far back a run is looked up by name (ListJobRuns createdAtAfter)
INPUT_DIGEST_ARG = "--input-digest"


class SparkOnEmrServerlessOperator(IdentifiedJobMixin, EmrServerlessStartJobOperator):
    """StartJobRun named by the job's identity (code version, input fingerprint, request).

    ``inputs`` (templated input specs) are fingerprinted at execute; the digest is appended to the
    job's arguments (``--input-digest``: visible in the request, and the jobs ignore it), so a changed
    input is a changed request. The run is looked up by name with ListJobRuns first: a running or
    succeeded run is reused, a failed or cancelled one makes the next attempt ``-rN``. The name is
    also the ``clientToken``, so a retry racing its earlier try's StartJobRun gets the same run back.
    """

    template_fields: Sequence[str] = (*EmrServerlessStartJobOperator.template_fields, "inputs")
    job_kind = "EMR Serverless job run"

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
        self.name, found = self.find_attempt(identity, self._lookup)
        self.client_request_token = self.name
        if found is None:
            return super().execute(context, event)
        self.job_id = found.job["id"]
        self.persist_links(context)
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

    def _lookup(self, name: str) -> Found | None:
        """The newest run of the application named ``name`` within LOOKBACK (ListJobRuns), if any."""
        after = dt.datetime.now(dt.UTC) - LOOKBACK
        newest = None
        for page in self.hook.conn.get_paginator("list_job_runs").paginate(
            applicationId=self.application_id, createdAtAfter=after
        ):
            for run in page.get("jobRuns", []):
                if run.get("name") == name and (newest is None or run["createdAt"] > newest["createdAt"]):
                    newest = run
        if newest is None:
            return None
        status = newest["state"]
        state = "running" if status in RUNNING else "succeeded" if status in SUCCEEDED else "failed"
        return Found(state, status, newest)
