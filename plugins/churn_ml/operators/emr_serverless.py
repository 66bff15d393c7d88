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
from churn_ml.operators.base import Found, IdentifiedJobMixin, superseded

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
        runs = self._runs()
        self.name, found = self.find_attempt(identity, lambda name: self._lookup(name, runs),
                                             usable=lambda job: self._current(job, identity, runs))
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
