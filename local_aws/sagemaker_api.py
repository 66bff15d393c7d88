"""SageMaker's job APIs on the control plane: moto's request handling, the local runners' jobs.

moto parses each request and serializes each answer with botocore's service model (its
``ActionResult``); the operations below replace moto's in-memory fakes, whose jobs are Completed
the moment they are created, with real jobs: CreateTrainingJob, CreateHyperParameterTuningJob and
CreateTransformJob validate the request as the local runner needs it, refuse a name already used
(as SageMaker does: names are unique per account and region), start a worker
(``local_aws.worker``) and answer at once; Describe* answer from the job's record, so the
provider's ``SageMakerTrigger`` waits through InProgress (and a training job's secondary statuses,
spot interruptions included) to Completed, Failed or Stopped with the real FailureReason.
CreateModel/DescribeModel keep models in the control plane folder (``local_aws.models``), where
transform jobs and endpoints read them. CreateEndpointConfig, CreateEndpoint and UpdateEndpoint
deploy with ``local_aws.endpoints`` (container processes behind the Runtime router, blue/green
traffic shifting, rollback on the alarms), DescribeEndpoint reports Creating, Updating, InService
or Failed, and the FailureReason of a rolled-back update. Model package groups and versions (the
registry) are files too, versions numbered in order, CreateModelPackage idempotent on ClientToken,
ListModelPackages filtered, sorted and paginated as the service does. State lives in files under the lake's ``.control-plane/``,
so it survives a restart of the control plane.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from moto.core.responses import ActionResult
from moto.sagemaker.exceptions import ResourceInUseException, ValidationError
from moto.sagemaker.responses import SageMakerResponse

from churn_ml import naming
from local_aws import jobs
from local_aws.common import LocalJobError, arn, control_plane, now, path_segment, read_state, write_state

log = logging.getLogger(__name__)


class _Kind:
    """One job type: its folder, name and status fields, request check and first record."""

    def __init__(self, kind: str, folder: str, operation: str, name_key: str, status_key: str, arn_kind: str,
                 validate: Callable[[dict], None], first_record: Callable[[dict], dict]) -> None:
        self.kind, self.folder, self.operation = kind, folder, operation
        self.name_key, self.status_key, self.arn_kind = name_key, status_key, arn_kind
        self.validate, self.first_record = validate, first_record

    def job_dir(self, name: str) -> Path:
        return control_plane("sagemaker", self.folder) / path_segment(name)

    def exists(self, name: str) -> bool:
        folder = control_plane("sagemaker", self.folder) / path_segment(name)
        return (folder / "describe.json").exists() or (folder / "request.json").exists()

    def create(self, request: dict) -> dict:
        try:
            name = naming.check_name(request.get(self.name_key), "sagemaker", self.operation, self.name_key)
            self.validate(request)
        except (ValueError, KeyError, TypeError, LocalJobError) as err:
            raise ValidationError(f"{self.operation}: {err}") from err
        if self.exists(name):
            raise ResourceInUseException(
                f"{self.name_key} {name} is already used: names are unique within an account and region "
                f"({arn('sagemaker', self.arn_kind, name.lower())})"
            )
        job_dir = self.job_dir(name)
        job_dir.mkdir(parents=True, exist_ok=True)
        jobs.start(self.kind, job_dir, request)
        log.info("%s %s started", self.operation, name)
        return {self.arn_key: arn("sagemaker", self.arn_kind, name.lower())}

    @property
    def arn_key(self) -> str:
        return self.name_key.replace("Name", "Arn")

    def describe(self, name: str) -> dict:
        try:
            job_dir = control_plane("sagemaker", self.folder) / path_segment(name)
        except ValueError as err:
            raise ValidationError(str(err)) from err
        record = read_state(job_dir / "describe.json")
        request = read_state(job_dir / "request.json")
        if record is None and request is None:
            raise ValidationError(f"Could not find job {name} ({self.name_key}): Requested resource not found.")
        if record is None:  # the worker has not written its record yet
            record = {**self.first_record(request), self.status_key: "InProgress", "CreationTime": now(),
                      self.arn_key: arn("sagemaker", self.arn_kind, name.lower())}
        if record.get(self.status_key) in ("InProgress", "Stopping") and not jobs.running(job_dir):
            record.update({self.status_key: "Failed", "FailureReason": jobs.last_error(job_dir)[:1024],
                           "LastModifiedTime": now()})
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
    from local_aws.models import describe_model
    from local_aws.transform import validate_request

    validate_request(None, request)
    describe_model(request["ModelName"])  # ValueError-like LocalJobError when missing: checked below


TRAINING = _Kind(
    "training", "training-jobs", "CreateTrainingJob", "TrainingJobName", "TrainingJobStatus", "training-job",
    _training_check,
    lambda r: {k: r[k] for k in ("TrainingJobName", "AlgorithmSpecification", "RoleArn", "OutputDataConfig",
                                 "ResourceConfig", "StoppingCondition", "HyperParameters", "InputDataConfig",
                                 "EnableManagedSpotTraining", "CheckpointConfig") if k in r}
    | {"SecondaryStatus": "Starting", "SecondaryStatusTransitions": []},
)
TUNING = _Kind(
    "tuning", "tuning-jobs", "CreateHyperParameterTuningJob", "HyperParameterTuningJobName",
    "HyperParameterTuningJobStatus", "hyper-parameter-tuning-job", _tuning_check,
    lambda r: {k: r[k] for k in ("HyperParameterTuningJobName", "HyperParameterTuningJobConfig",
                                 "TrainingJobDefinition", "WarmStartConfig") if k in r}
    | {"TrainingJobStatusCounters": {"Completed": 0, "InProgress": 0, "RetryableError": 0,
                                     "NonRetryableError": 0, "Stopped": 0},
       "ObjectiveStatusCounters": {"Succeeded": 0, "Pending": 0, "Failed": 0}},
)
TRANSFORM = _Kind(
    "transform", "transform-jobs", "CreateTransformJob", "TransformJobName", "TransformJobStatus", "transform-job",
    _transform_check,
    lambda r: {k: r[k] for k in ("TransformJobName", "ModelName", "TransformInput", "TransformOutput",
                                 "TransformResources", "DataProcessing", "BatchStrategy", "MaxPayloadInMB") if k in r},
)


def _body(response: SageMakerResponse) -> dict:
    return json.loads(response.body or "{}")


def _create(kind: _Kind):
    def handler(self: SageMakerResponse) -> ActionResult:
        return ActionResult(kind.create(_body(self)))
    return handler


def _describe(kind: _Kind):
    def handler(self: SageMakerResponse) -> ActionResult:
        return ActionResult(kind.describe(_body(self).get(kind.name_key, "")))
    return handler


def _stop(kind: _Kind):
    def handler(self: SageMakerResponse) -> ActionResult:
        kind.stop(_body(self).get(kind.name_key, ""))
        return ActionResult({})
    return handler


def _create_model(self: SageMakerResponse) -> ActionResult:
    from local_aws.models import create_model

    request = _body(self)
    try:
        model = create_model(request, log)
    except (ValueError, KeyError, LocalJobError) as err:
        raise ValidationError(f"CreateModel: {err}") from err
    return ActionResult({"ModelArn": model["ModelArn"]})


def _describe_model(self: SageMakerResponse) -> ActionResult:
    from local_aws.models import describe_model

    name = _body(self).get("ModelName", "")
    try:
        return ActionResult(describe_model(path_segment(name)))
    except (ValueError, LocalJobError) as err:
        raise ValidationError(f'Could not find model "{name}".') from err


# ---------------------------------------------------------------- endpoints

def _deployment_dir(name: str) -> Path:
    return control_plane("sagemaker", "endpoint-deployments") / path_segment(name)


def _create_endpoint_config(self: SageMakerResponse) -> ActionResult:
    from local_aws.endpoints import create_endpoint_config

    try:
        config = create_endpoint_config(_body(self), log)
    except (ValueError, KeyError, LocalJobError) as err:
        raise ValidationError(f"CreateEndpointConfig: {err}") from err
    return ActionResult({"EndpointConfigArn": config["EndpointConfigArn"]})


def _describe_endpoint_config(self: SageMakerResponse) -> ActionResult:
    from local_aws.endpoints import describe_endpoint_config

    name = _body(self).get("EndpointConfigName", "")
    try:
        return ActionResult(describe_endpoint_config(path_segment(name)))
    except (ValueError, LocalJobError) as err:
        raise ValidationError(f"Could not find endpoint configuration {name}.") from err


def _deploy(operation: str):
    """CreateEndpoint / UpdateEndpoint: record Creating or Updating, then deploy in a worker (blue/green
    with the request's DeploymentConfig, rolled back on its alarms)."""
    def handler(self: SageMakerResponse) -> ActionResult:
        from local_aws.endpoints import begin

        request = _body(self)
        try:
            begin(request, operation)
        except (ValueError, KeyError, LocalJobError) as err:
            if "already existing" in str(err):
                raise ResourceInUseException(str(err)) from err
            raise ValidationError(str(err)) from err
        jobs.start("endpoint", _deployment_dir(request["EndpointName"]), request)
        return ActionResult({"EndpointArn": arn("sagemaker", "endpoint", request["EndpointName"].lower())})
    return handler


def _describe_endpoint(self: SageMakerResponse) -> ActionResult:
    from local_aws.endpoints import deployment_ended, describe_endpoint

    name = _body(self).get("EndpointName", "")
    try:
        described = describe_endpoint(path_segment(name))
    except (ValueError, LocalJobError) as err:
        raise ValidationError(f"Could not find endpoint {name}.") from err
    if described["EndpointStatus"] in ("Creating", "Updating") and not jobs.running(_deployment_dir(name)):
        deployment_ended(name, jobs.last_error(_deployment_dir(name)))
        described = describe_endpoint(name)
    return ActionResult(described)


# ---------------------------------------------------------------- model registry

class _Registry:
    """Model package groups and versions, one JSON file per version under
    ``.control-plane/sagemaker/model-packages/<group>/`` (DescribeModelPackage's shape); versions are
    numbered in creation order under a lock, and CreateModelPackage is idempotent on ClientToken."""

    def group_dir(self, group: str) -> Path:
        return control_plane("sagemaker", "model-packages", path_segment(group))

    def group_arn(self, group: str) -> str:
        return arn("sagemaker", "model-package-group", group.lower())

    def create_group(self, request: dict) -> dict:
        group = naming.check_name(request.get("ModelPackageGroupName"), "sagemaker", "CreateModelPackageGroup",
                                  "ModelPackageGroupName")
        folder = self.group_dir(group)
        if (folder / "group.json").exists():
            raise ValidationError(f"Model Package Group already exists: {self.group_arn(group)}")
        write_state(folder / "group.json", {
            "ModelPackageGroupName": group, "ModelPackageGroupArn": self.group_arn(group),
            "ModelPackageGroupDescription": request.get("ModelPackageGroupDescription", ""),
            "CreationTime": now(), "ModelPackageGroupStatus": "Completed",
            "CreatedBy": {}})
        return {"ModelPackageGroupArn": self.group_arn(group)}

    def describe_group(self, name: str) -> dict:
        found = read_state(self.group_dir(name) / "group.json") if name else None
        if found is None:
            raise ValidationError(f"ModelPackageGroup {name} does not exist.")
        return found

    def _versions(self, group: str) -> list[dict]:
        return sorted((read_state(p) for p in self.group_dir(group).glob("v*.json")),
                      key=lambda v: v["ModelPackageVersion"])

    def create(self, request: dict) -> dict:
        import fcntl

        group = request.get("ModelPackageGroupName", "")
        self.describe_group(group)
        token = request.get("ClientToken")
        with (self.group_dir(group) / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            versions = self._versions(group)
            same = [v for v in versions if token and v.get("ClientToken") == token]
            if same:
                return {"ModelPackageArn": same[0]["ModelPackageArn"]}
            number = versions[-1]["ModelPackageVersion"] + 1 if versions else 1
            package = {
                "ModelPackageName": group, "ModelPackageGroupName": group, "ModelPackageVersion": number,
                "ModelPackageArn": arn("sagemaker", "model-package", f"{group.lower()}/{number}"),
                "CreationTime": now(), "ModelPackageStatus": "Completed",
                "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
                "ModelApprovalStatus": request.get("ModelApprovalStatus", "PendingManualApproval"),
                **{k: request[k] for k in ("ModelPackageDescription", "InferenceSpecification", "ModelMetrics",
                                           "DriftCheckBaselines", "CustomerMetadataProperties", "ClientToken")
                   if k in request},
            }
            write_state(self.group_dir(group) / f"v{number:04d}.json", package)
        log.info("registered %s version %d", group, number)
        return {"ModelPackageArn": package["ModelPackageArn"]}

    def _find(self, name: str) -> tuple[Path, dict]:
        """A version by ARN (``.../model-package/<group>/<n>``) or ``<group>/<n>``."""
        try:
            group, number = name.rsplit(":model-package/", 1)[-1].rsplit("/", 1)
            path = self.group_dir(group) / f"v{int(number):04d}.json"
        except ValueError as err:
            raise ValidationError(f"ModelPackage {name} does not exist.") from err
        package = read_state(path)
        if package is None:
            raise ValidationError(f"ModelPackage {name} does not exist.")
        return path, package

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

    def list(self, request: dict) -> dict:
        group = request.get("ModelPackageGroupName", "")
        versions = self._versions(group) if group and (self.group_dir(group) / "group.json").exists() else []
        if request.get("ModelApprovalStatus"):
            versions = [v for v in versions if v["ModelApprovalStatus"] == request["ModelApprovalStatus"]]
        if request.get("SortBy", "CreationTime") == "Name":
            versions.sort(key=lambda v: v["ModelPackageArn"])
        if request.get("SortOrder", "Ascending") == "Descending":
            versions.reverse()
        start = int(request.get("NextToken") or 0)
        size = int(request.get("MaxResults") or 100)
        page = versions[start:start + size]
        answer = {"ModelPackageSummaryList": [
            {k: v[k] for k in ("ModelPackageName", "ModelPackageGroupName", "ModelPackageVersion", "ModelPackageArn",
                               "ModelPackageDescription", "CreationTime", "ModelPackageStatus", "ModelApprovalStatus")
             if k in v} for v in page]}
        if start + size < len(versions):
            answer["NextToken"] = str(start + size)
        return answer


REGISTRY = _Registry()


def _registry(method: str, key: str | None = None):
    def handler(self: SageMakerResponse) -> ActionResult:
        body = _body(self)
        return ActionResult(getattr(REGISTRY, method)(body.get(key, "") if key else body))
    return handler


def install() -> None:
    """Replace moto's fake SageMaker jobs and models with the control plane's real ones."""
    for kind, create, describe, stop in (
        (TRAINING, "create_training_job", "describe_training_job", "stop_training_job"),
        (TUNING, "create_hyper_parameter_tuning_job", "describe_hyper_parameter_tuning_job",
         "stop_hyper_parameter_tuning_job"),
        (TRANSFORM, "create_transform_job", "describe_transform_job", "stop_transform_job"),
    ):
        setattr(SageMakerResponse, create, _create(kind))
        setattr(SageMakerResponse, describe, _describe(kind))
        setattr(SageMakerResponse, stop, _stop(kind))
    SageMakerResponse.create_model = _create_model
    SageMakerResponse.describe_model = _describe_model
    SageMakerResponse.create_endpoint_config = _create_endpoint_config
    SageMakerResponse.describe_endpoint_config = _describe_endpoint_config
    SageMakerResponse.create_endpoint = _deploy("CreateEndpoint")
    SageMakerResponse.update_endpoint = _deploy("UpdateEndpoint")
    SageMakerResponse.describe_endpoint = _describe_endpoint
    SageMakerResponse.create_model_package_group = _registry("create_group")
    SageMakerResponse.describe_model_package_group = _registry("describe_group", "ModelPackageGroupName")
    SageMakerResponse.create_model_package = _registry("create")
    SageMakerResponse.describe_model_package = _registry("describe", "ModelPackageName")
    SageMakerResponse.update_model_package = _registry("update")
    SageMakerResponse.list_model_packages = _registry("list")
