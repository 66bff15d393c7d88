"""What every job-starting operator shares: the job's identity, finding the job it names, and triggers
that poll with the operator's own connection settings.

**A job is identified by its code, its inputs and its request.** ``job_identity`` hashes

- the request as the service receives it, which names the code version it runs: every script,
  library and source bundle is an immutable object under ``code/<version>/`` of the artifacts
  bucket (``churn_ml.artifacts``), so changed code is a changed request;
- the fingerprint of what the job reads (``churn_ml.inputs``: keys, sizes and ETags of its input
  partitions, from a listing), for the jobs that declare their inputs;
- the run param ``recompute``, when set: the DAG run and its clear number, so that run starts new
  jobs (a retry within it still finds the job it started);

with the dag id and logical date, into the job's name (``naming.job_name``). ``find_attempt`` then
looks that name up with the service's own Describe/List call: a job that runs or succeeded is
reused (the task log says which and why); a failed or stopped one, or a completed one whose outputs
are gone, makes the next attempt ``<name>-rN``. So a retry, or a clear with nothing changed, finds
the job its earlier try started and recomputes nothing; any change of code or inputs is a new job.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger
from airflow.sdk.exceptions import AirflowFailException

from churn_ml import naming
from churn_ml import settings as cfg

MAX_ATTEMPTS = 99


class TriggerWithHookParams:
    """Defer with the operator's own region, ``verify`` and botocore config in the trigger, polling
    at most every ``CHURN_JOB_POLL_SECONDS`` when that is set.

    The provider's operators build their triggers from ``aws_conn_id`` alone, so a trigger would
    poll another region, or with other TLS or retry settings, than the operator's hook did. Each of
    the three the trigger's constructor accepts and was not given is filled in here, for the
    triggers this project creates and the provider's alike.
    """

    def defer(self, *, trigger: Any, **kwargs: Any) -> Any:
        if isinstance(trigger, AwsBaseWaiterTrigger):
            accepted = inspect.signature(type(trigger).__init__).parameters
            for name in ("region_name", "verify", "botocore_config"):
                value = getattr(self, name, None)
                if name in accepted and value is not None and getattr(trigger, name, None) is None:
                    setattr(trigger, name, value)
            poll = cfg.job_poll_seconds()
            if poll and trigger.waiter_delay > poll:  # poll more often, for the same total wait
                budget = trigger.waiter_delay * trigger.attempts
                trigger.waiter_delay, trigger.attempts = poll, -(-budget // poll)
        return super().defer(trigger=trigger, **kwargs)


class Found(NamedTuple):
    """A job the service knows under a name: ``state`` is running, succeeded or failed (failed,
    stopped, cancelled, timed out); ``status`` the service's own word; ``job`` its Describe answer."""

    state: str
    status: str
    job: dict

    @classmethod
    def of(cls, status: str, job: dict, running: tuple[str, ...], succeeded: tuple[str, ...]) -> Found:
        """``job`` with the service's ``status`` classified by the service's running and succeeded words."""
        return cls("running" if status in running else "succeeded" if status in succeeded else "failed", status, job)


class JobIdentity(NamedTuple):
    name: str
    code_version: str | None
    inputs: dict | None
    recompute: str | None

    def why(self) -> str:
        parts = [f"code version {self.code_version or '(none named)'}"]
        if self.inputs is not None:
            parts.append(f"inputs {self.inputs['digest']} ({self.inputs['objects']} objects, {self.inputs['bytes']} bytes)")
        parts.append("request")
        text = ", ".join(parts[:-1]) + " and " + parts[-1]
        return text + (f" (recompute requested: {self.recompute})" if self.recompute else "")


_CODE = re.compile(r"/code/([0-9a-f]{8,64})/")


def code_versions(request: object) -> list[str]:
    """The code versions a request names (``.../code/<version>/...`` URIs anywhere in it)."""
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, str):
            found.update(_CODE.findall(value))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(request)
    return sorted(found)


def superseded(identity: JobIdentity, job_name: str, started: Any, later: list[tuple[str, Any]]) -> str | None:
    """The name of a job of the same task and date (``<prefix>-<yyyymmdd>-``, another identity) that
    succeeded after ``job_name`` started at ``started``: it replaced that job's output partitions, so
    reusing ``job_name`` would leave them as the later job wrote them (inputs A, then B, then A
    again). ``later``: (name, started) of the succeeded jobs the service lists."""
    stem = identity.name.rsplit("-", 1)[0] + "-"
    for name, when in later:
        if name.startswith(stem) and not name.startswith(identity.name) and when > started and name != job_name:
            return name
    return None


def run_key(context: Any) -> tuple[str, str]:
    logical_date = context.get("logical_date")
    return context["dag"].dag_id, logical_date.isoformat() if logical_date else context["run_id"]


def recompute_token(context: Any) -> str | None:
    """The run and its clear number when the run param ``recompute`` is set, else None."""
    params = context.get("params") or {}
    if not params.get("recompute"):
        return None
    dag_run = context.get("dag_run")
    return f"{context['run_id']}/clear-{getattr(dag_run, 'clear_number', 0) or 0}"


class IdentifiedJobMixin(TriggerWithHookParams):
    """Identity and re-attach for the operators that start a job (see the module docstring)."""

    job_kind = "job"  # what the log calls this operator's jobs

    def job_identity(self, context: Any, prefix: str, request: object, *, inputs: dict | None = None,
                     max_len: int = naming.MAX_LEN) -> JobIdentity:
        dag_id, logical_date = run_key(context)
        versions = code_versions(request)
        if len(versions) > 1:
            raise AirflowFailException(
                f"the request of {self.task_id} names several code versions ({', '.join(versions)}): a job runs one "
                "version of include/; render every code URI from {{ churn.code }}"
            )
        recompute = recompute_token(context)
        payload = {"request": request, "inputs": inputs["digest"] if inputs else None, "recompute": recompute}
        identity = JobIdentity(naming.job_name(prefix, dag_id, logical_date, payload, max_len=max_len),
                               versions[0] if versions else None, inputs, recompute)
        if identity.code_version:
            from churn_ml import artifacts

            artifacts.mark_used(identity.code_version)  # keeps the version from the retention rule
        ti = context.get("ti")
        if ti is not None:
            ti.xcom_push(key="job_identity", value={
                "name": identity.name, "code_version": identity.code_version,
                "inputs": inputs, "recompute": recompute,
            })
        return identity

    def find_attempt(self, identity: JobIdentity, lookup: Callable[[str], Found | None], *,
                     max_len: int = naming.MAX_LEN, usable: Callable[[dict], bool] | None = None
                     ) -> tuple[str, Found | None]:
        """The name to use, ``identity.name`` or ``<name>-rN``, and the job found under it (None: start it).

        Reused: a job that runs, or that succeeded (and whose outputs ``usable`` says are still there).
        A failed or stopped one, or one whose outputs are gone, moves on to the next attempt's name.
        """
        base = name = identity.name
        for attempt in range(2, MAX_ATTEMPTS + 1):
            found = lookup(name)
            if found is None:
                self.log.info("starting %s %s: %s", self.job_kind, name, identity.why())
                return name, None
            if found.state == "running" or (found.state == "succeeded" and (usable is None or usable(found.job))):
                self.log.info(
                    "reusing %s %s (%s): it was started for the same %s, by an earlier try or run of this task. "
                    "A retry or a clear with nothing changed finds the job it started; to run it again anyway, "
                    "trigger the run with the param recompute=true", self.job_kind, name, found.status, identity.why(),
                )
                return name, found
            if found.state == "succeeded":
                self.log.info("%s %s succeeded, but its outputs are no longer the ones it wrote (published, cleared, "
                              "or replaced by a later job of this task and date): running it again", self.job_kind, name)
            else:
                self.log.info("%s %s ended %s: starting a new attempt", self.job_kind, name, found.status)
            suffix = f"-r{attempt}"
            name = f"{base[: max_len - len(suffix)]}{suffix}"
        raise AirflowFailException(
            f"{MAX_ATTEMPTS - 1} attempts of {self.job_kind} {base} failed: fix the cause (see the last attempt's "
            "log), then change the request or trigger the run with recompute=true"
        )
