"""SageMaker: training and tuning on managed spot, batch transform, endpoint deployment.

Each class subclasses the provider's operator, takes its arguments (the AWS request) and runs its
code path on both targets (deferrable, the provider's triggers and waiters). Added: the job's name
from its identity and reuse of the job it names (``base.IdentifiedJobMixin``), the FailureReason of
a failed job, sizing of the waits, and, for deployments, verification of what is live.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.amazon.aws.operators.sagemaker import (
    SageMakerEndpointOperator,
    SageMakerTrainingOperator,
    SageMakerTransformOperator,
    SageMakerTuningOperator,
    serialize,
)
from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
from airflow.providers.amazon.aws.utils import validate_execute_complete_event
from botocore.exceptions import ClientError

from churn_ml import canary_check, inputs, lake, naming, training_requests, transform_io
from churn_ml.cost import usage as cost_usage
from churn_ml.errors import CannotSucceedOnRetry, fail_fast
from churn_ml.job_logs import CloudWatchLog, JobLogMixin
from churn_ml.operators.base import Found, IdentifiedJobMixin
from churn_ml.operators.cost import JobCostMixin

IN_PROGRESS = ("InProgress", "Stopping")
SUCCEEDED = ("Completed",)
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"  # streams <TrainingJobName>/algo-<n>-<epoch>
TRANSFORM_LOG_GROUP = "/aws/sagemaker/TransformJobs"  # streams <TransformJobName>/<instance id>-<epoch>


class SageMakerJobFailed(RuntimeError):
    """A SageMaker job the task waited for ended Failed or Stopped; the message has its FailureReason."""


class InvalidTuningRequest(CannotSucceedOnRetry, ValueError):
    """A tuning request that no attempt can run (e.g. a budget of zero training jobs)."""


class SageMakerJobMixin(JobLogMixin, JobCostMixin, IdentifiedJobMixin):
    """Describe-based lookup of a job by name, the wait on the provider's SageMakerTrigger, the job's
    FailureReason when it fails (the provider's trigger event has the status only), and, when the deferred
    task resumes, whatever the job's end: the job's ledger record (``operators.cost``) and its own log in the
    task log (``churn_ml.job_logs``)."""

    describe_method = ""  # the SageMakerHook method that describes this operator's jobs
    status_key = ""
    cost_service = "sagemaker"

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        try:
            return self._complete(context, event)
        finally:
            self.print_job_log(event)
            self.record_job_cost(context, (event or {}).get("job_name"))

    def _complete(self, context: Any, event: dict[str, Any] | None) -> Any:
        if event is not None and event.get("status") != "success" and self.describe_method:
            name = event.get("job_name") or event.get("value") or ""
            try:
                described = getattr(self.hook, self.describe_method)(name)
            except ClientError:
                described = {}
            raise SageMakerJobFailed(
                f"{name} is {described.get(self.status_key, 'not complete')}: "
                f"{described.get('FailureReason') or event.get('message', 'no reason given')}"
            )
        return super().execute_complete(context, event)

    def _lookup(self, name: str) -> Found | None:
        job = self._existing(name, getattr(self.hook, self.describe_method))
        if job is None:
            return None
        status = job[self.status_key]
        return Found.of(status, job, IN_PROGRESS, SUCCEEDED)

    def _existing(self, name: str, describe) -> dict | None:
        """The Describe* answer, or None when there is no such job/model/endpoint. SageMaker says so
        with ResourceNotFound (the documented error of the job Describes) or with a
        ValidationException "Could not find ..." / "Requested resource not found" (models,
        endpoints, and in practice training jobs); any other error is raised."""
        try:
            return describe(name)
        except ClientError as err:
            error = err.response["Error"]
            message = error.get("Message", "").lower()
            if error["Code"] == "ResourceNotFound" or (
                error["Code"] == "ValidationException" and ("could not find" in message or "not found" in message)
            ):
                return None
            raise

    def _wait_for(self, name: str, job_type: str, status: str, max_attempts: int | None = None) -> None:
        """Defer on the provider's SageMakerTrigger until job (or endpoint) ``name`` finishes."""
        self.log.info("waiting for %s %s (%s) on the triggerer", job_type.lower(), name, status)
        trigger_args = {"waiter_max_attempts": max_attempts} if max_attempts else {}
        self.defer(
            trigger=SageMakerTrigger(
                job_name=name, job_type=job_type, waiter_delay=self.check_interval,
                aws_conn_id=self.aws_conn_id, **trigger_args,
            ),
            method_name="execute_complete",
        )


def _wait_budget(training: dict) -> int:
    """Seconds one training job may take: MaxWaitTimeInSeconds on spot (it includes the waits for
    capacity), MaxRuntimeInSeconds otherwise."""
    stopping = training.get("StoppingCondition", {})
    if training.get("EnableManagedSpotTraining"):
        return int(stopping.get("MaxWaitTimeInSeconds") or stopping["MaxRuntimeInSeconds"])
    return int(stopping.get("MaxRuntimeInSeconds", 86400))


class ChurnTrainingOperator(SageMakerJobMixin, SageMakerTrainingOperator):
    """CreateTrainingJob named by its identity (``base``); locally, the training container contract.

    The request names the code version (``sagemaker_submit_directory`` under ``code/<version>/``) and
    the training set's fingerprint (a hyperparameter), so changed code or data is a new job and a
    retry or an unchanged rerun finds the old one.

    Managed spot: ``StoppingCondition.MaxWaitTimeInSeconds`` is cast to int with the provider's other
    integer fields, ``CheckpointConfig.S3Uri`` gets the job's base name appended (a retry, or a new
    ``-rN`` attempt after a failure, resumes the same checkpoints), and the deferred wait is sized
    from MaxWaitTimeInSeconds so a long wait for spot capacity never times the task out.
    ``champion_model_uri`` (templated), when not empty, adds the ``champion`` channel: the current
    approved model, which churn_train.py scores on the same holdout.
    """

    describe_method, status_key, job_kind = "describe_training_job", "TrainingJobStatus", "training job"

    def job_log_sources(self, event: dict[str, Any]) -> list[CloudWatchLog]:
        name = event.get("job_name")
        return [CloudWatchLog(TRAINING_LOG_GROUP, f"{name}/", f"log of training job {name}")] if name else []

    template_fields: Sequence[str] = (*SageMakerTrainingOperator.template_fields, "champion_model_uri")

    def __init__(self, *, job_name_prefix: str, champion_model_uri: str = "", **kwargs: Any) -> None:
        kwargs.setdefault("deferrable", True)
        kwargs["check_if_job_exists"] = False  # re-attach instead of the provider's timestamp suffix
        # Deferred, the provider cannot tail the job's CloudWatch log: print_log would only hold the
        # worker slot for one check_interval to print what the first seconds logged.
        kwargs.setdefault("print_log", False)
        super().__init__(**kwargs)
        self.job_name_prefix = job_name_prefix
        self.champion_model_uri = champion_model_uri

    def _create_integer_fields(self) -> None:
        super()._create_integer_fields()
        self.integer_fields.append(["StoppingCondition", "MaxWaitTimeInSeconds"])

    def job_answer(self, name: str) -> tuple[str, dict]:
        return name, self.hook.describe_training_job(name)

    def job_usages(self, answer: dict) -> list:
        return cost_usage.training_job_usage(answer)

    def execute(self, context: Any) -> dict:
        with fail_fast(f"{self.task_id}: "):
            return self._start_or_reuse(context)

    def _start_or_reuse(self, context: Any) -> dict:
        self._create_integer_fields()
        self.parse_config_integers()
        if self.champion_model_uri:
            self.config.setdefault("InputDataConfig", []).append(_s3_channel("champion", self.champion_model_uri))
        identity = self.job_identity(
            context, self.job_name_prefix, {k: v for k, v in self.config.items() if k != "TrainingJobName"}
        )
        if "CheckpointConfig" in self.config:
            checkpoint = self.config["CheckpointConfig"]
            checkpoint["S3Uri"] = f"{checkpoint['S3Uri'].rstrip('/')}/{identity.name}/"
        self.max_attempts = max(self.max_attempts or 0, _wait_budget(self.config) // self.check_interval + 10)
        name, found = self.find_attempt(identity, self._lookup)
        self.config["TrainingJobName"] = name
        if found is None:
            return super().execute(context)
        if found.state == "succeeded":
            self.record_job_cost(context, name)
            # What serialize_result keeps for the provider's get_openlineage_facets_on_complete.
            self.serialized_training_data = serialize(found.job)
            return {"Training": self.serialized_training_data}
        self._wait_for(name, "Training", found.status, self.max_attempts)


class BatchScoringOperator(SageMakerJobMixin, SageMakerTransformOperator):
    """CreateModel + CreateTransformJob named by their identity; locally, the same transform semantics.

    ``inputs`` (templated input specs, ``churn_ml.inputs``) are fingerprinted into the job's identity:
    a corrected scoring input is a new job.
    """

    describe_method, status_key, job_kind = "describe_transform_job", "TransformJobStatus", "transform job"

    def job_log_sources(self, event: dict[str, Any]) -> list[CloudWatchLog]:
        name = event.get("job_name")
        return [CloudWatchLog(TRANSFORM_LOG_GROUP, f"{name}/", f"log of transform job {name}")] if name else []

    template_fields: Sequence[str] = (*SageMakerTransformOperator.template_fields, "inputs", "cost_model_version")

    def __init__(self, *, job_name_prefix: str, inputs: list[dict] | None = None, cost_model_version: str = "",
                 **kwargs: Any) -> None:
        kwargs.setdefault("deferrable", True)
        kwargs["check_if_job_exists"] = False
        kwargs["check_if_model_exists"] = False
        super().__init__(**kwargs)
        self.job_name_prefix = job_name_prefix
        self.inputs = inputs or []
        self.cost_model_version = cost_model_version  # the registry version scoring: its ledger record names it

    def execute(self, context: Any) -> dict:
        with fail_fast(f"{self.task_id}: "):
            return self._start_or_reuse(context)

    def job_answer(self, name: str) -> tuple[str, dict]:
        return name, self.hook.describe_transform_job(name)

    def job_usages(self, answer: dict) -> list:
        return [cost_usage.transform_job_usage(answer)]

    def _start_or_reuse(self, context: Any) -> dict:
        self._create_integer_fields()
        self.parse_config_integers()
        transform = self.config.get("Transform", self.config)
        model = self.config.get("Model")
        if model is not None:
            # One model per artifact and container definition, shared by the runs that use it.
            model["ModelName"] = naming.job_name(
                f"{self.job_name_prefix}-model", "", "", {k: v for k, v in model.items() if k != "ModelName"}
            )
            transform["ModelName"] = model["ModelName"]
        # A transform job writes to its run's staging prefix, from where the DAG publishes the partition
        # (moving the outputs away). So a job is reused while it runs or while its outputs wait to be
        # published; once they are gone (published, or cleared), a rerun or cleared task scores again.
        identity = self.job_identity(
            context, self.job_name_prefix,
            {"run_id": context["run_id"], "model": model,
             **{k: v for k, v in transform.items() if k != "TransformJobName"}},
            inputs=inputs.fingerprint(self.inputs) if self.inputs else None,
        )
        if model is not None and self._existing(model["ModelName"], self.hook.describe_model) is not None:
            self.config.pop("Model")  # same name = same definition: reuse the existing model
        name, found = self.find_attempt(identity, self._lookup, usable=transform_io.outputs_present)
        transform["TransformJobName"] = name
        if found is None:
            return super().execute(context)
        if found.state == "succeeded":
            self.record_job_cost(context, name)
            return self.serialize_result(name)
        self._wait_for(name, "Transform", found.status, self.max_attempts)


    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The provider's lineage of a transform whose model names a model package; this one's model names
        its artifact (ModelDataUrl), which the provider's method cannot see (it logs an error and leaves
        the model out): the transform's input and the artifact in, its output out, named as it names them."""
        container = getattr(self, "serialized_model", {}).get("PrimaryContainer", {})
        if "ModelPackageName" in container or not container.get("ModelDataUrl"):
            return super().get_openlineage_facets_on_complete(task_instance)
        from airflow.providers.openlineage.extractors import OperatorLineage

        transform = self.serialized_transform
        return OperatorLineage(
            inputs=[self.path_to_s3_dataset(transform["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]),
                    self.path_to_s3_dataset(container["ModelDataUrl"])],
            outputs=[self.path_to_s3_dataset(transform["TransformOutput"]["S3OutputPath"])],
        )


class DeploymentError(RuntimeError):
    """The endpoint does not serve the model this task deployed (rolled back, busy, or wrong answers)."""


class ModelNotApproved(DeploymentError, CannotSucceedOnRetry):
    """The registry does not say Approved for the version and artifact the task would deploy."""


class EndpointDeployOperator(SageMakerJobMixin, SageMakerEndpointOperator):
    """Deploy a registry-approved model to a real-time endpoint: blue/green, canary, auto rollback.

    ``config`` is the provider operator's ``{"Model", "EndpointConfig", "Endpoint"}``; the model and
    endpoint config names are content-addressed (the config's as ``<endpoint>-v<version>-<hash>``,
    tagged ``model_package_version``), so a retry finds what its earlier attempt created. The
    endpoint is created, or updated with the request's ``DeploymentConfig`` (blue/green traffic
    shifting, ``AutoRollbackConfiguration`` alarms).

    Refuses a model package the quality gate did not approve, or whose artifact is not the config's.
    After the wait, the live ``EndpointConfigName`` must be the new one: SageMaker rolls a failed
    blue/green update back and reports the endpoint InService, so the waiter alone would call a
    rolled-back deployment a success. Then the model's canary rows (``expectations_uri``, the
    registered evaluation.json) must score through the endpoint as they did in training.
    """

    template_fields: Sequence[str] = (*SageMakerEndpointOperator.template_fields, "model_package_version",
                                      "expectations_uri")

    def __init__(self, *, model_package_version: str | int, expectations_uri: str = "", **kwargs: Any) -> None:
        kwargs.setdefault("deferrable", True)
        super().__init__(operation="update", **kwargs)
        self.model_package_version = model_package_version
        self.expectations_uri = expectations_uri

    def _prepare(self) -> tuple[str, str]:
        """Cast the integer fields and fill in the deterministic names; returns (endpoint, config name)."""
        self._create_integer_fields()
        self.parse_config_integers()
        training_requests.resolve_data_capture(self.config["EndpointConfig"])  # before the config's name hashes it
        model, config, endpoint = self.config["Model"], self.config["EndpointConfig"], self.config["Endpoint"]
        name, version = endpoint["EndpointName"], int(self.model_package_version)
        model["ModelName"] = naming.job_name(f"{name}-model", "", "", {k: v for k, v in model.items() if k != "ModelName"})
        for variant in config["ProductionVariants"]:
            variant["ModelName"] = model["ModelName"]
        tags = [t for t in config.get("Tags", []) if t["Key"] != "model_package_version"]
        config["Tags"] = [*tags, {"Key": "model_package_version", "Value": str(version)}]
        config["EndpointConfigName"] = naming.job_name(
            f"{name}-v{version}", "", "", {k: v for k, v in config.items() if k != "EndpointConfigName"}
        )
        endpoint["EndpointConfigName"] = config["EndpointConfigName"]
        return name, config["EndpointConfigName"]

    def _approved_canary(self) -> dict | None:
        """The registry must say Approved for this version and artifact; returns its canary rows."""
        from churn_ml import registry

        version = int(self.model_package_version)
        package = registry.show_version(version)
        if package["ModelApprovalStatus"] != registry.APPROVED:
            raise ModelNotApproved(
                f"model package version {version} is {package['ModelApprovalStatus']}, not Approved "
                f"({package.get('ApprovalDescription') or 'no reason recorded'}): only models the quality gate "
                "approved are deployed"
            )
        artifact = self.config["Model"]["PrimaryContainer"]["ModelDataUrl"]
        if package["ModelDataUrl"] != artifact:
            raise ModelNotApproved(
                f"model package version {version} is {package['ModelDataUrl']}, but the request deploys {artifact}"
            )
        if not self.expectations_uri:
            return None
        return lake.read_json(self.expectations_uri).get("canary")

    def execute(self, context: Any) -> dict:
        with fail_fast(f"{self.task_id}: "):
            return self._deploy(context)

    def _deploy(self, context: Any) -> dict:
        name, config_name = self._prepare()
        canary = self._approved_canary()
        live = self._existing(name, self.hook.describe_endpoint)
        if live is not None:
            status = live["EndpointStatus"]
            pending = (live.get("PendingDeploymentSummary") or {}).get("EndpointConfigName")
            if status == "InService" and live["EndpointConfigName"] == config_name:
                self.log.info("endpoint %s already serves %s", name, config_name)
                return self._verified(name, config_name, canary)
            if status in ("Creating", "Updating", "SystemUpdating", "RollingBack"):
                if config_name in (pending, live["EndpointConfigName"]):
                    self._wait_for(name, "endpoint", status, self._max_polls())  # an earlier attempt's deployment
                raise DeploymentError(
                    f"endpoint {name} is {status} with another deployment ({pending or live['EndpointConfigName']}); "
                    "retry this task when it is InService"
                )
            if status not in ("InService", "UpdateRollbackFailed"):
                raise DeploymentError(
                    f"endpoint {name} is {status} ({live.get('FailureReason', 'no reason given')}); "
                    "delete it or fix it before deploying to it"
                )
        if self._existing(self.config["Model"]["ModelName"], self.hook.describe_model) is None:
            self.hook.create_model(self.config["Model"])
        if self._existing(config_name, self.hook.describe_endpoint_config) is None:
            self.hook.create_endpoint_config(self.config["EndpointConfig"])
        if live is None:
            self.log.info("creating endpoint %s with %s", name, config_name)
            self.hook.create_endpoint(self.config["Endpoint"], wait_for_completion=False)
        else:
            self.log.info("updating endpoint %s from %s to %s (blue/green)", name, live["EndpointConfigName"], config_name)
            self._record_fleets(name, live, None)  # what ran before this deployment, if nothing recorded it
            self.hook.update_endpoint(self.config["Endpoint"], wait_for_completion=False)
            self._record_fleets(name, live, "update")
        self._wait_for(name, "endpoint", "Creating" if live is None else "Updating", self._max_polls())

    def _max_polls(self) -> int:
        policy = self.config["Endpoint"].get("DeploymentConfig", {}).get("BlueGreenUpdatePolicy", {})
        budget = int(policy.get("MaximumExecutionTimeoutInSeconds", 3600)) + int(policy.get("TerminationWaitInSeconds", 0))
        return budget // self.check_interval + 10

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict:
        validated = validate_execute_complete_event(event)
        name, config_name = self._prepare()
        if validated["status"] != "success":
            live = self._existing(name, self.hook.describe_endpoint) or {}
            raise DeploymentError(
                f"endpoint {name} did not become InService with {config_name}: it is "
                f"{live.get('EndpointStatus', 'gone')} ({live.get('FailureReason') or validated.get('message', '')})"
            )
        return self._verified(name, config_name, self._approved_canary())

    def _record_fleets(self, name: str, live: dict, change: str | None) -> None:
        """The endpoint's deployment history, for its cost (``churn_ml.cost.recorder``): its creation (with the
        config it runs) when nothing recorded it yet (created by this task, or before the ledger existed); then
        ``update`` (a blue/green update to this task's config starts now), or ``update_complete``/``rollback``
        (at the endpoint's LastModifiedTime). A retry records the same events again (same objects).

        Bookkeeping never stops a deployment: a failure is logged, and the history it leaves incomplete makes
        churn_monitoring's record_costs fail, saying which event is missing."""
        from churn_ml.cost import recorder

        try:
            config_name = self.config["EndpointConfig"]["EndpointConfigName"]
            history = recorder.endpoint_history(name)
            if not history:
                running = live["EndpointConfigName"]
                answer = self.hook.describe_endpoint_config(running)
                recorder.record_endpoint_event(name, cost_usage.creation_event(live, answer),
                                               model_version=_config_version(running))
                if change != "update" and running == config_name:
                    return  # this task created the endpoint (or finds it serving its config): nothing else changed
            if change is None:
                return
            answer, version = self.hook.describe_endpoint_config(config_name), _config_version(config_name)
            if change == "update":
                recorder.record_endpoint_event(name, cost_usage.update_events(_utcnow(), answer)[0], model_version=version)
                return
            mine = [e for e in recorder.endpoint_history(name) if e["config"] == config_name]
            if not mine or mine[-1]["event"] in ("update_complete", "create"):
                return  # no update of this config started (already served: a rerun), or it is recorded as done
            ended = live["LastModifiedTime"]
            if mine[-1]["event"] == "rollback":
                return  # this update's end is recorded already (a retry after the rollback)
            outcome = {"completed": ended} if change == "update_complete" else {"rolled_back": ended}
            recorder.record_endpoint_event(name, cost_usage.update_events(mine[-1]["time"], answer, **outcome)[1],
                                           model_version=version)
        except Exception:
            self.log.exception("could not record the %s of endpoint %s for its cost: churn_monitoring's record_costs "
                               "will say which event is missing", change or "state", name)

    def _verified(self, name: str, config_name: str, canary: dict | None) -> dict:
        live = self.hook.describe_endpoint(name)
        rolled_back = live["EndpointConfigName"] != config_name
        self._record_fleets(name, live, "rollback" if rolled_back else "update_complete")
        if rolled_back:
            raise DeploymentError(
                f"endpoint {name} serves {live['EndpointConfigName']}, not {config_name}: the blue/green deployment "
                "was rolled back (an AutoRollbackConfiguration alarm fired or the new fleet failed its health "
                f"checks). Status {live['EndpointStatus']}; {live.get('FailureReason', '')}"
            )
        if canary and canary.get("rows"):
            runtime = AwsBaseHook(client_type="sagemaker-runtime", **self._hook_parameters).conn
            answer = runtime.invoke_endpoint(EndpointName=name, ContentType="text/csv", Accept="text/csv",
                                             Body=canary_check.csv_body(canary))
            problem = canary_check.mismatch(canary_check.scores_from_csv(answer["Body"].read().decode("utf-8")), canary)
            if problem:
                raise DeploymentError(f"endpoint {name} ({config_name}) is live but {problem}")
            self.log.info("endpoint %s serves %s; %d canary rows match training", name, config_name, len(canary["rows"]))
        return {
            "EndpointConfig": serialize(self.hook.describe_endpoint_config(config_name)),
            "Endpoint": serialize(live),
        }


def _utcnow():
    import datetime as dt

    return dt.datetime.now(dt.UTC)


def _config_version(config_name: str) -> str | None:
    """The model package version an endpoint config of this project serves: its name is ``<endpoint>-v<version>-<hash>``."""
    import re

    found = re.search(r"-v(\d+)-[0-9a-f]+$", config_name)
    return found.group(1) if found else None


def _s3_channel(name: str, uri: str) -> dict:
    return {
        "ChannelName": name,
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}},
    }


class ChurnTuningOperator(SageMakerJobMixin, SageMakerTuningOperator):
    """CreateHyperParameterTuningJob named by its identity (<= 32 characters); locally, a
    Bayesian search (Optuna TPE) over the same ranges, each trial a local training job.

    ``warm_start_parents`` (templated; comma-separated tuning job names) adds a TransferLearning
    ``WarmStartConfig`` when not empty. A retry re-attaches to the tuning job its earlier attempt
    started. The deferred wait is sized from the job budget: ceil(MaxNumberOfTrainingJobs /
    MaxParallelTrainingJobs) rounds of the per-job wait (MaxWaitTimeInSeconds on spot).
    """

    describe_method, status_key, job_kind = "describe_tuning_job", "HyperParameterTuningJobStatus", "tuning job"

    def job_log_sources(self, event: dict[str, Any]) -> list[CloudWatchLog]:
        """The best trial's training log (the one the final training repeats), after the count of trials."""
        name = event.get("job_name")
        if not name:
            return []
        tuning = self.hook.describe_tuning_job(name)
        counters = tuning.get("TrainingJobStatusCounters") or {}
        best = (tuning.get("BestTrainingJob") or {}).get("TrainingJobName")
        self.log.info("tuning job %s ran %d training jobs (%s); best: %s", name, sum(counters.values()),
                      ", ".join(f"{count} {status}" for status, count in counters.items() if count) or "none",
                      best or "none")
        return [CloudWatchLog(TRAINING_LOG_GROUP, f"{best}/", f"log of the best trial {best}")] if best else []

    template_fields: Sequence[str] = (*SageMakerTuningOperator.template_fields, "warm_start_parents")

    def __init__(self, *, job_name_prefix: str, warm_start_parents: str = "", **kwargs: Any) -> None:
        kwargs.setdefault("deferrable", True)
        super().__init__(**kwargs)
        self.job_name_prefix = job_name_prefix
        self.warm_start_parents = warm_start_parents

    def _create_integer_fields(self) -> None:
        super()._create_integer_fields()
        self.integer_fields.append(["TrainingJobDefinition", "StoppingCondition", "MaxWaitTimeInSeconds"])

    def job_answer(self, name: str) -> tuple[str, dict]:
        """Every trial's answer (ListTrainingJobsForHyperParameterTuningJob, then DescribeTrainingJob of each)."""
        client = self.hook.conn
        pages = client.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job").paginate(
            HyperParameterTuningJobName=name)
        trials = [client.describe_training_job(TrainingJobName=summary["TrainingJobName"])
                  for page in pages for summary in page["TrainingJobSummaries"]]
        return name, {"HyperParameterTuningJobName": name, "Trials": trials}

    def job_usages(self, answer: dict) -> list:
        return cost_usage.tuning_job_usage(answer["HyperParameterTuningJobName"], answer["Trials"])

    def execute(self, context: Any) -> dict:
        with fail_fast(f"{self.task_id}: "):
            return self._with_best_trial(self._start_or_reuse(context))

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict:
        return self._with_best_trial(super().execute_complete(context, event))

    def _with_best_trial(self, result: dict) -> dict:
        """The final training takes the best trial's value of every tuned hyperparameter: a tuning job
        without them (no trial reported the objective metric) fails here, saying so, not in a template."""
        tuning = result["Tuning"]
        ranges = self.config["HyperParameterTuningJobConfig"]["ParameterRanges"]
        tuned = {r["Name"] for kind in ranges.values() for r in kind}
        best = (tuning.get("BestTrainingJob") or {}).get("TunedHyperParameters") or {}
        missing = sorted(tuned - set(best))
        if missing:
            objective = self.config["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"]
            raise SageMakerJobFailed(
                f"tuning job {tuning.get('HyperParameterTuningJobName')} is {tuning.get('HyperParameterTuningJobStatus')} "
                f"without a best training job that has the tuned hyperparameters ({', '.join(missing)} missing): no "
                f"trial reported {objective}? Check its training jobs' logs (a failing churn_train.py, or MetricDefinitions "
                f"that match nothing)."
            )
        return result

    def _start_or_reuse(self, context: Any) -> dict:
        self._create_integer_fields()
        self.parse_config_integers()
        parents = [p.strip() for p in (self.warm_start_parents or "").split(",") if p.strip()]
        if parents:
            self.config["WarmStartConfig"] = {
                # New weekly data, same algorithm: what the parents learned transfers, the data is not identical.
                "WarmStartType": "TransferLearning",
                "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": p} for p in parents[:5]],
            }
        identity = self.job_identity(
            context, self.job_name_prefix,
            {k: v for k, v in self.config.items() if k != "HyperParameterTuningJobName"},
            max_len=naming.TUNING_MAX_LEN,
        )
        limits = self.config["HyperParameterTuningJobConfig"]["ResourceLimits"]
        jobs, parallel = int(limits["MaxNumberOfTrainingJobs"]), int(limits["MaxParallelTrainingJobs"])
        if parallel < 1:  # (MaxNumberOfTrainingJobs < 1 is botocore's ParamValidationError, as on AWS)
            raise InvalidTuningRequest(
                f"MaxParallelTrainingJobs must be at least 1, got {parallel}: trigger the run with the param "
                "tuning.max_parallel >= 1 (and tuning.max_jobs >= 1)"
            )
        rounds = -(-jobs // parallel)
        budget = rounds * _wait_budget(self.config["TrainingJobDefinition"])
        # The provider's tuning trigger polls up to 480 times: space the polls to cover the budget.
        self.check_interval = max(self.check_interval, -(-budget // 480))
        name, found = self.find_attempt(identity, self._lookup, max_len=naming.TUNING_MAX_LEN)
        self.config["HyperParameterTuningJobName"] = name
        if found is None:
            return super().execute(context)
        if found.state == "succeeded":
            self.record_job_cost(context, name)
            return {"Tuning": serialize(found.job)}
        # The provider's tuning trigger keeps its 480 polls; check_interval was spaced to cover the budget.
        self._wait_for(name, "tuning", found.status)
