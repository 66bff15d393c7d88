"""Glue: a run of a Glue job the CloudFormation template defines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.hooks.glue import GlueJobHook
from airflow.providers.amazon.aws.operators.glue import GlueJobOperator

from churn_ml import inputs
from churn_ml.cost.usage import glue_job_run_usage
from churn_ml.errors import CannotSucceedOnRetry, fail_fast
from churn_ml.job_logs import CloudWatchLog, JobLogMixin
from churn_ml.operators.base import Found, IdentifiedJobMixin, superseded
from churn_ml.operators.cost import JobCostMixin

RUNNING = ("STARTING", "RUNNING", "WAITING")
SUCCEEDED = ("SUCCEEDED",)
IDENTITY_ARG = "--job-identity"
INPUT_DIGEST_ARG = "--input-digest"
LOOKUP_PAGES = 20  # GetJobRuns pages (200 runs each, newest first) searched for a run's identity
DEFAULT_LOG_GROUP = "/aws-glue/jobs"  # a run's LogGroupName when the job sets none; logs in <group>/output and /error


class GlueJobDefinitionError(CannotSucceedOnRetry, RuntimeError):
    """A DAG asked for a Glue job the template does not define, or to change a job's definition."""


class StartOnlyGlueJobHook(GlueJobHook):
    """GlueJobHook that starts runs of an existing job and never creates or updates one.

    The CloudFormation template owns the Glue jobs' definitions (role, security configuration,
    logging, timeout, workers, script and library). The provider's ``update_config=True`` would
    call UpdateJob with the operator's few fields, which replaces the whole definition (dropping
    the security configuration and the template's default arguments); and a job the template does
    not define would be created with the provider's defaults. Both refuse here instead.
    """

    def get_or_create_glue_job(self) -> str:
        if self.job_name is None or not self.has_job(self.job_name):
            raise GlueJobDefinitionError(
                f"Glue job {self.job_name} does not exist: the stack of infra/cloudformation/churn.yaml defines the "
                "Glue jobs (deploy or update it); the DAGs only start runs of them"
            )
        return self.job_name

    def create_or_update_glue_job(self) -> str:
        raise GlueJobDefinitionError(
            f"refusing to create or update Glue job {self.job_name}: its definition is the CloudFormation template's"
        )

    def update_job(self, **job_kwargs: Any) -> bool:
        raise GlueJobDefinitionError(
            f"refusing to update Glue job {job_kwargs.get('Name', self.job_name)}: its definition is the "
            "CloudFormation template's"
        )


class SparkOnGlueOperator(JobLogMixin, JobCostMixin, IdentifiedJobMixin, GlueJobOperator):
    """StartJobRun of a Glue job the template defines, identified like every job of this project.

    StartJobRun only (``StartOnlyGlueJobHook``): the job's definition is the template's and is never
    updated from here. The run's own arguments (``script_args``) name the code version it runs
    (``--scriptLocation`` and ``--extra-py-files``, which override the definition's for one run),
    the input fingerprint (``--input-digest``) and the identity (``--job-identity``), by which a
    later try finds the run in GetJobRuns: running or succeeded, it is reused; failed, stopped or
    timed out, the next attempt is ``-rN``. Glue has no idempotency token: a try killed between its
    StartJobRun and recording the run id is found the same way.

    The provider's ``resume_glue_job_on_retry`` is off: it looks for the earlier try's run id in the
    task's XCom (which Airflow 3 clears when a new try starts) and then scans for a run of the same
    dag/task/run ids, reusing it only while it runs, so a clear with nothing changed would start the
    job again and a clear after a data change would re-attach to the stale run still running.
    """

    aws_hook_class = StartOnlyGlueJobHook
    template_fields: Sequence[str] = (*GlueJobOperator.template_fields, "inputs")
    job_kind, cost_service = "Glue job run", "glue"

    def __init__(self, *, inputs: list[dict] | None = None, **kwargs: Any) -> None:
        if kwargs.get("update_config") or kwargs.get("create_job_kwargs"):
            raise GlueJobDefinitionError(
                "SparkOnGlueOperator never creates or updates a Glue job: the template defines it (per-run sizing "
                "goes in run_job_kwargs, StartJobRun's own WorkerType/NumberOfWorkers)"
            )
        kwargs["update_config"] = False
        kwargs["resume_glue_job_on_retry"] = False
        kwargs.setdefault("deferrable", True)
        super().__init__(**kwargs)
        self.inputs = inputs or []

    def execute(self, context: Any) -> str:
        with fail_fast(f"{self.task_id}: "):
            return self._start_or_reuse(context)

    def _start_or_reuse(self, context: Any) -> str:
        self.hook.get_or_create_glue_job()  # an undefined job fails here, at once
        args = {k: v for k, v in self.script_args.items() if k != IDENTITY_ARG}
        fingerprint = inputs.fingerprint(self.inputs) if self.inputs else None
        if fingerprint:
            args[INPUT_DIGEST_ARG] = fingerprint["digest"]
        identity = self.job_identity(
            context, self.job_name, {"JobName": self.job_name, "Arguments": args, **self.run_job_kwargs},
            inputs=fingerprint,
        )
        runs = self._runs()
        name, found = self.find_attempt(identity, lambda attempt: self._lookup(attempt, runs),
                                        usable=lambda job: self._current(job, identity, runs))
        self.script_args = {**args, IDENTITY_ARG: name}
        if found is not None:
            self._job_run_id = found.job["Id"]
            if found.state == "succeeded":
                self.record_job_cost(context, self._job_run_id)
                return self._job_run_id
        return super().execute(context)  # starts a run, or (with _job_run_id set) waits for the found one

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> str:
        """The provider's, after the run's output and error logs are printed into the task log (``job_logs``)."""
        try:
            return super().execute_complete(context, event)
        finally:
            self.print_job_log(event)
            self.record_job_cost(context, (event or {}).get("run_id"))

    def job_answer(self, name: str) -> tuple[str, dict]:
        """The run (GetJobRun), recorded under its identity (``--job-identity``)."""
        run = self.hook.conn.get_job_run(JobName=self.job_name, RunId=name)["JobRun"]
        return (run.get("Arguments") or {}).get(IDENTITY_ARG) or name, run

    def job_usages(self, answer: dict) -> list:
        return [glue_job_run_usage(answer)]  # DPUSeconds, or ExecutionTime x capacity

    def job_log_sources(self, event: dict[str, Any]) -> list[CloudWatchLog]:
        """The run's ``<LogGroupName>/error`` and ``/output`` streams (named by the run id), as Glue writes them."""
        run_id = event.get("run_id")
        if not run_id:
            return []
        run = self.hook.conn.get_job_run(JobName=self.job_name, RunId=run_id)["JobRun"]
        group = run.get("LogGroupName") or DEFAULT_LOG_GROUP
        return [CloudWatchLog(f"{group}/output", run_id, f"output of Glue run {run_id}"),
                CloudWatchLog(f"{group}/error", run_id, f"error log of Glue run {run_id}")]

    def _runs(self) -> list[dict]:
        """The job's runs this project started (those with ``--job-identity``), newest first (GetJobRuns)."""
        runs = []
        for number, page in enumerate(self.hook.conn.get_paginator("get_job_runs").paginate(JobName=self.job_name)):
            runs += [run for run in page.get("JobRuns", []) if (run.get("Arguments") or {}).get(IDENTITY_ARG)]
            if number + 1 >= LOOKUP_PAGES:
                break
        return runs

    def _current(self, job: dict, identity, runs: list[dict]) -> bool:
        """Whether a succeeded run's outputs are still its own: no later run of the task and date succeeded."""
        later = [(run["Arguments"][IDENTITY_ARG], run["StartedOn"]) for run in runs if run["JobRunState"] in SUCCEEDED]
        replaced_by = superseded(identity, job["Arguments"][IDENTITY_ARG], job["StartedOn"], later)
        if replaced_by:
            self.log.info("%s %s was followed by %s, which replaced its outputs", self.job_kind, job["Id"], replaced_by)
        return replaced_by is None

    @staticmethod
    def _lookup(name: str, runs: list[dict]) -> Found | None:
        """The newest run whose ``--job-identity`` is ``name``."""
        named = [run for run in runs if run["Arguments"][IDENTITY_ARG] == name]
        if not named:
            return None
        run = max(named, key=lambda run: run["StartedOn"])
        status = run["JobRunState"]
        return Found.of(status, run, RUNNING, SUCCEEDED)
