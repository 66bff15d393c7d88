"""SageMaker on the control plane: one state, in files, behind every operation a client can call.

The state is what the local runners write under the lake's ``.control-plane/sagemaker/`` (models,
endpoint configs, endpoints, training, tuning and transform jobs, the model registry); it outlives
a restart of the control plane. ``LocalSageMakerBackend`` (moto's ``SageMakerModelBackend``,
registered with ``moto_ext.register_backend``) reads and writes those files for every operation in
its ``EMULATED_OPERATIONS``, so Create, Describe, List (NameContains, StatusEquals, creation and
modification times, SortBy/SortOrder, MaxResults/NextToken), tags (AddTags, ListTags, DeleteTags
by ARN; the Tags of a Create are kept) and Delete agree. Where moto's own response code answers
from what the backend returns (DescribeEndpoint, DescribeTrainingJob, DeleteModel, AddTags, ...),
the backend overrides moto's method of the same name; where moto's response code needs moto's
objects or has no handler (Create*, List*, Stop*, the registry), ``LocalSageMakerResponse``
(registered with ``moto_ext.register_responses``) passes the request to the backend.

Jobs run for real: CreateTrainingJob, CreateHyperParameterTuningJob and CreateTransformJob validate
the request as the local runner needs it, refuse a name already used (names are unique per
account and region), start a worker (``local_aws.worker``) and answer at once; Describe answers
from the job's record, so the provider's ``SageMakerTrigger`` waits through InProgress (and a
training job's secondary statuses, spot interruptions included) to Completed, Failed or Stopped
with the real FailureReason. Jobs cannot be deleted (as on SageMaker): Stop* stops them.
CreateEndpoint and UpdateEndpoint deploy with ``local_aws.endpoints`` (container processes behind
the Runtime router, blue/green traffic shifting, rollback on the alarms): Creating -> InService or
Failed, Updating -> InService (a failed update rolls back); DeleteEndpoint makes it Deleting (the
router stops routing to it at once), stops its containers, then forgets it. DeleteModel and
DeleteEndpointConfig are allowed while an endpoint uses them, as on AWS (the endpoint keeps
serving). Model package groups and versions (the registry) are numbered in order, CreateModelPackage
is idempotent on ClientToken, and a group that still has versions cannot be deleted.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from moto.core.responses import ActionResult, EmptyResult
from moto.sagemaker import urls as sagemaker_urls
from moto.sagemaker.exceptions import ConflictException, ResourceInUseException, ResourceNotFound, ValidationError
from moto.sagemaker.models import SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse

from churn_ml import naming
from local_aws import endpoints, jobs, models, moto_ext
from local_aws.common import LocalJobError, arn, control_plane, now, path_segment, read_state, write_state

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- one resource type

class _Resource:
    """A SageMaker resource type kept in files: its ARN kind, name/ARN/status fields, the fields of
    its List summary, and how to enumerate, describe and (if SageMaker can) delete one."""

    arn_kind = name_key = list_key = ""
    status_key: str | None = None
    summary: tuple[str, ...] = ()
    default_sort, default_order = "CreationTime", "Descending"  # List*'s SortBy and SortOrder when not given

    @property
    def arn_key(self) -> str:
        return self.name_key.replace("Name", "Arn")

    def arn(self, name: str) -> str:
        return arn("sagemaker", self.arn_kind, name.lower())

    def names(self) -> list[str]:
        raise NotImplementedError

    def describe(self, name: str) -> dict:
        raise NotImplementedError

    def not_found(self, name: str) -> ValidationError:
        return ValidationError(f"Could not find {self.arn_kind.replace('-', ' ')} {name}.")

    def records(self) -> Iterable[dict]:
        for name in self.names():
            try:
                yield self.describe(name)
            except ValidationError:  # deleted between the listing and the read
                continue


def _names_of(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.json") if not p.name.startswith("."))


class _Model(_Resource):
    arn_kind, name_key, list_key, summary = "model", "ModelName", "Models", ("ModelName", "ModelArn", "CreationTime")

    def names(self) -> list[str]:
        return _names_of(control_plane("sagemaker", "models"))

    def describe(self, name: str) -> dict:
        try:
            return models.describe_model(path_segment(name))
        except (ValueError, LocalJobError) as err:
            raise ValidationError(f'Could not find model "{name}".') from err

    def create(self, request: dict) -> dict:
        try:
            return models.create_model(request, log)
        except (ValueError, KeyError, LocalJobError) as err:
            raise ValidationError(f"CreateModel: {err}") from err

    def delete(self, name: str) -> None:
        self.describe(name)
        models.delete_model(name, log)


class _EndpointConfig(_Resource):
    arn_kind, name_key, list_key = "endpoint-config", "EndpointConfigName", "EndpointConfigs"
    summary = ("EndpointConfigName", "EndpointConfigArn", "CreationTime")

    def names(self) -> list[str]:
        return _names_of(control_plane("sagemaker", "endpoint-configs"))

    def not_found(self, name: str) -> ValidationError:
        return ValidationError(f"Could not find endpoint configuration {name}.")

    def describe(self, name: str) -> dict:
        try:
            return endpoints.describe_endpoint_config(path_segment(name))
        except (ValueError, LocalJobError) as err:
            raise self.not_found(name) from err

    def create(self, request: dict) -> dict:
        try:
            return endpoints.create_endpoint_config(request, log)
        except (ValueError, KeyError, LocalJobError) as err:
            raise ValidationError(f"CreateEndpointConfig: {err}") from err

    def delete(self, name: str) -> None:
        self.describe(name)
        endpoints.delete_endpoint_config(name, log)


class _Endpoint(_Resource):
    """Creating -> InService | Failed; Updating -> InService (rolled back on failure); Deleting -> gone.
    The deployment runs in a worker (``local_aws.worker`` ``endpoint``), the deletion in a thread of
    the control plane (restarted by Describe when the control plane restarted in between)."""

    arn_kind, name_key, list_key, status_key = "endpoint", "EndpointName", "Endpoints", "EndpointStatus"
    summary = ("EndpointName", "EndpointArn", "CreationTime", "LastModifiedTime", "EndpointStatus")
    _deleting: dict[str, threading.Thread] = {}

    def names(self) -> list[str]:
        return endpoints.list_endpoints()

    @staticmethod
    def deployment_dir(name: str) -> Path:
        return control_plane("sagemaker", "endpoint-deployments") / path_segment(name)

    def describe(self, name: str) -> dict:
        try:
            described = endpoints.describe_endpoint(path_segment(name))
        except (ValueError, LocalJobError) as err:
            raise self.not_found(name) from err
        status = described["EndpointStatus"]
        if status in ("Creating", "Updating") and not jobs.running(self.deployment_dir(name)):
            endpoints.deployment_ended(name, jobs.last_error(self.deployment_dir(name)))
            return self.describe(name)
        if status == "Deleting":
            self._finish_deleting(name)
        return described

    def deploy(self, request: dict, operation: str) -> dict:
        try:
            endpoints.begin(request, operation)
        except (ValueError, KeyError, LocalJobError) as err:
            if "already existing" in str(err):
                raise ResourceInUseException(str(err)) from err
            raise ValidationError(str(err)) from err
        jobs.start("endpoint", self.deployment_dir(request["EndpointName"]), request)
        return {"EndpointArn": self.arn(request["EndpointName"])}

    def delete(self, name: str) -> None:
        try:
            endpoints.begin_delete(path_segment(name))
        except ValueError as err:
            raise self.not_found(name) from err
        except LocalJobError as err:
            if "Could not find" in str(err):
                raise self.not_found(name) from err
            raise ValidationError(str(err)) from err
        self._finish_deleting(name)

    def _finish_deleting(self, name: str) -> None:
        running = self._deleting.get(name)
        if running is not None and running.is_alive():
            return

        def delete() -> None:
            try:
                endpoints.delete_endpoint(name, log)
            except LocalJobError as err:  # another deletion finished it, or a deployment holds the lock
                log.warning("DeleteEndpoint %s: %s", name, err)

        self._deleting[name] = thread = threading.Thread(target=delete, name=f"delete-endpoint-{name}", daemon=True)
        thread.start()


# The end time of each job type, which an ended job's Describe answer carries.
JOB_END_TIMES = {"TrainingJobStatus": "TrainingEndTime", "TransformJobStatus": "TransformEndTime",
                 "HyperParameterTuningJobStatus": "HyperParameterTuningEndTime"}


class _Job(_Resource):
    """A job type (training, tuning, transform): a folder per job with ``request.json`` (what Create
    received), the worker's ``worker.json`` and the runner's ``describe.json``."""

    def __init__(self, kind: str, folder: str, operation: str, name_key: str, status_key: str, arn_kind: str,
                 list_key: str, summary: tuple[str, ...], validate: Callable[[dict], None],
                 first_record: Callable[[dict], dict], default_sort: str, default_order: str) -> None:
        self.kind, self.folder, self.operation = kind, folder, operation
        self.name_key, self.status_key, self.arn_kind, self.list_key = name_key, status_key, arn_kind, list_key
        self.summary, self.validate, self.first_record = summary, validate, first_record
        self.default_sort, self.default_order = default_sort, default_order

    def job_dir(self, name: str) -> Path:
        return control_plane("sagemaker", self.folder) / path_segment(name)

    def exists(self, name: str) -> bool:
        folder = control_plane("sagemaker", self.folder) / path_segment(name)
        return (folder / "describe.json").exists() or (folder / "request.json").exists()

    def names(self) -> list[str]:
        return sorted(d.name for d in control_plane("sagemaker", self.folder).iterdir()
                      if d.is_dir() and self.exists(d.name))

    def not_found(self, name: str) -> ValidationError:
        return ValidationError(f"Could not find job {name} ({self.name_key}): Requested resource not found.")

    def create(self, request: dict) -> dict:
        try:
            name = naming.check_name(request.get(self.name_key), "sagemaker", self.operation, self.name_key)
            self.validate(request)
        except (ValueError, KeyError, TypeError, LocalJobError) as err:
            raise ValidationError(f"{self.operation}: {err}") from err
        if self.exists(name):
            raise ResourceInUseException(
                f"{self.name_key} {name} is already used: names are unique within an account and region "
                f"({self.arn(name)})"
            )
        jobs.start(self.kind, self.job_dir(name), request)
        log.info("%s %s started", self.operation, name)
        return {self.arn_key: self.arn(name)}

    def describe(self, name: str) -> dict:
        try:
            job_dir = control_plane("sagemaker", self.folder) / path_segment(name)
        except ValueError as err:
            raise ValidationError(str(err)) from err
        record = read_state(job_dir / "describe.json")
        request = read_state(job_dir / "request.json")
        if record is None and request is None:
            raise self.not_found(name)
        if record is None:  # the worker has not written its record yet
            record = {**self.first_record(request), self.status_key: "InProgress", "CreationTime": now(),
                      self.arn_key: self.arn(name)}
        # A job a worker ran (not a tuning job's trial, which its tuning job's worker runs) and whose
        # worker is gone without ending the record failed.
        if record.get(self.status_key) in ("InProgress", "Stopping") and (job_dir / "worker.json").exists() \
                and not jobs.running(job_dir):
            # The worker may have ended the record between the read above and that check: read it again.
            record = read_state(job_dir / "describe.json") or record
            if record.get(self.status_key) in ("InProgress", "Stopping"):
                stamp = now()
                record.update({self.status_key: "Failed", "FailureReason": jobs.last_error(job_dir)[:1024],
                               "LastModifiedTime": stamp})
                end_key = JOB_END_TIMES.get(self.status_key)
                if end_key and end_key not in record:  # an ended job has its end, as SageMaker's answers do
                    record[end_key] = stamp
                if "SecondaryStatus" in record:
                    record["SecondaryStatus"] = "Failed"
                write_state(job_dir / "describe.json", record)
        return record

    def stop(self, name: str) -> None:
        record = self.describe(name)
        if record[self.status_key] not in ("InProgress", "Stopping"):
            raise ValidationError(f"job {name} is {record[self.status_key]}: only a job in progress can be stopped")
        jobs.stop(self.job_dir(name))


def _training_check(request: dict) -> None:
    from local_aws.training import validate_request

    validate_request(request)


def _tuning_check(request: dict) -> None:
    from local_aws.tuning import validate_request

    validate_request(request)


def _transform_check(request: dict) -> None:
    from local_aws.transform import validate_request

    validate_request(None, request)
    models.describe_model(request["ModelName"])  # LocalJobError when missing: a ValidationException


TRAINING = _Job(
    "training", "training-jobs", "CreateTrainingJob", "TrainingJobName", "TrainingJobStatus", "training-job",
    "TrainingJobSummaries",
    ("TrainingJobName", "TrainingJobArn", "CreationTime", "TrainingEndTime", "LastModifiedTime", "TrainingJobStatus",
     "SecondaryStatus"),
    _training_check,
    lambda r: {k: r[k] for k in ("TrainingJobName", "AlgorithmSpecification", "RoleArn", "OutputDataConfig",
                                 "ResourceConfig", "StoppingCondition", "HyperParameters", "InputDataConfig",
                                 "EnableManagedSpotTraining", "CheckpointConfig") if k in r}
    | {"SecondaryStatus": "Starting", "SecondaryStatusTransitions": []},
    "CreationTime", "Ascending",
)
TUNING = _Job(
    "tuning", "tuning-jobs", "CreateHyperParameterTuningJob", "HyperParameterTuningJobName",
    "HyperParameterTuningJobStatus", "hyper-parameter-tuning-job", "HyperParameterTuningJobSummaries",
    ("HyperParameterTuningJobName", "HyperParameterTuningJobArn", "HyperParameterTuningJobStatus", "Strategy",
     "CreationTime", "HyperParameterTuningEndTime", "LastModifiedTime", "TrainingJobStatusCounters",
     "ObjectiveStatusCounters", "ResourceLimits"),
    _tuning_check,
    lambda r: {k: r[k] for k in ("HyperParameterTuningJobName", "HyperParameterTuningJobConfig",
                                 "TrainingJobDefinition", "WarmStartConfig") if k in r}
    | {"TrainingJobStatusCounters": {"Completed": 0, "InProgress": 0, "RetryableError": 0,
                                     "NonRetryableError": 0, "Stopped": 0},
       "ObjectiveStatusCounters": {"Succeeded": 0, "Pending": 0, "Failed": 0}},
    "Name", "Ascending",
)
TRANSFORM = _Job(
    "transform", "transform-jobs", "CreateTransformJob", "TransformJobName", "TransformJobStatus", "transform-job",
    "TransformJobSummaries",
    ("TransformJobName", "TransformJobArn", "CreationTime", "TransformEndTime", "LastModifiedTime",
     "TransformJobStatus", "FailureReason"),
    _transform_check,
    lambda r: {k: r[k] for k in ("TransformJobName", "ModelName", "TransformInput", "TransformOutput",
                                 "TransformResources", "DataProcessing", "BatchStrategy", "MaxPayloadInMB") if k in r},
    "CreationTime", "Descending",
)


class _Trials(_Resource):
    """A tuning job's trials as ListTrainingJobsForHyperParameterTuningJob lists them (from the
    ``trials.json`` the tuning runner keeps: the trials that ended)."""

    name_key, status_key, list_key = "TrainingJobName", "TrainingJobStatus", "TrainingJobSummaries"
    summary = ("TrainingJobName", "TrainingJobArn", "TuningJobName", "CreationTime", "TrainingStartTime",
               "TrainingEndTime", "TrainingJobStatus", "TunedHyperParameters", "FailureReason",
               "FinalHyperParameterTuningJobObjectiveMetric", "ObjectiveStatus")
    default_sort, default_order = "Name", "Ascending"

    def of(self, tuning_job: str) -> list[dict]:
        try:
            TUNING.describe(tuning_job)
        except ValidationError as err:
            raise ResourceNotFound(f"Amazon SageMaker can't find a tuning job with name {tuning_job}") from err
        trials = (read_state(TUNING.job_dir(tuning_job) / "trials.json") or {}).get("TrainingJobSummaries", [])
        return [t | {"TuningJobName": tuning_job, "TrainingJobArn": t.get("TrainingJobArn") or TRAINING.arn(t["TrainingJobName"])}
                for t in trials]


TRIALS = _Trials()


def _tuning_summary(record: dict) -> dict:
    """ListHyperParameterTuningJobs' summary: Strategy and ResourceLimits come from the job's config."""
    config = record.get("HyperParameterTuningJobConfig") or {}
    return record | {"Strategy": config.get("Strategy", "Bayesian"), "ResourceLimits": config.get("ResourceLimits")}


# ---------------------------------------------------------------- the model registry

class _Group(_Resource):
    """Model package groups: ``.control-plane/sagemaker/model-packages/<group>/group.json``."""

    arn_kind, name_key, list_key, status_key = ("model-package-group", "ModelPackageGroupName",
                                                 "ModelPackageGroupSummaryList", "ModelPackageGroupStatus")
    summary = ("ModelPackageGroupName", "ModelPackageGroupArn", "ModelPackageGroupDescription", "CreationTime",
               "ModelPackageGroupStatus")
    default_order = "Ascending"

    def folder(self, group: str) -> Path:
        return control_plane("sagemaker", "model-packages", path_segment(group))

    def names(self) -> list[str]:
        return sorted(d.name for d in control_plane("sagemaker", "model-packages").iterdir()
                      if (d / "group.json").exists())

    def not_found(self, name: str) -> ValidationError:
        return ValidationError(f"ModelPackageGroup {name} does not exist.")

    def describe(self, name: str) -> dict:
        try:
            found = read_state(self.folder(name) / "group.json") if name else None
        except ValueError:
            found = None
        if found is None:
            raise self.not_found(name)
        return found

    def create(self, request: dict) -> dict:
        group = naming.check_name(request.get("ModelPackageGroupName"), "sagemaker", "CreateModelPackageGroup",
                                  "ModelPackageGroupName")
        if (self.folder(group) / "group.json").exists():
            raise ValidationError(f"Model Package Group already exists: {self.arn(group)}")
        write_state(self.folder(group) / "group.json", {
            "ModelPackageGroupName": group, "ModelPackageGroupArn": self.arn(group),
            "ModelPackageGroupDescription": request.get("ModelPackageGroupDescription", ""),
            "CreationTime": now(), "ModelPackageGroupStatus": "Completed", "CreatedBy": {}})
        return {"ModelPackageGroupArn": self.arn(group)}

    def delete(self, name: str) -> None:
        self.describe(name)
        if PACKAGES.versions(name):
            raise ConflictException(
                f"Model Package Group {self.arn(name)} has model package versions: delete them "
                "(DeleteModelPackage) before the group")
        folder = self.folder(name)
        for path in (folder / "group.json", folder / ".lock"):
            path.unlink(missing_ok=True)
        folder.rmdir()


class _Package(_Resource):
    """Model package versions, one JSON file per version in the group's folder (DescribeModelPackage's
    shape); numbered in creation order under a lock; CreateModelPackage is idempotent on ClientToken."""

    arn_kind, name_key, list_key, status_key = ("model-package", "ModelPackageName", "ModelPackageSummaryList",
                                                 "ModelPackageStatus")
    summary = ("ModelPackageName", "ModelPackageGroupName", "ModelPackageVersion", "ModelPackageArn",
               "ModelPackageDescription", "CreationTime", "ModelPackageStatus", "ModelApprovalStatus")
    default_order = "Ascending"
    sort_name = "ModelPackageArn"  # versions of one group share their ModelPackageName

    def versions(self, group: str) -> list[dict]:
        return sorted((read_state(p) for p in GROUPS.folder(group).glob("v*.json")),
                      key=lambda v: v["ModelPackageVersion"])

    def names(self) -> list[str]:
        return [f"{v['ModelPackageGroupName']}/{v['ModelPackageVersion']}"
                for group in GROUPS.names() for v in self.versions(group)]

    def arn(self, name: str) -> str:
        group, number = name.rsplit("/", 1)
        return arn("sagemaker", "model-package", f"{group.lower()}/{number}")

    def create(self, request: dict) -> dict:
        group = request.get("ModelPackageGroupName", "")
        GROUPS.describe(group)
        token = request.get("ClientToken")
        with (GROUPS.folder(group) / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            versions = self.versions(group)
            same = [v for v in versions if token and v.get("ClientToken") == token]
            if same:
                return {"ModelPackageArn": same[0]["ModelPackageArn"]}
            number = versions[-1]["ModelPackageVersion"] + 1 if versions else 1
            package = {
                "ModelPackageName": group, "ModelPackageGroupName": group, "ModelPackageVersion": number,
                "ModelPackageArn": self.arn(f"{group}/{number}"),
                "CreationTime": now(), "ModelPackageStatus": "Completed",
                "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
                "ModelApprovalStatus": request.get("ModelApprovalStatus", "PendingManualApproval"),
                **{k: request[k] for k in ("ModelPackageDescription", "InferenceSpecification", "ModelMetrics",
                                           "DriftCheckBaselines", "CustomerMetadataProperties", "ClientToken")
                   if k in request},
            }
            write_state(GROUPS.folder(group) / f"v{number:04d}.json", package)
        log.info("registered %s version %d", group, number)
        return {"ModelPackageArn": package["ModelPackageArn"], "_name": f"{group}/{number}"}

    def _find(self, name: str) -> tuple[Path, dict]:
        """A version by ARN (``.../model-package/<group>/<n>``) or ``<group>/<n>``."""
        try:
            group, number = name.rsplit(":model-package/", 1)[-1].rsplit("/", 1)
            group = next((g for g in GROUPS.names() if g.lower() == group.lower()), group)
            path = GROUPS.folder(group) / f"v{int(number):04d}.json"
        except ValueError as err:
            raise self.not_found(name) from err
        package = read_state(path)
        if package is None:
            raise self.not_found(name)
        return path, package

    def not_found(self, name: str) -> ValidationError:
        return ValidationError(f"ModelPackage {name} does not exist.")

    def describe(self, name: str) -> dict:
        return {k: v for k, v in self._find(name)[1].items() if k != "ClientToken"}

    def update(self, request: dict) -> dict:
        path, package = self._find(request.get("ModelPackageArn", ""))
        for key in ("ModelApprovalStatus", "ApprovalDescription", "CustomerMetadataProperties"):
            if key in request:
                package[key] = request[key]
        package["LastModifiedTime"] = now()
        write_state(path, package)
        return {"ModelPackageArn": package["ModelPackageArn"]}

    def delete(self, name: str) -> None:
        path, _ = self._find(name)
        path.unlink()


MODELS, ENDPOINT_CONFIGS, ENDPOINTS = _Model(), _EndpointConfig(), _Endpoint()
GROUPS, PACKAGES = _Group(), _Package()
RESOURCES: dict[str, _Resource] = {r.arn_kind: r for r in (MODELS, ENDPOINT_CONFIGS, ENDPOINTS, TRAINING, TUNING,
                                                           TRANSFORM, GROUPS, PACKAGES)}


# ---------------------------------------------------------------- List: filters, order, pages

def _time(value: object) -> dt.datetime:
    """A record's ISO time, or a request's (botocore sends epoch seconds; ISO accepted too)."""
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    parsed = dt.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def list_records(resource: _Resource, request: dict, records: Iterable[dict] | None = None,
                 shape: Callable[[dict], dict] = lambda r: r) -> dict:
    """The List* answer of ``records`` (default: every record of ``resource``), as SageMaker filters,
    sorts and pages it; NextToken is the offset of the next page."""
    rows = [shape(r) for r in (resource.records() if records is None else records)]
    name_key = resource.name_key
    if request.get("NameContains"):
        rows = [r for r in rows if request["NameContains"].lower() in str(r.get(name_key, "")).lower()]
    if request.get("StatusEquals"):
        rows = [r for r in rows if r.get(resource.status_key) == request["StatusEquals"]]
    if request.get("ModelApprovalStatus"):
        rows = [r for r in rows if r.get("ModelApprovalStatus") == request["ModelApprovalStatus"]]
    for field, key, later in (("CreationTime", "CreationTimeAfter", True), ("CreationTime", "CreationTimeBefore", False),
                              ("LastModifiedTime", "LastModifiedTimeAfter", True),
                              ("LastModifiedTime", "LastModifiedTimeBefore", False)):
        if request.get(key) is not None:
            bound = _time(request[key])
            rows = [r for r in rows if r.get(field) and (_time(r[field]) > bound if later else _time(r[field]) < bound)]
    sort_by = request.get("SortBy") or resource.default_sort
    sort_name = getattr(resource, "sort_name", name_key)
    sort_key = {"Name": lambda r: str(r.get(sort_name, "")), "Status": lambda r: str(r.get(resource.status_key, "")),
                "CreationTime": lambda r: _time(r["CreationTime"]),
                "FinalObjectiveMetricValue": lambda r: (r.get("FinalHyperParameterTuningJobObjectiveMetric")
                                                        or {}).get("Value", float("-inf"))}.get(sort_by)
    if sort_key is None:
        raise ValidationError(f"SortBy {sort_by!r} is not one of Name, CreationTime, Status")
    rows.sort(key=sort_key, reverse=(request.get("SortOrder") or resource.default_order) == "Descending")
    try:
        start = int(request.get("NextToken") or 0)
    except ValueError as err:
        raise ValidationError(f"NextToken {request['NextToken']!r} is not a token this operation returned") from err
    size = int(request.get("MaxResults") or 100)
    page = rows[start:start + size]
    answer: dict = {resource.list_key: [{k: r[k] for k in resource.summary if r.get(k) is not None} for r in page]}
    if start + size < len(rows):
        answer["NextToken"] = str(start + size)
    return answer


# ---------------------------------------------------------------- tags

class _Tags:
    """Tags by ARN, in ``.control-plane/sagemaker/tags/<arn kind>/<name>.json``; a resource's tags go
    when it goes."""

    def resolve(self, resource_arn: str) -> tuple[_Resource, str]:
        """The resource type and name an ARN of this account and region names; ValidationException else."""
        prefix = arn("sagemaker", "", "")[:-1]  # arn:aws:sagemaker:<region>:<account>:
        kind, _, rest = resource_arn[len(prefix):].partition("/") if resource_arn.startswith(prefix) else ("", "", "")
        resource = RESOURCES.get(kind)
        if resource is not None and rest:
            if resource is PACKAGES:
                try:
                    package = PACKAGES.describe(rest)
                    return resource, f"{package['ModelPackageGroupName']}/{package['ModelPackageVersion']}"
                except ValidationError:
                    pass
            else:
                name = next((n for n in resource.names() if n.lower() == rest), None)
                if name is not None:
                    return resource, name
        raise ValidationError(f"Resource {resource_arn} does not exist (ResourceArn names no SageMaker resource of "
                              "this account and region that the local target keeps)")

    @staticmethod
    def file(resource: _Resource, name: str) -> Path:
        return control_plane("sagemaker", "tags", resource.arn_kind) / f"{path_segment(name.replace('/', '@'))}.json"

    def get(self, resource: _Resource, name: str) -> list[dict]:
        return (read_state(self.file(resource, name)) or {}).get("Tags", [])

    def put(self, resource: _Resource, name: str, tags: list[dict]) -> list[dict]:
        merged = {t["Key"]: t for t in self.get(resource, name)} | {t["Key"]: t for t in tags or []}
        if len(merged) > 50:
            raise ValidationError(f"a SageMaker resource has at most 50 tags; {name} would have {len(merged)}")
        write_state(self.file(resource, name), {"Tags": list(merged.values())})
        return list(merged.values())

    def remove(self, resource: _Resource, name: str, keys: list[str] | None = None) -> None:
        if keys is None:
            self.file(resource, name).unlink(missing_ok=True)
        else:
            write_state(self.file(resource, name), {"Tags": [t for t in self.get(resource, name) if t["Key"] not in keys]})


TAGS = _Tags()


# ---------------------------------------------------------------- moto's backend and response

class LocalSageMakerBackend(SageMakerModelBackend):
    """moto's SageMaker backend over the control plane's files (the runners' records)."""

    EMULATED_OPERATIONS = frozenset({
        "CreateModel", "DescribeModel", "ListModels", "DeleteModel",
        "CreateEndpointConfig", "DescribeEndpointConfig", "ListEndpointConfigs", "DeleteEndpointConfig",
        "CreateEndpoint", "UpdateEndpoint", "DescribeEndpoint", "ListEndpoints", "DeleteEndpoint",
        "CreateTrainingJob", "DescribeTrainingJob", "ListTrainingJobs", "StopTrainingJob",
        "CreateHyperParameterTuningJob", "DescribeHyperParameterTuningJob", "ListHyperParameterTuningJobs",
        "StopHyperParameterTuningJob", "ListTrainingJobsForHyperParameterTuningJob",
        "CreateTransformJob", "DescribeTransformJob", "ListTransformJobs", "StopTransformJob",
        "CreateModelPackageGroup", "DescribeModelPackageGroup", "ListModelPackageGroups", "DeleteModelPackageGroup",
        "CreateModelPackage", "DescribeModelPackage", "UpdateModelPackage", "ListModelPackages", "DeleteModelPackage",
        "AddTags", "ListTags", "DeleteTags",
    })

    # -- create / stop / list (called by LocalSageMakerResponse with the request)

    def local_create(self, resource: _Resource, request: dict) -> dict:
        answer = resource.create(request)  # type: ignore[attr-defined]
        name = answer.pop("_name", None) or request[resource.name_key]
        if request.get("Tags"):
            TAGS.put(resource, name, request["Tags"])
        return {resource.arn_key: answer[resource.arn_key]}

    def local_deploy(self, request: dict, operation: str) -> dict:
        answer = ENDPOINTS.deploy(request, operation)
        if operation == "CreateEndpoint" and request.get("Tags"):
            TAGS.put(ENDPOINTS, request["EndpointName"], request["Tags"])
        return answer

    def local_stop(self, job: _Job, name: str) -> None:
        job.stop(name)

    def local_list(self, resource: _Resource, request: dict) -> dict:
        shape = _tuning_summary if resource is TUNING else (lambda r: r)
        return list_records(resource, request, shape=shape)

    def list_tuning_trials(self, request: dict) -> dict:
        """ListTrainingJobsForHyperParameterTuningJob: the trials the tuning job recorded."""
        return list_records(TRIALS, request, records=TRIALS.of(request.get("HyperParameterTuningJobName", "")))

    def local_describe(self, resource: _Resource, name: str) -> dict:
        return resource.describe(name)

    def local_delete(self, resource: _Resource, name: str) -> None:
        resource.delete(name)  # type: ignore[attr-defined]
        TAGS.remove(resource, name)

    # -- moto's methods whose answers moto's response code serializes as they are

    @moto_ext.overrides
    def describe_endpoint_config(self, endpoint_config_name: str) -> dict:
        return ENDPOINT_CONFIGS.describe(endpoint_config_name)

    @moto_ext.overrides
    def describe_endpoint(self, endpoint_name: str) -> dict:
        return ENDPOINTS.describe(endpoint_name)

    @moto_ext.overrides
    def describe_training_job(self, training_job_name: str) -> dict:
        return TRAINING.describe(training_job_name)

    @moto_ext.overrides
    def describe_hyper_parameter_tuning_job(self, hyper_parameter_tuning_job_name: str) -> dict:
        return TUNING.describe(hyper_parameter_tuning_job_name)

    @moto_ext.overrides
    def describe_transform_job(self, transform_job_name: str) -> dict:
        return TRANSFORM.describe(transform_job_name)

    @moto_ext.overrides
    def delete_model(self, model_name: str) -> None:
        self.local_delete(MODELS, model_name)

    @moto_ext.overrides
    def delete_endpoint_config(self, endpoint_config_name: str) -> None:
        self.local_delete(ENDPOINT_CONFIGS, endpoint_config_name)

    @moto_ext.overrides
    def delete_endpoint(self, endpoint_name: str) -> None:
        ENDPOINTS.delete(endpoint_name)  # Deleting now; the tags go with the state when the containers stopped
        TAGS.remove(ENDPOINTS, endpoint_name)

    @moto_ext.overrides
    def list_tags(self, arn: str, MaxResults: int | None = None, NextToken: str | None = None) -> tuple:
        tags = TAGS.get(*TAGS.resolve(arn))
        start, size = int(NextToken or 0), int(MaxResults or 50)
        return tags[start:start + size], (str(start + size) if start + size < len(tags) else None)

    @moto_ext.overrides
    def add_tags(self, arn: str, tags: list[dict[str, str]]) -> list[dict[str, str]]:
        return TAGS.put(*TAGS.resolve(arn), tags)

    @moto_ext.overrides
    def delete_tags(self, arn: str, tag_keys: list[str]) -> None:
        TAGS.remove(*TAGS.resolve(arn), keys=list(tag_keys or []))


class LocalSageMakerResponse(SageMakerResponse):
    """The handlers whose answers moto builds from its own objects (Create*, List*, DescribeModel,
    the registry) or that moto does not have (Stop*, UpdateEndpoint, DeleteModelPackage[Group],
    ListTrainingJobsForHyperParameterTuningJob): the request goes to ``LocalSageMakerBackend`` as sent."""

    EMULATED_OPERATIONS = LocalSageMakerBackend.EMULATED_OPERATIONS

    @property
    def local(self) -> LocalSageMakerBackend:
        backend = self.sagemaker_backend
        if not isinstance(backend, LocalSageMakerBackend):
            raise moto_ext.MotoExtensionError("moto's SageMaker backend is not LocalSageMakerBackend: call "
                                              "local_aws.sagemaker_api.install() before the first SageMaker request")
        return backend

    def _request(self) -> dict:
        return json.loads(self.body or "{}")

    def _name(self, key: str) -> str:
        return self._request().get(key, "")

    # models, endpoint configs, endpoints
    @moto_ext.overrides
    def create_model(self) -> ActionResult:
        return ActionResult(self.local.local_create(MODELS, self._request()))

    @moto_ext.overrides
    def describe_model(self) -> ActionResult:
        return ActionResult(self.local.local_describe(MODELS, self._name("ModelName")))

    @moto_ext.overrides
    def list_models(self) -> ActionResult:
        return ActionResult(self.local.local_list(MODELS, self._request()))

    @moto_ext.overrides
    def create_endpoint_config(self) -> ActionResult:
        return ActionResult(self.local.local_create(ENDPOINT_CONFIGS, self._request()))

    @moto_ext.overrides
    def list_endpoint_configs(self) -> ActionResult:
        return ActionResult(self.local.local_list(ENDPOINT_CONFIGS, self._request()))

    @moto_ext.overrides
    def create_endpoint(self) -> ActionResult:
        return ActionResult(self.local.local_deploy(self._request(), "CreateEndpoint"))

    def update_endpoint(self) -> ActionResult:
        return ActionResult(self.local.local_deploy(self._request(), "UpdateEndpoint"))

    @moto_ext.overrides
    def list_endpoints(self) -> ActionResult:
        return ActionResult(self.local.local_list(ENDPOINTS, self._request()))

    # jobs
    @moto_ext.overrides
    def create_training_job(self) -> ActionResult:
        return ActionResult(self.local.local_create(TRAINING, self._request()))

    @moto_ext.overrides
    def list_training_jobs(self) -> ActionResult:
        return ActionResult(self.local.local_list(TRAINING, self._request()))

    def stop_training_job(self) -> ActionResult:
        self.local.local_stop(TRAINING, self._name("TrainingJobName"))
        return EmptyResult()

    @moto_ext.overrides
    def create_hyper_parameter_tuning_job(self) -> ActionResult:
        return ActionResult(self.local.local_create(TUNING, self._request()))

    @moto_ext.overrides
    def list_hyper_parameter_tuning_jobs(self) -> ActionResult:
        return ActionResult(self.local.local_list(TUNING, self._request()))

    def stop_hyper_parameter_tuning_job(self) -> ActionResult:
        self.local.local_stop(TUNING, self._name("HyperParameterTuningJobName"))
        return EmptyResult()

    def list_training_jobs_for_hyper_parameter_tuning_job(self) -> ActionResult:
        return ActionResult(self.local.list_tuning_trials(self._request()))

    @moto_ext.overrides
    def create_transform_job(self) -> ActionResult:
        return ActionResult(self.local.local_create(TRANSFORM, self._request()))

    @moto_ext.overrides
    def list_transform_jobs(self) -> ActionResult:
        return ActionResult(self.local.local_list(TRANSFORM, self._request()))

    def stop_transform_job(self) -> ActionResult:
        self.local.local_stop(TRANSFORM, self._name("TransformJobName"))
        return EmptyResult()

    # the model registry
    @moto_ext.overrides
    def create_model_package_group(self) -> ActionResult:
        return ActionResult(self.local.local_create(GROUPS, self._request()))

    @moto_ext.overrides
    def describe_model_package_group(self) -> ActionResult:
        return ActionResult(self.local.local_describe(GROUPS, self._name("ModelPackageGroupName")))

    @moto_ext.overrides
    def list_model_package_groups(self) -> ActionResult:
        return ActionResult(self.local.local_list(GROUPS, self._request()))

    def delete_model_package_group(self) -> ActionResult:
        self.local.local_delete(GROUPS, self._name("ModelPackageGroupName"))
        return EmptyResult()

    @moto_ext.overrides
    def create_model_package(self) -> ActionResult:
        return ActionResult(self.local.local_create(PACKAGES, self._request()))

    @moto_ext.overrides
    def describe_model_package(self) -> ActionResult:
        return ActionResult(self.local.local_describe(PACKAGES, self._name("ModelPackageName")))

    @moto_ext.overrides
    def update_model_package(self) -> ActionResult:
        return ActionResult(PACKAGES.update(self._request()))

    @moto_ext.overrides
    def list_model_packages(self) -> ActionResult:
        request = self._request()
        group = request.get("ModelPackageGroupName", "")
        records = PACKAGES.versions(group) if group and group in GROUPS.names() else []
        return ActionResult(list_records(PACKAGES, request, records=records))

    def delete_model_package(self) -> ActionResult:
        name = self._name("ModelPackageName")
        _, package = PACKAGES._find(name)
        self.local.local_delete(PACKAGES, f"{package['ModelPackageGroupName']}/{package['ModelPackageVersion']}")
        return EmptyResult()


def install() -> None:
    """Make LocalSageMakerBackend moto's SageMaker backend and LocalSageMakerResponse its handler (before serving)."""
    moto_ext.register_backend("sagemaker", LocalSageMakerBackend)
    moto_ext.register_responses(sagemaker_urls, SageMakerResponse, LocalSageMakerResponse)
