"""EMR Serverless and Glue on the control plane: moto's backends, subclassed, with ``spark-submit`` behind the runs.

``LocalEMRServerlessBackend`` and ``LocalGlueBackend`` are the classes moto instantiates for the two
services (``local_aws.moto_ext.register_backend``), so every operation in ``EMULATED_OPERATIONS``
reads and writes one state: Create, Get, List (with its filters), tags and Delete agree. That state
is also written to files under ``LAKE_ROOT/.control-plane/`` (``emr-serverless/applications/<id>.json``,
``glue/jobs/<name>.json``, ``glue/tags.json``, and each run's ``api-record.json`` in its job folder
``spark/job-runs/<run id>/``), and read back when a control plane starts, so a restart loses no
application, job or run. A run whose worker died meanwhile is FAILED with the worker's last error
(``local_aws.jobs``).

EMR Serverless applications have AWS's lifecycle, each step taking ``TRANSITION_SECONDS`` so that
waiters see it: CreateApplication answers CREATING, then CREATED; StartApplication (or a StartJobRun
on a CREATED or STOPPED application whose ``autoStartConfiguration`` is enabled, AWS's default)
STARTING, then STARTED; StopApplication (refused while runs have not ended, as AWS does) or the
auto-stop after ``autoStopConfiguration.idleTimeoutMinutes`` without a run (AWS's default, 15 minutes,
is kept) STOPPING, then STOPPED; DeleteApplication (of a CREATED or STOPPED application only)
TERMINATED, which GetApplication and ListApplications keep answering as AWS does (the provider's
``serverless_app_terminated`` waiter waits for that state). The application the DAGs use
(``CHURN_EMR_APPLICATION_ID``) exists from the control plane's first start, CREATED with auto-start
and auto-stop as the template defines it, so its first job run starts it.

A job run is real: StartJobRun starts a worker that runs the same ``jobDriver`` with ``spark-submit
--master local[N]`` (``local_aws.spark``); GetJobRun reports the worker's state (SUBMITTED, SCHEDULED,
RUNNING, SUCCESS, FAILED with the driver's error, CANCELLING, CANCELLED), CancelJobRun stops it.
StartJobRun is idempotent on ``clientToken``, as the service is: a retried task gets its earlier
run back. What a run may name (script, libraries, arguments, ``--conf``) is checked at StartJobRun
with ``local_aws.spark.check_job_request``, before the run exists: a refusal is EMR Serverless'
ValidationException, Glue's InvalidInputException (the Glue job's DefaultArguments are checked with
the run's). A Glue run runs its ``--scriptLocation`` and ``--extra-py-files`` when it sends them
(Glue's overrides of the job's script and library; the project's runs always do, for their code
version), and the checks apply to those values. A Glue run's ``LogGroupName`` is Glue's:
``/aws-glue/jobs``, or ``/aws-glue/jobs/<security configuration>-role/<role name>`` for a job with a
security configuration (the template's); its log files are ``run_log_files``.

An ended run reports what AWS would bill for the work it really ran (``_bill_run``, ``_glue_billing``). An
EMR Serverless run: ``startedAt``, ``endedAt``, ``totalExecutionDurationSeconds`` (the runner's measured
time, rounded up to the second), ``totalResourceUtilization`` and ``billedResourceUtilization`` of the
driver and executors its request sized (``spark.driver.cores``, ``spark.executor.memory``,
``spark.executor.instances``, ``spark.emr-serverless.executor.disk``, ...: ``local_aws.billing``, which
says which of AWS's rules it applies, the 1-minute minimum per worker, the memory overhead, the free 20
GB of disk per worker, and what it approximates); those settings are accepted at StartJobRun, checked
against EMR Serverless' worker sizes, and not applied to the local Spark. While a run has not ended,
neither is reported, as on AWS. A Glue batch run: ``ExecutionTime`` (the runner's measured seconds),
``CompletedOn`` (the runner's end), ``WorkerType``/``NumberOfWorkers`` and ``MaxCapacity`` (the run's
DPUs: workers x DPU per worker type, or Glue's default of 10 DPUs for a job that sets neither),
``ExecutionClass``; ``DPUSeconds`` only for a FLEX or auto-scaling (``--enable-auto-scaling``) run, as
AWS reports it only for those: there, every worker for the whole ``ExecutionTime`` (AWS counts the
executors that ran, which auto scaling may have released: an upper bound). The minimum billed
duration of a standard run is the ledger's to apply (``churn_ml.cost.usage``), as AWS reports the
measured ``ExecutionTime``.

The Glue Data Catalog (``CATALOG_OPERATIONS``: databases, tables with their versions, partitions) is
moto's, with each write saved: a database to ``glue/catalog/<database>.json``, a table with its
versions and partitions to ``glue/catalog/<database>/<table>.json`` (written aside and renamed), read
back when a control plane starts, timestamps included. The template's database and tables of the lake are
created at the start (``create_catalog``); the DAG tasks register their partitions (churn_ml.catalog).
GetPartitions' expressions are moto's
(pyparsing). Glue crawlers and every other operation of the two services are left out of
``EMULATED_OPERATIONS``: the control plane refuses them as not emulated (``local_aws.operations``).
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import logging
import math
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow
from moto.emrserverless.exceptions import ResourceNotFoundException, ValidationException
from moto.emrserverless.models import Application, EMRServerlessBackend, JobRun
from moto.emrserverless.responses import EMRServerlessResponse
from moto.glue.exceptions import (
    ConcurrentRunsExceededException,
    EntityNotFoundException,
    InvalidInputException,
    JobRunNotFoundException,
)
from moto.glue.models import FakeDatabase, FakeJob, FakeJobRun, FakePartition, FakeTable, GlueBackend
from moto.glue.responses import GlueResponse

from local_aws import jobs
from local_aws import settings as local_settings
from local_aws.common import control_plane, path_segment, read_state, write_state
from local_aws.moto_ext import overrides

RELEASE_LABEL = "emr-7.9.0"  # the template's EMR Serverless release (infra/cloudformation/churn.yaml)
TRANSITION_SECONDS = 1.0  # how long CREATING, STARTING and STOPPING last (AWS: seconds to minutes)
RECORD = "api-record.json"  # a run's API state, in its job folder
log = logging.getLogger("local_aws.spark_api")

EMR_TERMINAL_RUN_STATES = ("SUCCESS", "FAILED", "CANCELLED")
EMR_ACTIVE_RUN_STATES = ("SUBMITTED", "PENDING", "SCHEDULED", "RUNNING", "CANCELLING")
GLUE_ACTIVE_RUN_STATES = ("STARTING", "RUNNING", "STOPPING", "WAITING")


def job_dir(run_id: str) -> Path:
    return control_plane("spark", "job-runs", run_id)


# ---------------------------------------------------------------- persistence

def _encode(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$datetime"}:
            return dt.datetime.fromisoformat(value["$datetime"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _record(model: object, *, leave_out: tuple[str, ...] = ()) -> dict:
    """The model object's attributes, JSON-ready (datetimes tagged)."""
    return {k: _encode(v) for k, v in vars(model).items() if k not in leave_out}


def _restore(cls: type, record: dict) -> Any:
    """An object of ``cls`` with the attributes ``_record`` wrote (no constructor runs: the ids,
    ARNs and timestamps are the stored ones)."""
    model = cls.__new__(cls)
    model.__dict__.update(_decode(record))
    return model


def _persists(backend: Any) -> bool:
    """Only the local account's and region's backend is the control plane's state on disk."""
    from local_aws.common import LOCAL_REGION

    return (backend.account_id, backend.region_name) == (local_settings.LOCAL_ACCOUNT, LOCAL_REGION)


def _run_records(service: str) -> list[dict]:
    records = []
    for folder in sorted(control_plane("spark", "job-runs").iterdir()):
        record = read_state(folder / RECORD) if folder.is_dir() else None
        if record and record.get("service") == service:
            records.append(record["run"])
    return records


def _naive_utc(moment: dt.datetime | None) -> dt.datetime | None:
    """moto's timestamps are naive UTC; a request's may carry a zone."""
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


# ---------------------------------------------------------------- EMR Serverless

EMR_OPERATIONS = frozenset({
    "CreateApplication", "GetApplication", "ListApplications", "UpdateApplication", "StartApplication",
    "StopApplication", "DeleteApplication", "StartJobRun", "GetJobRun", "ListJobRuns", "CancelJobRun",
    "TagResource", "UntagResource", "ListTagsForResource",
})


def _spark_properties(job_driver: dict | None, configuration_overrides: dict | None) -> tuple[dict, list[str], dict]:
    """(``sparkSubmit``, ``--py-files``, Spark properties) of a StartJobRun request: the ``spark-defaults``
    classification's properties under the ``--conf`` of ``sparkSubmitParameters`` (which win, as on EMR
    Serverless); ValueError for what the local runner does not take."""
    from local_aws.spark import parse_submit_parameters

    submit = (job_driver or {}).get("sparkSubmit")
    if not isinstance(submit, dict):
        raise ValueError("jobDriver.sparkSubmit is required: the local target runs Spark jobs (sparkSubmit) only")
    defaults: dict[str, str] = {}
    for entry in (configuration_overrides or {}).get("applicationConfiguration") or []:
        if entry.get("classification") != "spark-defaults" or entry.get("configurations"):
            raise ValueError(f"applicationConfiguration {entry.get('classification')!r}: the local runner applies the "
                             "spark-defaults classification's properties only")
        defaults.update({str(k): str(v) for k, v in (entry.get("properties") or {}).items()})
    py_files, conf = parse_submit_parameters(submit.get("sparkSubmitParameters", ""))
    return submit, py_files, {**defaults, **conf}


def _worker_request(job_driver: dict | None, configuration_overrides: dict | None = None) -> dict:
    """The local runner's request for a StartJobRun's ``jobDriver`` (without the run's name), checked
    with ``spark.check_job_request``: ValueError for what the local target does not run.

    ``configurationOverrides.applicationConfiguration``'s ``spark-defaults`` properties are Spark settings
    of the run, as on EMR Serverless (``--conf`` in ``sparkSubmitParameters`` wins over them); other
    classifications configure what the local runner does not run (Hive, a log4j file): refused. The
    settings that size the workers (``billing.EMR_CAPACITY_CONF``) are checked against EMR Serverless'
    worker sizes and kept out of the local Spark: they are what the run is billed for (``_bill_run``)."""
    from local_aws import billing
    from local_aws.spark import check_job_request

    submit, py_files, properties = _spark_properties(job_driver, configuration_overrides)
    billing.emr_capacity(properties)
    conf = {k: v for k, v in properties.items() if k not in billing.EMR_CAPACITY_CONF}
    request = {"entry_point": submit.get("entryPoint"), "arguments": list(submit.get("entryPointArguments") or []),
               "py_files": py_files, "spark_conf": conf}
    check_job_request(**request)
    return request


def _utc_naive(stamp: str | None) -> dt.datetime | None:
    """An ISO timestamp of a runner's record as moto keeps its times (naive UTC)."""
    return _naive_utc(dt.datetime.fromisoformat(stamp)) if stamp else None


def _bill_run(job_run: JobRun, record: dict | None) -> None:
    """An ended run's ``startedAt``, ``endedAt``, ``totalExecutionDurationSeconds`` and resource utilization
    (total and billed: ``local_aws.billing``), from its measured time and the capacity its request asked for.

    The time is the runner's own measure (its record's ``createdAt``, ``updatedAt`` and
    ``totalExecutionDurationSeconds``); a run the runner did not end (cancelled, or its worker died) ran from
    the record's ``createdAt`` (or its worker's start) until now, when the control plane sees it ended."""
    from local_aws import billing

    worker = read_state(job_dir(job_run.id) / "worker.json") or {}
    record = record or {}
    started = _utc_naive(record.get("createdAt") or worker.get("started"))
    if started is None:
        return  # it never ran: nothing to bill, as AWS bills nothing
    if record.get("totalExecutionDurationSeconds") is not None and record.get("updatedAt"):
        ended, seconds = _utc_naive(record["updatedAt"]), float(record["totalExecutionDurationSeconds"])
    else:
        ended = utcnow()
        seconds = max(0.0, (ended - started).total_seconds())
    _, _, properties = _spark_properties(job_run.job_driver, job_run.configuration_overrides)
    total, billed = billing.emr_resource_utilization(billing.emr_capacity(properties), seconds)
    job_run.started_at, job_run.ended_at = started, ended
    job_run.total_execution_duration_seconds = math.ceil(round(seconds, 6))
    job_run.total_resource_utilization, job_run.billed_resource_utilization = total, billed


class LocalEMRServerlessBackend(EMRServerlessBackend):
    """moto's EMR Serverless state with AWS's application lifecycle, real job runs, tags, and files."""

    EMULATED_OPERATIONS = EMR_OPERATIONS

    def __init__(self, region_name: str, account_id: str):
        super().__init__(region_name, account_id)
        self._lock = threading.RLock()
        self._persist = _persists(self)
        if self._persist:
            self._load()

    # -- files
    def _applications_dir(self) -> Path:
        return control_plane("emr-serverless", "applications")

    def _load(self) -> None:
        for path in sorted(self._applications_dir().glob("*.json")):
            application = _restore(Application, read_state(path))
            self.applications[application.id] = application
        for record in sorted(_run_records("emr-serverless"), key=lambda r: r["created_at"]["$datetime"]):
            run = _restore(JobRun, record)
            self.job_runs.setdefault(run.application_id, []).append(run)

    def _save_application(self, application: Application) -> None:
        if self._persist:
            write_state(self._applications_dir() / f"{application.id}.json", _record(application))

    def _save_run(self, run: JobRun) -> None:
        if self._persist:
            write_state(job_dir(run.id) / RECORD, {"service": "emr-serverless", "run": _record(run)})

    # -- the application's lifecycle
    def _begin(self, application: Application, through: str, to: str) -> None:
        application.state, application.state_details = through, ""
        application.updated_at = utcnow()
        application.next_state, application.next_state_at = to, time.time() + TRANSITION_SECONDS
        self._save_application(application)

    def _active_runs(self, application_id: str) -> list[JobRun]:
        return [run for run in self.job_runs.get(application_id, [])
                if run.state in EMR_ACTIVE_RUN_STATES
                and self.get_job_run(application_id, run.id).state in EMR_ACTIVE_RUN_STATES]

    def _advance(self, application: Application) -> Application:
        """The state ``application`` is in now: a transition whose time has come ends; a STARTED
        application idle for longer than its auto-stop timeout begins to stop."""
        with self._lock:
            if getattr(application, "next_state", None) and time.time() >= application.next_state_at:
                application.state, application.next_state = application.next_state, None
                application.updated_at = utcnow()
                self._save_application(application)
            auto_stop = application.auto_stop_configuration or {}
            if application.state == "STARTED" and auto_stop.get("enabled", True) \
                    and not self._active_runs(application.id):
                runs = self.job_runs.get(application.id, [])
                last_active = max([application.updated_at, *(run.updated_at for run in runs)])
                idle = (utcnow() - last_active).total_seconds()
                if idle >= 60 * float(auto_stop.get("idleTimeoutMinutes", 15)):
                    log.info("application %s idle for %.0fs: auto-stop", application.id, idle)
                    self._begin(application, "STOPPING", "STOPPED")
        return application

    @overrides
    def create_application(self, name: str, release_label: str, application_type: str, client_token: str,
                           initial_capacity: str, maximum_capacity: str, tags: dict[str, str],
                           auto_start_configuration: str, auto_stop_configuration: str,
                           network_configuration: dict[str, Any] | None) -> Application:
        with self._lock:
            for earlier in self.applications.values():  # idempotent on clientToken, as the service is
                if client_token and earlier.client_token == client_token and earlier.state != "TERMINATED":
                    return earlier
            application = super().create_application(
                name=name, release_label=release_label, application_type=application_type,
                client_token=client_token, initial_capacity=initial_capacity, maximum_capacity=maximum_capacity,
                tags=tags, auto_start_configuration=auto_start_configuration,
                auto_stop_configuration=auto_stop_configuration, network_configuration=network_configuration)
            application.created_at = utcnow()  # moto records the day's midnight; AWS, the moment
            self._begin(application, "CREATING", "CREATED")
            return application

    @overrides
    def get_application(self, application_id: str) -> Application:
        return self._advance(super().get_application(application_id))

    @overrides
    def list_applications(self, states: list[str] | None) -> list[Application]:
        applications = [self._advance(a) for a in self.applications.values()]
        return [a for a in applications if not states or a.state in states]

    @overrides
    def start_application(self, application_id: str) -> None:
        with self._lock:
            application = self.get_application(application_id)
            if application.state in ("STARTING", "STARTED"):
                return
            if application.state not in ("CREATED", "STOPPED"):
                raise ValidationException(
                    f"Application {application_id} must be in one of the following statuses [CREATED, STOPPED] to "
                    f"start. Current status: {application.state}; wait until it is STOPPED")
            self._begin(application, "STARTING", "STARTED")

    @overrides
    def stop_application(self, application_id: str) -> None:
        with self._lock:
            application = self.get_application(application_id)
            if application.state in ("STOPPING", "STOPPED"):
                return
            if application.state not in ("CREATED", "STARTING", "STARTED"):
                raise ValidationException(
                    f"Application {application_id} cannot be stopped in status {application.state}")
            active = self._active_runs(application_id)
            if active:
                raise ValidationException(
                    f"Application {application_id} has job runs that have not ended "
                    f"({', '.join(f'{r.id} {r.state}' for r in active)}): cancel them (CancelJobRun, or the "
                    "provider's force_stop=True) or wait for them to end, then stop the application")
            self._begin(application, "STOPPING", "STOPPED")

    @overrides
    def delete_application(self, application_id: str) -> None:
        with self._lock:
            self.get_application(application_id)
            super().delete_application(application_id)  # CREATED or STOPPED only, else ValidationException
            application = self.applications[application_id]
            application.updated_at, application.next_state = utcnow(), None
            self._save_application(application)

    @overrides
    def update_application(self, application_id: str, initial_capacity: str | None, maximum_capacity: str | None,
                           auto_start_configuration: str | None, auto_stop_configuration: str | None,
                           network_configuration: dict[str, Any] | None) -> Application:
        with self._lock:
            self.get_application(application_id)
            application = super().update_application(
                application_id, initial_capacity, maximum_capacity, auto_start_configuration,
                auto_stop_configuration, network_configuration)
            application.updated_at = utcnow()
            self._save_application(application)
            return application

    # -- job runs
    @overrides
    def start_job_run(self, application_id: str, client_token: str, execution_role_arn: str,
                      job_driver: dict | None, configuration_overrides: dict | None, tags: dict[str, str] | None,
                      execution_timeout_minutes: int | None, name: str | None) -> JobRun:
        with self._lock:
            for earlier in self.job_runs.get(application_id, []):
                if client_token and earlier.client_token == client_token:
                    return earlier
            try:  # before moto records the run: a refused request leaves no run behind
                request = _worker_request(job_driver, configuration_overrides)
            except ValueError as err:
                raise ValidationException(f"StartJobRun: {err}") from err
            application = self.get_application(application_id)
            auto_start = (application.auto_start_configuration or {}).get("enabled", True)
            if application.state == "STOPPING" or (application.state in ("CREATED", "STOPPED") and not auto_start):
                raise ValidationException(
                    f"StartJobRun: application {application_id} is {application.state} and its "
                    f"autoStartConfiguration is {'enabled' if auto_start else 'disabled'}; start it with "
                    "StartApplication (after it is STOPPED) and submit the run again")
            job_run = super().start_job_run(
                application_id=application_id, client_token=client_token, execution_role_arn=execution_role_arn,
                job_driver=job_driver, configuration_overrides=configuration_overrides, tags=tags,
                execution_timeout_minutes=execution_timeout_minutes, name=name)
            if application.state in ("CREATED", "STOPPED"):
                log.info("application %s is %s: auto-start for job run %s", application_id, application.state,
                         job_run.id)
                self._begin(application, "STARTING", "STARTED")
            job_run.state, job_run.state_details = "SUBMITTED", ""
            job_run.tags = tags or {}
            job_run.created_at = job_run.updated_at = utcnow()  # moto records the day's midnight; AWS, the moment
            job_run.created_by = f"arn:aws:iam::{self.account_id}:root"  # required in GetJobRun; moto leaves it out
            # What AWS reports once the run has ended (_bill_run), not moto's zeros while it runs.
            job_run.total_execution_duration_seconds = None
            job_run.billed_resource_utilization = job_run.total_resource_utilization = None
            self._save_run(job_run)
            jobs.start("spark", job_dir(job_run.id), {"name": job_run.id, **request})
            return job_run

    @overrides
    def get_job_run(self, application_id: str, job_run_id: str) -> JobRun:
        if application_id in self.applications and application_id not in self.job_runs:
            raise ResourceNotFoundException(job_run_id, "JobRun")  # moto would say the application does not exist
        job_run = super().get_job_run(application_id, job_run_id)
        if job_run.state in EMR_TERMINAL_RUN_STATES:
            return job_run
        with self._lock:
            before = (job_run.state, job_run.state_details)
            folder = job_dir(job_run.id)
            # Whether the worker lives, before its record: a worker that ends in between wrote its end first.
            alive = jobs.running(folder)
            state = read_state(folder / "job-run.json")
            if job_run.state == "CANCELLING":
                if not alive:
                    job_run.state = "CANCELLED"
            elif state and state["state"] in ("SUCCESS", "FAILED"):
                job_run.state = state["state"]
                job_run.state_details = state.get("stateDetails") or ""
                if state["state"] == "FAILED":
                    job_run.state_details = jobs.last_error(folder)
            elif not alive:
                job_run.state, job_run.state_details = "FAILED", jobs.last_error(folder)
            else:
                job_run.state = "RUNNING" if state else "SCHEDULED"
            if job_run.state in EMR_TERMINAL_RUN_STATES:
                _bill_run(job_run, state)
            if (job_run.state, job_run.state_details) != before:
                job_run.updated_at = utcnow()
                self._save_run(job_run)
            return job_run

    @overrides
    def list_job_runs(self, application_id: str, created_at_after: dt.datetime | None,
                      created_at_before: dt.datetime | None, states: list[str] | None) -> list[JobRun]:
        """ListJobRuns with each run's state as GetJobRun reports it, filtered by ``states`` and the
        creation window after that refresh. An application without runs has an empty list (moto
        answers ResourceNotFound until its first run; AWS, an empty list)."""
        self.get_application(application_id)
        after, before = _naive_utc(created_at_after), _naive_utc(created_at_before)
        runs = [self.get_job_run(application_id, run.id) for run in list(self.job_runs.get(application_id, []))]
        return [run for run in runs if (not states or run.state in states)
                and (after is None or run.created_at > after) and (before is None or run.created_at < before)]

    @overrides
    def cancel_job_run(self, application_id: str, job_run_id: str) -> tuple[str, str]:
        with self._lock:
            job_run = self.get_job_run(application_id, job_run_id)
            if job_run.state in EMR_TERMINAL_RUN_STATES:
                raise ValidationException(
                    f"Job run {job_run_id} is {job_run.state}: only a run that has not ended can be cancelled")
            if job_run.state != "CANCELLING":
                jobs.stop(job_dir(job_run_id))
                job_run.state, job_run.state_details = "CANCELLING", "cancelled by CancelJobRun"
                job_run.updated_at = utcnow()
                self._save_run(job_run)
            return application_id, job_run_id

    # -- tags
    def _tagged(self, resource_arn: str) -> Application | JobRun:
        for application in self.applications.values():
            if application.arn == resource_arn:
                return application
        for runs in self.job_runs.values():
            for run in runs:
                if run.arn == resource_arn:
                    return run
        raise ResourceNotFoundException(resource_arn, "Resource")

    def tag_resource(self, resource_arn: str, tags: dict[str, str]) -> None:
        with self._lock:
            resource = self._tagged(resource_arn)
            resource.tags = {**(resource.tags or {}), **(tags or {})}
            self._save(resource)

    def untag_resource(self, resource_arn: str, tag_keys: list[str]) -> None:
        with self._lock:
            resource = self._tagged(resource_arn)
            resource.tags = {k: v for k, v in (resource.tags or {}).items() if k not in set(tag_keys or [])}
            self._save(resource)

    def list_tags_for_resource(self, resource_arn: str) -> dict[str, str]:
        return dict(self._tagged(resource_arn).tags or {})

    def _save(self, resource: Application | JobRun) -> None:
        if isinstance(resource, Application):
            self._save_application(resource)
        else:
            self._save_run(resource)


class LocalEMRServerlessResponse(EMRServerlessResponse):
    """The tag operations (``/tags/{resourceArn}``), which moto's EMR Serverless does not route."""

    EMULATED_OPERATIONS = EMR_OPERATIONS

    def _resource_arn(self) -> str:
        from urllib.parse import unquote

        return unquote(self.path.split("/tags/", 1)[1])

    def tag_resource(self) -> ActionResult:
        self.emrserverless_backend.tag_resource(self._resource_arn(), self._get_param("tags") or {})
        return EmptyResult()

    def untag_resource(self) -> ActionResult:
        keys = self.querystring.get("tagKeys") or []
        self.emrserverless_backend.untag_resource(self._resource_arn(), keys)
        return EmptyResult()

    def list_tags_for_resource(self) -> ActionResult:
        return ActionResult({"tags": self.emrserverless_backend.list_tags_for_resource(self._resource_arn())})


def create_application(backend: EMRServerlessBackend, application_id: str) -> None:
    """The application the DAGs run on, under the id they are configured with, as the template's
    ``SparkApplication`` is: CREATED, auto-start on, auto-stop after 15 idle minutes (the template's)."""
    if application_id in backend.applications:
        return
    application = backend.create_application(
        name="churn-spark", release_label=RELEASE_LABEL, application_type="SPARK", client_token=application_id,
        initial_capacity=None, maximum_capacity=None, tags={}, auto_start_configuration={"enabled": True},
        auto_stop_configuration={"enabled": True, "idleTimeoutMinutes": 15}, network_configuration=None,
    )
    backend.applications.pop(application.id)
    (backend._applications_dir() / f"{application.id}.json").unlink(missing_ok=True)
    application.arn = application.arn.replace(application.id, application_id)
    application.id = application_id
    application.state, application.next_state = "CREATED", None  # the stack was deployed before the DAGs run
    backend.applications[application_id] = application
    backend._save_application(application)


# ---------------------------------------------------------------- Glue

# The Data Catalog: databases, tables (with their versions) and partitions.
CATALOG_OPERATIONS = frozenset({
    "CreateDatabase", "GetDatabase", "GetDatabases", "UpdateDatabase", "DeleteDatabase",
    "CreateTable", "GetTable", "GetTables", "UpdateTable", "DeleteTable", "BatchDeleteTable",
    "GetTableVersion", "GetTableVersions", "DeleteTableVersion",
    "CreatePartition", "BatchCreatePartition", "GetPartition", "GetPartitions", "BatchGetPartition",
    "UpdatePartition", "BatchUpdatePartition", "DeletePartition", "BatchDeletePartition",
})
GLUE_OPERATIONS = frozenset({
    "CreateJob", "GetJob", "GetJobs", "ListJobs", "BatchGetJobs", "DeleteJob", "StartJobRun", "GetJobRun",
    "GetJobRuns", "BatchStopJobRun", "TagResource", "UntagResource", "GetTags",
}) | CATALOG_OPERATIONS


def _catalog_write(name: str):
    """moto's ``GlueBackend.<name>`` (a Data Catalog write), then the database or table it changed saved
    (``LocalGlueBackend._save_catalog``). ``functools.wraps`` keeps moto's signature, which
    ``check_overrides`` compares with the installed moto's."""
    parent = getattr(GlueBackend, name)
    signature = inspect.signature(parent)

    @functools.wraps(parent)
    def method(self, *args, **kwargs):
        arguments = signature.bind(self, *args, **kwargs).arguments
        with self._lock:
            result = parent(self, *args, **kwargs)
            self._save_catalog(arguments["database_name"], arguments.get("table_name"))
        return result

    return overrides(method)


def glue_refs(url: str) -> dict[str, str]:
    """What the template's intrinsics resolve to on the local target.

    ``CodeVersion`` keeps the template's default: the jobs' own ScriptLocation and --extra-py-files
    name no version that is built, exactly as on AWS, where every run overrides them with the current
    version (``--scriptLocation``, ``--extra-py-files``; churn_ml.artifacts.glue_code_arguments)."""
    from churn_ml import settings as cfg
    from local_aws.common import LOCAL_REGION
    from local_aws.template import load

    s = cfg.settings
    return {
        "Project": "churn", "ArtifactsBucket": s.artifacts_bucket, "LakeBucket": s.lake_bucket,
        "CodeVersion": load()["Parameters"]["CodeVersion"]["Default"],
        "AWS::Region": LOCAL_REGION, "AWS::AccountId": local_settings.LOCAL_ACCOUNT,
        "GlueJobRole.Arn": f"arn:aws:iam::{local_settings.LOCAL_ACCOUNT}:role/churn-glue", "GlueJobRole": "churn-glue",
        "GlueSecurityConfiguration": "churn-glue",
        "EventsStream.Arn": f"arn:aws:kinesis:{LOCAL_REGION}:{local_settings.LOCAL_ACCOUNT}:stream/{s.kinesis_stream}",
        "LakeDatabaseName": s.glue_database, "LakeDatabase": s.glue_database,
    }


def create_glue_jobs(backend: GlueBackend, url: str) -> None:
    """The template's Glue jobs, as the stack creates them (local_aws.template), with their security
    configuration's name (which names their log groups; the local target encrypts nothing)."""
    from local_aws.template import glue_job_requests, glue_jobs, load, resolve

    refs = glue_refs(url)
    security = {name: resolve(p.get("SecurityConfiguration"), refs) for name, p in glue_jobs(load()).items()}
    for request in glue_job_requests(refs):
        if request["Name"] in backend.jobs:
            continue
        backend.create_job(
            name=request["Name"], description=None, log_uri=None, role=request["Role"],
            execution_property=request.get("ExecutionProperty"), command=request["Command"],
            default_arguments=request.get("DefaultArguments"), non_overridable_arguments=None, connections=None,
            max_retries=None, allocated_capacity=None, timeout=request.get("Timeout"), max_capacity=None,
            security_configuration=security.get(request["Name"]), tags={}, notification_property=None,
            glue_version=request.get("GlueVersion"), number_of_workers=request.get("NumberOfWorkers"),
            worker_type=request.get("WorkerType"), code_gen_configuration_nodes=None, execution_class=None,
            source_control_details=None,
        )


def create_catalog(backend: GlueBackend, url: str) -> None:
    """The template's Glue Data Catalog database and tables (``local_aws.template.glue_catalog``), as the stack
    creates them, in this backend (saved like any catalog write): a missing one is created, a table whose
    definition the template changed is updated (a new version; its partitions kept, as UpdateTable keeps them),
    an unchanged one is left as it is."""
    from local_aws.template import glue_catalog

    databases, tables = glue_catalog(glue_refs(url))
    for database in databases:
        if database["Name"] not in backend.databases:
            backend.create_database(database["Name"], database)
    for database_name, table_input in tables:
        existing = backend.get_database(database_name).tables.get(table_input["Name"])
        if existing is None:
            backend.create_table(database_name, table_input["Name"], table_input)
        elif existing.versions[str(existing._current_version)] != table_input:
            backend.update_table(database_name, table_input["Name"], table_input)


def glue_log_group(security_configuration: str | None, role: str | None) -> str:
    """A Glue job run's LogGroupName, as Glue answers it: ``/aws-glue/jobs``, or with a security
    configuration ``/aws-glue/jobs/<configuration>-role/<role name>`` (the groups are that name plus
    ``/output`` and ``/error``; the provider's GlueJobHook appends them)."""
    if not security_configuration:
        return "/aws-glue/jobs"
    role_name = (role or "").rsplit("/", 1)[-1]
    return f"/aws-glue/jobs/{security_configuration}-role/{role_name}"


# A local streaming run's defaults (a StartJobRun argument overrides them). One state partition: the
# job's Spark shares this machine's cores with the control plane and the endpoint, and a second
# partition costs a Python worker round trip and a state store commit a batch (0.1-0.15 s on 2
# cores) for Python work of about 50 us an event.
LOCAL_STREAMING_DEFAULTS = {"--state-partitions": "1"}


def _local_streaming_arguments(arguments: dict[str, str]) -> dict[str, str]:
    """What a Glue streaming run gets from its runtime on AWS (the Kinesis connector, the SageMaker
    Runtime of the region) comes from this machine: the stream (named by the job's ``--stream-arn``)
    on the control plane's Kinesis, and the endpoints' router."""
    from churn_ml import settings as cfg
    from local_aws import control_plane as plane

    stream = (arguments.get("--stream-arn") or "").rsplit("/", 1)[-1] or cfg.settings.kinesis_stream
    return {"--source": "python", "--stream": stream,
            "--kinesis-endpoint-url": f"http://127.0.0.1:{plane.port()}",
            "--runtime-endpoint-url": f"http://127.0.0.1:{local_settings.runtime_port()}"}


def _check_glue_run(command: dict, arguments: dict[str, str]) -> None:
    """A Glue run of ``command`` with ``arguments`` as the local runners would start it, checked with
    ``spark.check_job_request`` (keys and values of the script's arguments alike): ValueError."""
    from local_aws.spark import argv, check_job_request, glue_script_location, split_glue_arguments

    py_files, conf, script_args = split_glue_arguments(arguments)
    check_job_request(entry_point=glue_script_location(command, arguments), arguments=argv(script_args),
                      py_files=py_files, spark_conf=conf)


class LocalGlueJobRun(FakeJobRun):
    """A Glue job run whose state is its local runner's: a batch run's worker (spark-submit of the
    script), or the streaming runner's record (``local_aws.glue_streaming``)."""

    kind = "batch"  # or "streaming"
    role: str | None = None
    error_message: str | None = None
    execution_class: str | None = None  # the job's (STANDARD or FLEX)
    execution_seconds: int | None = None  # a batch run's, as its runner measured it

    @property  # type: ignore[override]
    @overrides
    def status(self) -> str | None:
        if self._status in ("SUCCEEDED", "FAILED", "STOPPED", "ERROR", "TIMEOUT"):
            return self._status
        ended = None  # when the runner ended a batch run, by its record
        if self.kind == "streaming":
            from local_aws.glue_streaming import get_job_run as streaming_run

            state = streaming_run(self.job_name, self.job_run_id) or {}
            self._status = state.get("JobRunState", "FAILED")
            self.error_message = state.get("ErrorMessage") or (
                None if state else f"the streaming runner has no record of run {self.job_run_id}")
        elif self._status != "STOPPING":
            folder = job_dir(self.job_run_id)
            alive = jobs.running(folder)  # before the record, as in get_job_run of EMR Serverless
            state = read_state(folder / "job-run.json")
            if state and state["state"] in ("SUCCESS", "FAILED"):
                self._status = "SUCCEEDED" if state["state"] == "SUCCESS" else "FAILED"
                if self._status == "FAILED":
                    self.error_message = jobs.last_error(folder)
                if state.get("totalExecutionDurationSeconds") is not None and state.get("updatedAt"):
                    ended = _utc_naive(state["updatedAt"])
                    self.execution_seconds = math.ceil(float(state["totalExecutionDurationSeconds"]))
            elif not alive:
                self._status, self.error_message = "FAILED", jobs.last_error(folder)
            else:
                self._status = "RUNNING"
        if self._status not in GLUE_ACTIVE_RUN_STATES:
            self.completed_on = ended or utcnow()
        return self._status

    @status.setter
    def status(self, value: str) -> None:
        self._status = value

    @overrides
    def as_dict(self) -> dict[str, Any]:
        answer = super().as_dict()
        answer["GlueVersion"] = getattr(self, "glue_version", None) or "5.0"
        answer["LogGroupName"] = glue_log_group(self.security_configuration, self.role)
        answer.pop("ExecutionTime", None)
        if answer["JobRunState"] in GLUE_ACTIVE_RUN_STATES:
            answer.pop("CompletedOn", None)
        elif self.execution_seconds is not None:
            answer["ExecutionTime"] = self.execution_seconds
        else:  # stopped, or its worker died: from its start until the control plane saw it end
            answer["ExecutionTime"] = max(0, math.ceil((self.completed_on - self.started_on).total_seconds()))
        answer.update(_glue_billing(answer, self.execution_class))
        if self.error_message and answer["JobRunState"] in ("FAILED", "ERROR", "TIMEOUT"):
            answer["ErrorMessage"] = self.error_message
        return answer


GLUE_DEFAULT_DPUS = 10.0  # a Spark job's capacity when it sets neither WorkerType nor MaxCapacity (Glue's default)


def _glue_billing(answer: dict[str, Any], execution_class: str | None) -> dict[str, Any]:
    """The capacity fields of a Glue run's GetJobRun as AWS reports them: ``MaxCapacity`` (the run's DPUs:
    NumberOfWorkers x DPU per WorkerType, else its MaxCapacity, else Glue's default of 10), ``ExecutionClass``,
    and ``DPUSeconds`` only for a FLEX or auto-scaling run that has ended (every worker for the whole
    ExecutionTime: AWS counts the executors that ran, an auto-scaled run's fewer)."""
    from churn_ml.cost.usage import GLUE_WORKER_DPU

    fields: dict[str, Any] = {"ExecutionClass": execution_class or "STANDARD"}
    worker, workers = answer.get("WorkerType"), answer.get("NumberOfWorkers")
    if worker in GLUE_WORKER_DPU and workers:
        fields["MaxCapacity"] = workers * GLUE_WORKER_DPU[worker]
    elif not worker and answer.get("MaxCapacity") is None:
        fields["MaxCapacity"] = GLUE_DEFAULT_DPUS
    auto_scaling = str((answer.get("Arguments") or {}).get("--enable-auto-scaling", "")).lower() == "true"
    dpus = fields.get("MaxCapacity", answer.get("MaxCapacity"))
    if (fields["ExecutionClass"] == "FLEX" or auto_scaling) and answer.get("ExecutionTime") is not None and dpus:
        fields["DPUSeconds"] = float(answer["ExecutionTime"]) * dpus
    return fields


class LocalGlueJob(FakeJob):
    """A Glue job whose StartJobRun runs the script locally (batch with spark-submit, streaming with
    ``local_aws.glue_streaming``), and whose runs' states are refreshed and saved when read."""

    def _refresh(self, run: LocalGlueJobRun) -> LocalGlueJobRun:
        before = run._status
        if run.status != before:
            run.modified_on = utcnow()
            self.backend._save_run(run)
        return run

    @overrides
    def start_job_run(self, allocated_capacity: int | None, max_capacity: float | None, timeout: int | None,
                      worker_type: str | None, security_configuration: str | None, number_of_workers: int | None,
                      notification_property: dict[str, int] | None, previous_run_id: str | None,
                      arguments: dict[str, str] | None) -> str:
        # The run's arguments as Glue merges them (the job's DefaultArguments, the run's, the
        # NonOverridableArguments), checked before the run exists: a refused one leaves none behind.
        merged = {**(self.default_arguments or {}), **(arguments or {}), **(self.non_overridable_arguments or {})}
        try:
            _check_glue_run(self.command or {}, merged)
        except ValueError as err:
            raise InvalidInputException("StartJobRun", f"StartJobRun of {self.name}: {err}") from err
        running = [r for r in self.job_runs if self._refresh(r).status in ("STARTING", "RUNNING")]
        if len(running) >= self.execution_property.get("MaxConcurrentRuns", 1):
            raise ConcurrentRunsExceededException(
                f"Job with name {self.name} already running ({', '.join(r.job_run_id for r in running)}); "
                "stop it (BatchStopJobRun) or raise the job's ExecutionProperty.MaxConcurrentRuns")
        run = LocalGlueJobRun(
            job_name=self.name, arguments=merged,
            allocated_capacity=allocated_capacity or self.allocated_capacity,
            max_capacity=max_capacity or self.max_capacity, timeout=timeout or self.timeout,
            worker_type=worker_type or self.worker_type,
            security_configuration=security_configuration or self.security_configuration,
            number_of_workers=number_of_workers or self.number_of_workers,
            notification_property=notification_property or self.notification_property, job_run_id=previous_run_id,
        )
        run.role, run.glue_version, run.execution_class = self.role, self.glue_version, self.execution_class
        run_id = run.job_run_id
        if (self.command or {}).get("Name") == "gluestreaming":
            from local_aws.glue_streaming import ConcurrentRunsExceeded
            from local_aws.glue_streaming import start_job_run as start_streaming

            run.kind = "streaming"
            definition = {"Name": self.name, "Command": self.command, "DefaultArguments": {}}
            try:
                start_streaming(definition, {**LOCAL_STREAMING_DEFAULTS, **merged, **_local_streaming_arguments(merged)},
                                log, run_id=run_id)
            except ConcurrentRunsExceeded as err:
                raise ConcurrentRunsExceededException(str(err)) from err
        else:
            from local_aws.spark import argv, glue_script_location, split_glue_arguments

            py_files, conf, script_args = split_glue_arguments(merged)
            jobs.start("spark", job_dir(run_id), {
                "name": run_id, "entry_point": glue_script_location(self.command, merged),
                "arguments": argv(script_args), "py_files": py_files, "spark_conf": conf,
            })
        run._status = "RUNNING"
        self.job_runs.append(run)
        self.backend._save_run(run)
        return run_id

    @overrides
    def get_job_run(self, run_id: str) -> FakeJobRun:
        for run in self.job_runs:
            if run.job_run_id == run_id:
                return self._refresh(run)
        raise JobRunNotFoundException(run_id)

    @overrides
    def get_job_runs(self) -> list[FakeJobRun]:
        return [self._refresh(run) for run in self.job_runs]


class LocalGlueBackend(GlueBackend):
    """moto's Glue state, its jobs ``LocalGlueJob``s, saved to files; BatchStopJobRun added."""

    EMULATED_OPERATIONS = GLUE_OPERATIONS

    def __init__(self, region_name: str, account_id: str):
        super().__init__(region_name, account_id)
        self._lock = threading.RLock()
        self._persist = _persists(self)
        if self._persist:
            self._load()

    def _jobs_dir(self) -> Path:
        return control_plane("glue", "jobs")

    def _load(self) -> None:
        for path in sorted(self._jobs_dir().glob("*.json")):
            job = _restore(LocalGlueJob, read_state(path))
            job.backend, job.job_runs = self, []
            self.jobs[job.name] = job
        tags = read_state(control_plane("glue") / "tags.json") or {}
        for arn, values in tags.items():
            GlueBackend.tag_resource(self, arn, values)
        for record in sorted(_run_records("glue"), key=lambda r: r["started_on"]["$datetime"]):
            run = _restore(LocalGlueJobRun, record)
            if run.job_name in self.jobs:
                self.jobs[run.job_name].job_runs.append(run)
        self._load_catalog()

    # ------------------------------------------------------------------ the Data Catalog
    def _catalog_dir(self) -> Path:
        return control_plane("glue", "catalog")

    def _load_catalog(self) -> None:
        folder = self._catalog_dir()
        for path in sorted(folder.glob("*.json")):
            database = _restore(FakeDatabase, read_state(path))
            database.tables = {}
            for table_path in sorted((folder / database.name).glob("*.json")):
                record = read_state(table_path)
                partitions = record.pop("partitions")
                table = _restore(FakeTable, record)
                table.partitions = {key: _restore(FakePartition, p) for key, p in partitions.items()}
                database.tables[table.name] = table
            self.databases[database.name] = database

    def _save_catalog(self, database_name: str, table_name: str | None = None) -> None:
        """Save what a catalog write changed: the table (or its removal); without a table, the database
        and every table of it (or the database's removal)."""
        if not self._persist:
            return
        folder = self._catalog_dir()
        database = self.databases.get(database_name)
        tables_dir = folder / path_segment(database_name)
        if database is None:
            (folder / f"{database_name}.json").unlink(missing_ok=True)
            shutil.rmtree(tables_dir, ignore_errors=True)
            return
        names = [table_name] if table_name is not None else sorted(
            {*database.tables, *(p.stem for p in tables_dir.glob("*.json"))})
        if table_name is None:
            write_state(folder / f"{database_name}.json", _record(database, leave_out=("tables",)))
        tables_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            table = database.tables.get(name)
            path = tables_dir / f"{path_segment(name)}.json"
            if table is None:
                path.unlink(missing_ok=True)
                continue
            record = _record(table, leave_out=("partitions",))
            record["partitions"] = {key: _record(p) for key, p in table.partitions.items()}
            write_state(path, record)

    create_database = _catalog_write("create_database")
    update_database = _catalog_write("update_database")
    delete_database = _catalog_write("delete_database")
    create_table = _catalog_write("create_table")
    update_table = _catalog_write("update_table")
    delete_table = _catalog_write("delete_table")
    batch_delete_table = _catalog_write("batch_delete_table")
    delete_table_version = _catalog_write("delete_table_version")
    create_partition = _catalog_write("create_partition")
    batch_create_partition = _catalog_write("batch_create_partition")
    update_partition = _catalog_write("update_partition")
    batch_update_partition = _catalog_write("batch_update_partition")
    delete_partition = _catalog_write("delete_partition")
    batch_delete_partition = _catalog_write("batch_delete_partition")

    def _save_job(self, job: FakeJob) -> None:
        if self._persist:
            write_state(self._jobs_dir() / f"{job.name}.json", _record(job, leave_out=("backend", "job_runs")))

    def _save_run(self, run: LocalGlueJobRun) -> None:
        if self._persist:
            write_state(job_dir(run.job_run_id) / RECORD, {"service": "glue", "run": _record(run)})

    def _save_tags(self) -> None:
        if self._persist:
            write_state(control_plane("glue") / "tags.json",
                        {arn: self.tagger.get_tag_dict_for_resource(arn) for arn in self.tagger.tags})

    @overrides
    def create_job(self, name: str, role: str, command: str, description: str, log_uri: str,
                   execution_property: dict[str, int], default_arguments: dict[str, str],
                   non_overridable_arguments: dict[str, str], connections: dict[str, list[str]], max_retries: int,
                   allocated_capacity: int, timeout: int, max_capacity: float, security_configuration: str,
                   tags: dict[str, str], notification_property: dict[str, int], glue_version: str,
                   number_of_workers: int, worker_type: str, code_gen_configuration_nodes: dict[str, Any],
                   execution_class: str, source_control_details: dict[str, str]) -> None:
        with self._lock:
            job = LocalGlueJob(
                name, role, command, description, log_uri, execution_property, default_arguments,
                non_overridable_arguments, connections, max_retries, allocated_capacity, timeout, max_capacity,
                security_configuration, tags, notification_property, glue_version, number_of_workers, worker_type,
                code_gen_configuration_nodes, execution_class, source_control_details, backend=self)
            earlier = self.jobs.get(name)
            if earlier is not None:  # a redefinition keeps the job's runs, as Glue's job history does
                job.job_runs = earlier.job_runs
            self.jobs[name] = job
            self._save_job(job)

    @overrides
    def delete_job(self, name: str) -> None:
        """The job and its runs' records (GetJobRun of them answers EntityNotFound, as Glue's does)."""
        with self._lock:
            job = self.jobs.get(name)
            super().delete_job(name)
            if job is None:
                return
            (self._jobs_dir() / f"{name}.json").unlink(missing_ok=True)
            for run in job.job_runs:
                (job_dir(run.job_run_id) / RECORD).unlink(missing_ok=True)
            self.tagger.delete_all_tags_for_resource(job.arn)
            self._save_tags()

    @overrides
    def tag_resource(self, resource_arn: str, tags: dict[str, str] | None) -> None:
        with self._lock:
            super().tag_resource(resource_arn, tags)
            self._save_tags()

    @overrides
    def untag_resource(self, resource_arn: str, tag_keys: list[str]) -> None:
        with self._lock:
            super().untag_resource(resource_arn, tag_keys)
            self._save_tags()

    @overrides
    def get_tags(self, resource_id: str) -> dict[str, str]:
        if resource_id.split(":")[5:6] and resource_id.split(":")[5].startswith("job/") \
                and resource_id.split(":job/", 1)[1] not in self.jobs:
            raise EntityNotFoundException(f"Job {resource_id.split(':job/', 1)[1]} not found.")
        return super().get_tags(resource_id)

    def batch_stop_job_run(self, job_name: str, run_ids: list[str]) -> tuple[list[dict], list[dict]]:
        """BatchStopJobRun: a batch run's worker is stopped (STOPPED), a streaming run is asked to
        stop (STOPPING until its runner ends it); a run that is not running is an error entry."""
        job = self.get_job(job_name)
        stopped, errors = [], []
        for run_id in run_ids:
            run = next((r for r in job.job_runs if r.job_run_id == run_id), None)
            if run is None or run.status not in ("STARTING", "RUNNING"):
                errors.append({"JobName": job_name, "JobRunId": run_id, "ErrorDetail": {
                    "ErrorCode": "InvalidInputException",
                    "ErrorMessage": "no such run" if run is None else f"the run is {run.status}, not running"}})
                continue
            if run.kind == "streaming":
                from local_aws.glue_streaming import stop_job_run

                threading.Thread(target=stop_job_run, args=(job_name, log), daemon=True).start()
                run._status = "STOPPING"
            else:
                jobs.stop(job_dir(run_id))
                run._status, run.completed_on = "STOPPED", utcnow()
            run.modified_on = utcnow()
            self._save_run(run)
            stopped.append({"JobName": job_name, "JobRunId": run_id})
        return stopped, errors


class LocalGlueResponse(GlueResponse):
    """BatchStopJobRun, which moto's Glue does not answer."""

    EMULATED_OPERATIONS = GLUE_OPERATIONS

    def batch_stop_job_run(self) -> ActionResult:
        stopped, errors = self.glue_backend.batch_stop_job_run(self._get_param("JobName"),
                                                               self._get_param("JobRunIds") or [])
        return ActionResult({"SuccessfulSubmissions": stopped, "Errors": errors})


def adopt_streaming_runs(backend: GlueBackend) -> None:
    """A streaming run the streaming runner knows but the saved state does not (one started before
    the control plane kept its runs in files) is listed again: it runs on its own."""
    from local_aws.glue_streaming import ACTIVE
    from local_aws.glue_streaming import get_job_run as streaming_run

    for job in backend.jobs.values():
        if (job.command or {}).get("Name") != "gluestreaming":
            continue
        state = streaming_run(job.name)
        if state and state["JobRunState"] in ACTIVE and all(r.job_run_id != state["Id"] for r in job.job_runs):
            run = LocalGlueJobRun(job_name=job.name, arguments=state.get("Arguments"),
                                  security_configuration=job.security_configuration)
            run.job_run_id, run.kind, run._status = state["Id"], "streaming", "RUNNING"
            run.role, run.glue_version = job.role, job.glue_version
            job.job_runs.append(run)
            backend._save_run(run)


# ---------------------------------------------------------------- the runs' logs

def run_log_files(service: str, run_id: str) -> dict[str, Path]:
    """The log files of an EMR Serverless (``emr-serverless``) or Glue (``glue``) job run, by the
    stream each is on AWS: ``stdout``/``stderr`` (EMR Serverless' SPARK_DRIVER files) or
    ``output``/``error`` (Glue's log groups). The driver's output is ``driver.log`` in the run's job
    folder (local_aws.spark), the worker's own lines, with the error a failed run reports, are
    ``worker.log``; a Glue streaming run has one log (its ``driver.log`` beside its progress), which
    is its output. A file may not exist yet while the run starts; LookupError for an unknown run."""
    if service not in ("emr-serverless", "glue"):
        raise ValueError(f"run_log_files: service must be 'emr-serverless' or 'glue', got {service!r}")
    folder = control_plane("spark", "job-runs") / run_id
    record = read_state(folder / RECORD) if folder.is_dir() else None
    if not record or record.get("service") != service:
        raise LookupError(f"the control plane has no {service} job run {run_id!r} (no {folder / RECORD})")
    run = record["run"]
    if service == "glue" and run.get("kind") == "streaming":
        from local_aws.glue_streaming import get_job_run as streaming_run

        state = streaming_run(run["job_name"], run_id) or {}
        return {"output": Path(state["LogFile"])} if state.get("LogFile") else {}
    out, err = ("stdout", "stderr") if service == "emr-serverless" else ("output", "error")
    return {out: folder / "driver.log", err: folder / "worker.log"}


def install() -> None:
    """Register the two services' backend and response subclasses with moto (before serving)."""
    from moto.emrserverless import urls as emr_urls
    from moto.glue import urls as glue_urls

    from local_aws.moto_ext import check_overrides, register_backend, register_responses

    for model in (LocalGlueJob, LocalGlueJobRun):  # the backend creates these; moto registers no class for them
        check_overrides(model)
    register_backend("emr-serverless", LocalEMRServerlessBackend)
    register_responses(emr_urls, EMRServerlessResponse, LocalEMRServerlessResponse)
    # moto routes no /tags/{resourceArn} for EMR Serverless: the tag operations' path, to the subclass.
    emr_urls.url_paths["{0}/tags/(?P<resourceArn>.+)$"] = LocalEMRServerlessResponse.dispatch
    register_backend("glue", LocalGlueBackend)
    register_responses(glue_urls, GlueResponse, LocalGlueResponse)
