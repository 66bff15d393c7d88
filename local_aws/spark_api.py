"""EMR Serverless job runs on the control plane: moto's API, ``spark-submit`` behind it.

moto keeps the application and its job runs (request parsing, answers in the service's shapes);
the operations below make a job run real: StartJobRun starts a worker that runs the same
``jobDriver`` with ``spark-submit --master local[N]`` (``local_aws.spark``), GetJobRun reports the
worker's state (SUBMITTED, RUNNING, SUCCESS, FAILED with the driver's error, CANCELLED), and
CancelJobRun stops it. StartJobRun is idempotent on ``clientToken``, as the service is: a retried
task gets its earlier run back. What a run may name (script, libraries, arguments, ``--conf``) is
checked at StartJobRun with ``local_aws.spark.check_job_request``, before the run exists: a refusal
is EMR Serverless' ValidationException, Glue's InvalidInputException (the Glue job's
DefaultArguments are checked with the run's). A Glue run runs its ``--scriptLocation`` and
``--extra-py-files`` when it sends them (Glue's overrides of the job's script and library; the
project's runs always do, for their code version), and the checks apply to those values. The application the DAGs use
(``CHURN_EMR_APPLICATION_ID``) exists from the control plane's start, STARTED, on the release the
template pins.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.emrserverless.exceptions import ValidationException
from moto.emrserverless.models import EMRServerlessBackend, JobRun

from local_aws import jobs
from local_aws.common import control_plane, read_state

RELEASE_LABEL = "emr-7.9.0"  # the template's EMR Serverless release (infra/cloudformation/churn.yaml)

_start_job_run = EMRServerlessBackend.start_job_run
_get_job_run = EMRServerlessBackend.get_job_run
_cancel_job_run = EMRServerlessBackend.cancel_job_run
_list_job_runs = EMRServerlessBackend.list_job_runs


def job_dir(run_id: str):
    return control_plane("spark", "job-runs", run_id)


def _worker_request(job_driver: dict | None) -> dict:
    """The local runner's request for a StartJobRun's ``jobDriver`` (without the run's name), checked
    with ``spark.check_job_request``: ValueError for what the local target does not run."""
    from local_aws.spark import check_job_request, parse_submit_parameters

    submit = (job_driver or {}).get("sparkSubmit")
    if not isinstance(submit, dict):
        raise ValueError("jobDriver.sparkSubmit is required: the local target runs Spark jobs (sparkSubmit) only")
    py_files, conf = parse_submit_parameters(submit.get("sparkSubmitParameters", ""))
    request = {"entry_point": submit.get("entryPoint"), "arguments": list(submit.get("entryPointArguments") or []),
               "py_files": py_files, "spark_conf": conf}
    check_job_request(**request)
    return request


def start_job_run(self: EMRServerlessBackend, **kwargs: Any) -> JobRun:
    token = kwargs.get("client_token")
    for earlier in self.job_runs.get(kwargs["application_id"], []):
        if token and earlier.client_token == token:
            return earlier
    try:  # before moto records the run: a refused request leaves no run behind
        request = _worker_request(kwargs.get("job_driver"))
    except ValueError as err:
        raise ValidationException(f"StartJobRun: {err}") from err
    job_run = _start_job_run(self, **kwargs)
    job_run.state, job_run.state_details = "SUBMITTED", ""
    job_run.created_at = job_run.updated_at = utcnow()  # moto records the day's midnight; AWS, the moment
    job_run.created_by = f"arn:aws:iam::{self.account_id}:root"  # required in GetJobRun; moto leaves it out
    jobs.start("spark", job_dir(job_run.id), {"name": job_run.id, **request})
    return job_run


def get_job_run(self: EMRServerlessBackend, application_id: str, job_run_id: str) -> JobRun:
    job_run = _get_job_run(self, application_id, job_run_id)
    if job_run.state in ("SUCCESS", "FAILED", "CANCELLED"):
        return job_run
    folder = job_dir(job_run.id)
    state = read_state(folder / "job-run.json")
    alive = jobs.running(folder)
    if state and state["state"] in ("SUCCESS", "FAILED"):
        job_run.state = state["state"]
        job_run.state_details = state.get("stateDetails") or ""
        if state["state"] == "FAILED":
            job_run.state_details = jobs.last_error(folder)
        job_run.total_execution_duration_seconds = int(state.get("totalExecutionDurationSeconds") or 0)
    elif not alive:
        job_run.state, job_run.state_details = "FAILED", jobs.last_error(folder)
    else:
        job_run.state = "RUNNING" if state else "SCHEDULED"
    job_run.updated_at = utcnow()
    return job_run


def list_job_runs(self: EMRServerlessBackend, application_id: str, created_at_after, created_at_before,
                  states: list[str] | None) -> list[JobRun]:
    """ListJobRuns with each run's state as GetJobRun reports it (moto's list would show the state it
    recorded at StartJobRun), filtered by ``states`` after that refresh. An application without runs
    has an empty list (moto answers ResourceNotFound until its first run)."""
    if application_id in self.applications and application_id not in self.job_runs:
        return []
    runs = _list_job_runs(self, application_id, created_at_after, created_at_before, None)
    refreshed = [get_job_run(self, application_id, run.id) for run in runs]
    return [run for run in refreshed if not states or run.state in states]


def cancel_job_run(self: EMRServerlessBackend, application_id: str, job_run_id: str) -> tuple[str, str]:
    answer = _cancel_job_run(self, application_id, job_run_id)
    jobs.stop(job_dir(job_run_id))
    return answer


def install() -> None:
    EMRServerlessBackend.start_job_run = start_job_run
    EMRServerlessBackend.get_job_run = get_job_run
    EMRServerlessBackend.cancel_job_run = cancel_job_run
    EMRServerlessBackend.list_job_runs = list_job_runs


def create_application(backend: EMRServerlessBackend, application_id: str) -> None:
    """The application the DAGs run on, under the id they are configured with, STARTED."""
    if application_id in backend.applications:
        return
    application = backend.create_application(
        name="churn-spark", release_label=RELEASE_LABEL, application_type="SPARK", client_token=application_id,
        initial_capacity=None, maximum_capacity=None, tags={}, auto_start_configuration=None,
        auto_stop_configuration=None, network_configuration=None,
    )
    backend.applications.pop(application.id)
    application.arn = application.arn.replace(application.id, application_id)
    application.id = application_id
    application.state = "STARTED"
    backend.applications[application_id] = application


# ---------------------------------------------------------------- Glue

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
        "AWS::Region": LOCAL_REGION, "AWS::AccountId": cfg.LOCAL_ACCOUNT,
        "GlueJobRole.Arn": f"arn:aws:iam::{cfg.LOCAL_ACCOUNT}:role/churn-glue",
        "EventsStream.Arn": f"arn:aws:kinesis:{LOCAL_REGION}:{cfg.LOCAL_ACCOUNT}:stream/{s.kinesis_stream}",
    }


def create_glue_jobs(backend, url: str) -> None:
    """The template's Glue jobs, as the stack creates them (local_aws.template)."""
    from local_aws.template import glue_job_requests

    for request in glue_job_requests(glue_refs(url)):
        if request["Name"] in backend.jobs:
            continue
        backend.create_job(
            name=request["Name"], description=None, log_uri=None, role=request["Role"],
            execution_property=request.get("ExecutionProperty"), command=request["Command"],
            default_arguments=request.get("DefaultArguments"), non_overridable_arguments=None, connections=None,
            max_retries=None, allocated_capacity=None, timeout=request.get("Timeout"), max_capacity=None,
            security_configuration=None, tags={}, notification_property=None, glue_version=request.get("GlueVersion"),
            number_of_workers=request.get("NumberOfWorkers"), worker_type=request.get("WorkerType"),
            code_gen_configuration_nodes=None, execution_class=None, source_control_details=None,
        )


def _glue_job_run_state(job_run) -> str:
    """Refresh a local Glue run from its runner: a batch run's worker (spark-submit of the script),
    or the streaming runner's record (``local_aws.glue_streaming``)."""
    local = job_run.local
    if job_run._status in ("SUCCEEDED", "FAILED", "STOPPED", "ERROR", "TIMEOUT"):
        return job_run._status
    if local["kind"] == "streaming":
        from local_aws.glue_streaming import get_job_run as streaming_run

        state = streaming_run(job_run.job_name, job_run.job_run_id) or {}
        job_run._status = state.get("JobRunState", "FAILED")
        job_run.error_message = state.get("ErrorMessage")
    else:
        folder = job_dir(job_run.job_run_id)
        state = read_state(folder / "job-run.json")
        if state and state["state"] in ("SUCCESS", "FAILED"):
            job_run._status = "SUCCEEDED" if state["state"] == "SUCCESS" else "FAILED"
            if job_run._status == "FAILED":
                job_run.error_message = jobs.last_error(folder)
        elif not jobs.running(folder):
            job_run._status, job_run.error_message = "FAILED", jobs.last_error(folder)
        else:
            job_run._status = "RUNNING"
    if job_run._status not in ("STARTING", "RUNNING", "STOPPING"):
        job_run.completed_on = utcnow()
    job_run.modified_on = utcnow()
    return job_run._status


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
    from local_aws import control_plane

    stream = (arguments.get("--stream-arn") or "").rsplit("/", 1)[-1] or cfg.settings.kinesis_stream
    return {"--source": "python", "--stream": stream,
            "--kinesis-endpoint-url": f"http://127.0.0.1:{control_plane.port()}",
            "--runtime-endpoint-url": f"http://127.0.0.1:{cfg.local_runtime_port()}"}


def _check_glue_run(command: dict, arguments: dict[str, str]) -> None:
    """A Glue run of ``command`` with ``arguments`` as the local runners would start it, checked with
    ``spark.check_job_request`` (keys and values of the script's arguments alike): ValueError."""
    from local_aws.spark import argv, check_job_request, glue_script_location, split_glue_arguments

    py_files, conf, script_args = split_glue_arguments(arguments)
    check_job_request(entry_point=glue_script_location(command, arguments), arguments=argv(script_args),
                      py_files=py_files, spark_conf=conf)


def install_glue() -> None:
    from moto.glue.exceptions import ConcurrentRunsExceededException, InvalidInputException
    from moto.glue.models import FakeJob, FakeJobRun
    from moto.glue.responses import GlueResponse

    original_start, original_status, original_as_dict = FakeJob.start_job_run, FakeJobRun.status, FakeJobRun.as_dict

    def start_job_run(self: FakeJob, **kwargs: Any) -> str:
        # The run's arguments as moto merges them (the job's DefaultArguments, the run's, the
        # NonOverridableArguments), checked before moto records the run: a refused one leaves none behind.
        merged = {**(self.default_arguments or {}), **(kwargs.get("arguments") or {}),
                  **(self.non_overridable_arguments or {})}
        try:
            _check_glue_run(self.command or {}, merged)
        except ValueError as err:
            raise InvalidInputException("StartJobRun", f"StartJobRun of {self.name}: {err}") from err
        for earlier in self.job_runs:  # refresh before the MaxConcurrentRuns check sees them
            earlier.status  # noqa: B018
        run_id = original_start(self, **kwargs)
        job_run = next(r for r in self.job_runs if r.job_run_id == run_id)
        arguments = dict(job_run.arguments or {})
        if self.command.get("Name") == "gluestreaming":
            from local_aws.glue_streaming import ConcurrentRunsExceeded
            from local_aws.glue_streaming import start_job_run as start_streaming

            job_run.local = {"kind": "streaming"}
            definition = {"Name": self.name, "Command": self.command, "DefaultArguments": {}}
            try:
                start_streaming(definition, {**LOCAL_STREAMING_DEFAULTS, **arguments, **_local_streaming_arguments(arguments)},
                                _log(), run_id=run_id)
            except ConcurrentRunsExceeded as err:
                self.job_runs.remove(job_run)
                raise ConcurrentRunsExceededException(str(err)) from err
        else:
            from local_aws.spark import argv, glue_script_location, split_glue_arguments

            job_run.local = {"kind": "batch"}
            py_files, conf, script_args = split_glue_arguments(arguments)
            jobs.start("spark", job_dir(run_id), {
                "name": run_id, "entry_point": glue_script_location(self.command, arguments),
                "arguments": argv(script_args),
                "py_files": py_files, "spark_conf": conf,
            })
        job_run._status = "RUNNING"
        return run_id

    def status(self: FakeJobRun) -> str | None:
        if getattr(self, "local", None):
            return _glue_job_run_state(self)
        return original_status.fget(self)

    def as_dict(self: FakeJobRun) -> dict[str, Any]:
        answer = original_as_dict(self)
        if getattr(self, "local", None):
            answer["GlueVersion"] = "5.0"
            answer.pop("ExecutionTime", None)
            if answer["JobRunState"] in ("STARTING", "RUNNING", "STOPPING"):
                answer.pop("CompletedOn", None)
            if getattr(self, "error_message", None):
                answer["ErrorMessage"] = self.error_message
        return answer

    def batch_stop_job_run(self: GlueResponse) -> ActionResult:
        name, run_ids = self._get_param("JobName"), self._get_param("JobRunIds") or []
        job = self.glue_backend.get_job(name)
        stopped, errors = [], []
        for run_id in run_ids:
            job_run = next((r for r in job.job_runs if r.job_run_id == run_id), None)
            if job_run is None or job_run.status not in ("STARTING", "RUNNING"):
                errors.append({"JobName": name, "JobRunId": run_id,
                               "ErrorDetail": {"ErrorCode": "InvalidInputException", "ErrorMessage": "not running"}})
                continue
            if job_run.local["kind"] == "streaming":
                from local_aws.glue_streaming import stop_job_run

                threading.Thread(target=stop_job_run, args=(name, _log()), daemon=True).start()
                job_run._status = "STOPPING"
            else:
                jobs.stop(job_dir(run_id))
                job_run._status = "STOPPED"
            stopped.append({"JobName": name, "JobRunId": run_id})
        return ActionResult({"SuccessfulSubmissions": stopped, "Errors": errors})

    FakeJob.start_job_run = start_job_run
    FakeJobRun.status = property(status)
    FakeJobRun.as_dict = as_dict
    GlueResponse.batch_stop_job_run = batch_stop_job_run


def adopt_streaming_runs(backend) -> None:
    """A streaming run outlives a restart of the control plane (it runs on its own): list it again."""
    from moto.glue.models import FakeJobRun

    from local_aws.glue_streaming import ACTIVE
    from local_aws.glue_streaming import get_job_run as streaming_run

    for job in backend.jobs.values():
        if job.command.get("Name") != "gluestreaming":
            continue
        state = streaming_run(job.name)
        if state and state["JobRunState"] in ACTIVE and all(r.job_run_id != state["Id"] for r in job.job_runs):
            job_run = FakeJobRun(job_name=job.name, arguments=state.get("Arguments"))
            job_run.job_run_id, job_run.local, job_run._status = state["Id"], {"kind": "streaming"}, "RUNNING"
            job.job_runs.append(job_run)


def _log():
    import logging

    return logging.getLogger("local_aws.glue")
