"""Custom operators: the Amazon provider's operators, plus what this project adds.

Each class subclasses the provider operator, takes the same arguments (the AWS request) and runs
the provider's code path on both targets: deferrable, with the provider's triggers and waiters. The
target only decides where the AWS connection points (AWS, or the local control plane of
``local_aws``). What is added: job names derived from the dag id, the logical date and the request
(``naming.job_name``), so a retried task finds its job; re-attaching to it; the job's FailureReason
when it fails; sizing of the waits; and, for deployments, verification of what is live.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.amazon.aws.hooks.glue import GlueJobHook
from airflow.providers.amazon.aws.operators.emr import EmrServerlessStartJobOperator
from airflow.providers.amazon.aws.operators.glue import GlueJobOperator
from airflow.providers.amazon.aws.operators.sagemaker import (
    SageMakerEndpointOperator,
    SageMakerTrainingOperator,
    SageMakerTransformOperator,
    SageMakerTuningOperator,
    serialize,
)
from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger
from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
from airflow.providers.amazon.aws.utils import validate_execute_complete_event
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk.exceptions import AirflowSensorTimeout
from botocore.exceptions import ClientError

from churn_ml import canary_check, lake, naming, training_requests, transform_io
from churn_ml import settings as cfg

IN_PROGRESS = ("InProgress", "Stopping")


class _TriggerWithHookParams:
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


def _run_key(context: Any) -> tuple[str, str]:
    logical_date = context.get("logical_date")
    return context["dag"].dag_id, logical_date.isoformat() if logical_date else context["run_id"]


class LakeKeySensor(S3KeySensor):
    """S3KeySensor for full ``s3://`` keys that says what is missing when it times out.

    Deferrable: it never holds a worker slot while it waits (the provider's S3 trigger polls on the
    triggerer). At ``timeout`` it fails saying which partition is missing and what to do.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("deferrable", True)
        super().__init__(**kwargs)

    def _keys(self) -> list[str]:
        return [self.bucket_key] if isinstance(self.bucket_key, str) else list(self.bucket_key)

    def execute(self, context: Any) -> Any:
        try:
            return super().execute(context)
        except AirflowSensorTimeout as err:
            raise self._timed_out(err) from err

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except AirflowSensorTimeout as err:
            raise self._timed_out(err) from err

    def _timed_out(self, err: AirflowSensorTimeout) -> AirflowSensorTimeout:
        keys = [k for k in self._keys() if not lake.exists(k)] or self._keys()
        return AirflowSensorTimeout(
            f"{err}. Still missing after {self.timeout:.0f} s: {', '.join(keys)} (a partition is complete when "
            "its _SUCCESS marker exists). Produce that partition (the upstream export, or the DAG that writes it, "
            "for this date), then clear this task to wait again; or mark the run failed if the date has no data."
        )


class EmrServerlessSparkJobOperator(_TriggerWithHookParams, EmrServerlessStartJobOperator):
    """A Spark job run on EMR Serverless; locally, ``spark-submit`` of the same jobDriver.

    The job run name and ``clientToken`` are deterministic, so a retry whose StartJobRun already
    went through gets the same job run back from EMR Serverless instead of a second one.
    """

    def __init__(self, *, job_name_prefix: str, **kwargs: Any) -> None:
        kwargs.setdefault("deferrable", True)
        super().__init__(**kwargs)
        self.job_name_prefix = job_name_prefix

    def execute(self, context: Any, event: dict[str, Any] | None = None) -> str | None:
        dag_id, logical_date = _run_key(context)
        self.name = naming.job_name(
            self.job_name_prefix, dag_id, logical_date,
            {"jobDriver": self.job_driver, "configurationOverrides": self.configuration_overrides},
        )
        self.client_request_token = self.name
        return super().execute(context, event)


class GlueJobDefinitionError(RuntimeError):
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


class GlueSparkJobOperator(_TriggerWithHookParams, GlueJobOperator):
    """A run of a Glue job the template defines.

    StartJobRun only (``StartOnlyGlueJobHook``): the job's definition, including its DefaultArguments
    (the library on ``--extra-py-files``), is the template's and is never updated from here;
    ``script_args`` are the run's own arguments. Uses the provider's ``resume_glue_job_on_retry``: a
    retry finds the run its earlier attempt started.
    """

    aws_hook_class = StartOnlyGlueJobHook

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("update_config") or kwargs.get("create_job_kwargs"):
            raise GlueJobDefinitionError(
                "GlueSparkJobOperator never creates or updates a Glue job: the template defines it (per-run sizing "
                "goes in run_job_kwargs, StartJobRun's own WorkerType/NumberOfWorkers)"
            )
        kwargs["update_config"] = False
        kwargs.setdefault("deferrable", True)
        kwargs.setdefault("resume_glue_job_on_retry", True)
        super().__init__(**kwargs)


class SageMakerJobFailed(RuntimeError):
    """A SageMaker job the task waited for ended Failed or Stopped; the message has its FailureReason."""


class _SageMakerJobMixin(_TriggerWithHookParams):
    """Re-attach to a job of the same deterministic name instead of starting a duplicate; when the
    job fails, say why (the provider's trigger event has the status only, not the FailureReason)."""

    describe_method = ""  # the SageMakerHook method that describes this operator's jobs
    status_key = ""

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
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

    def _attempt_name(
        self, base: str, describe, status_key: str, max_len: int = naming.MAX_LEN, usable=None
    ) -> tuple[str, dict | None]:
        """The name to use: ``base`` (or ``base-rN`` after earlier attempts) and its job, if any.

        An attempt is re-attached to while it runs, or once Completed if ``usable(job)`` (default:
        always) says its outputs are still there; a failed or stopped attempt, or a completed one whose
        outputs were published or cleared since, makes the next attempt ``-rN`` run again.
        """
        name = base
        for attempt in range(2, 100):
            found = self._existing(name, describe)
            if found is None or found[status_key] in IN_PROGRESS:
                return name, found
            if found[status_key] == "Completed":
                if usable is None or usable(found):
                    return name, found
                self.log.info("%s completed, but its outputs are no longer where it wrote them: running it again", name)
            suffix = f"-r{attempt}"
            name = f"{base[: max_len - len(suffix)]}{suffix}"
        raise RuntimeError(f"too many failed attempts of job {base}; clear its state or change the request")


def _wait_budget(training: dict) -> int:
    """Seconds one training job may take: MaxWaitTimeInSeconds on spot (it includes the waits for
    capacity), MaxRuntimeInSeconds otherwise."""
    stopping = training.get("StoppingCondition", {})
    if training.get("EnableManagedSpotTraining"):
        return int(stopping.get("MaxWaitTimeInSeconds") or stopping["MaxRuntimeInSeconds"])
    return int(stopping.get("MaxRuntimeInSeconds", 86400))


class SageMakerTrainingJobOperator(_SageMakerJobMixin, SageMakerTrainingOperator):
    """CreateTrainingJob with a deterministic job name; locally, the training container contract.

    Managed spot: ``StoppingCondition.MaxWaitTimeInSeconds`` is cast to int with the provider's other
    integer fields, ``CheckpointConfig.S3Uri`` gets the job's base name appended (a retry, or a new
    ``-rN`` attempt after a failure, resumes the same checkpoints), and the deferred wait is sized
    from MaxWaitTimeInSeconds so a long wait for spot capacity never times the task out.
    ``champion_model_uri`` (templated), when not empty, adds the ``champion`` channel: the current
    approved model, which churn_train.py scores on the same holdout.
    """

    describe_method, status_key = "describe_training_job", "TrainingJobStatus"

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

    def execute(self, context: Any) -> dict:
        self._create_integer_fields()
        self.parse_config_integers()
        if self.champion_model_uri:
            self.config.setdefault("InputDataConfig", []).append(_s3_channel("champion", self.champion_model_uri))
        dag_id, logical_date = _run_key(context)
        base = naming.job_name(
            self.job_name_prefix, dag_id, logical_date, {k: v for k, v in self.config.items() if k != "TrainingJobName"}
        )
        if "CheckpointConfig" in self.config:
            checkpoint = self.config["CheckpointConfig"]
            checkpoint["S3Uri"] = f"{checkpoint['S3Uri'].rstrip('/')}/{base}/"
        self.max_attempts = max(self.max_attempts or 0, _wait_budget(self.config) // self.check_interval + 10)
        name, found = self._attempt_name(base, self.hook.describe_training_job, "TrainingJobStatus")
        self.config["TrainingJobName"] = name
        if found is None:
            return super().execute(context)
        if found["TrainingJobStatus"] == "Completed":
            return {"Training": serialize(found)}
        self._wait_for(name, "Training", found["TrainingJobStatus"], self.max_attempts)


class SageMakerTransformJobOperator(_SageMakerJobMixin, SageMakerTransformOperator):
    """CreateModel + CreateTransformJob with deterministic names; locally, the same transform semantics."""

    describe_method, status_key = "describe_transform_job", "TransformJobStatus"

    def __init__(self, *, job_name_prefix: str, **kwargs: Any) -> None:
        kwargs.setdefault("deferrable", True)
        kwargs["check_if_job_exists"] = False
        kwargs["check_if_model_exists"] = False
        super().__init__(**kwargs)
        self.job_name_prefix = job_name_prefix

    def execute(self, context: Any) -> dict:
        self._create_integer_fields()
        self.parse_config_integers()
        transform = self.config.get("Transform", self.config)
        model = self.config.get("Model")
        dag_id, logical_date = _run_key(context)
        if model is not None:
            # One model per artifact and container definition, shared by the runs that use it.
            model["ModelName"] = naming.job_name(
                f"{self.job_name_prefix}-model", "", "", {k: v for k, v in model.items() if k != "ModelName"}
            ).replace("--", "-")
            transform["ModelName"] = model["ModelName"]
        # A transform job writes to its run's staging prefix, from where the DAG publishes the partition
        # (moving the outputs away). So a job is re-attached to while it runs or while its outputs wait to
        # be published; once they are gone (published, or cleared), a rerun or cleared task scores again.
        base = naming.job_name(
            self.job_name_prefix, dag_id, logical_date,
            {"run_id": context["run_id"], **{k: v for k, v in transform.items() if k != "TransformJobName"}},
        )
        if model is not None and self._existing(model["ModelName"], self.hook.describe_model) is not None:
            self.config.pop("Model")  # same name = same definition: reuse the existing model
        name, found = self._attempt_name(
            base, self.hook.describe_transform_job, "TransformJobStatus", usable=transform_io.outputs_present
        )
        transform["TransformJobName"] = name
        if found is None:
            return super().execute(context)
        if found["TransformJobStatus"] == "Completed":
            return self.serialize_result(name)
        self._wait_for(name, "Transform", found["TransformJobStatus"], self.max_attempts)


class DeploymentError(RuntimeError):
    """The endpoint does not serve the model this task deployed (rolled back, busy, or wrong answers)."""


class SageMakerEndpointDeployOperator(_SageMakerJobMixin, SageMakerEndpointOperator):
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
        model["ModelName"] = naming.job_name(
            f"{name}-model", "", "", {k: v for k, v in model.items() if k != "ModelName"}
        ).replace("--", "-")
        for variant in config["ProductionVariants"]:
            variant["ModelName"] = model["ModelName"]
        tags = [t for t in config.get("Tags", []) if t["Key"] != "model_package_version"]
        config["Tags"] = [*tags, {"Key": "model_package_version", "Value": str(version)}]
        config["EndpointConfigName"] = naming.job_name(
            f"{name}-v{version}", "", "", {k: v for k, v in config.items() if k != "EndpointConfigName"}
        ).replace("--", "-")
        endpoint["EndpointConfigName"] = config["EndpointConfigName"]
        return name, config["EndpointConfigName"]

    def _approved_canary(self) -> dict | None:
        """The registry must say Approved for this version and artifact; returns its canary rows."""
        from churn_ml import registry

        version = int(self.model_package_version)
        package = registry.show_version(version)
        if package["ModelApprovalStatus"] != registry.APPROVED:
            raise DeploymentError(
                f"model package version {version} is {package['ModelApprovalStatus']}, not Approved "
                f"({package.get('ApprovalDescription') or 'no reason recorded'}): only models the quality gate "
                "approved are deployed"
            )
        artifact = self.config["Model"]["PrimaryContainer"]["ModelDataUrl"]
        if package["ModelDataUrl"] != artifact:
            raise DeploymentError(f"model package version {version} is {package['ModelDataUrl']}, but the request deploys {artifact}")
        if not self.expectations_uri:
            return None
        return lake.read_json(self.expectations_uri).get("canary")

    def execute(self, context: Any) -> dict:
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
            self.hook.update_endpoint(self.config["Endpoint"], wait_for_completion=False)
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

    def _verified(self, name: str, config_name: str, canary: dict | None) -> dict:
        live = self.hook.describe_endpoint(name)
        if live["EndpointConfigName"] != config_name:
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


def _s3_channel(name: str, uri: str) -> dict:
    return {
        "ChannelName": name,
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}},
    }


class SageMakerTuningJobOperator(_SageMakerJobMixin, SageMakerTuningOperator):
    """CreateHyperParameterTuningJob with a deterministic name (<= 32 characters); locally, a
    Bayesian search (Optuna TPE) over the same ranges, each trial a local training job.

    ``warm_start_parents`` (templated; comma-separated tuning job names) adds a TransferLearning
    ``WarmStartConfig`` when not empty. A retry re-attaches to the tuning job its earlier attempt
    started. The deferred wait is sized from the job budget: ceil(MaxNumberOfTrainingJobs /
    MaxParallelTrainingJobs) rounds of the per-job wait (MaxWaitTimeInSeconds on spot).
    """

    describe_method, status_key = "describe_tuning_job", "HyperParameterTuningJobStatus"

    template_fields: Sequence[str] = (*SageMakerTuningOperator.template_fields, "warm_start_parents")

    def __init__(self, *, job_name_prefix: str, warm_start_parents: str = "", **kwargs: Any) -> None:
        kwargs.setdefault("deferrable", True)
        super().__init__(**kwargs)
        self.job_name_prefix = job_name_prefix
        self.warm_start_parents = warm_start_parents

    def _create_integer_fields(self) -> None:
        super()._create_integer_fields()
        self.integer_fields.append(["TrainingJobDefinition", "StoppingCondition", "MaxWaitTimeInSeconds"])

    def execute(self, context: Any) -> dict:
        return self._with_best_trial(self._start_or_attach(context))

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
            raise RuntimeError(
                f"tuning job {tuning.get('HyperParameterTuningJobName')} is {tuning.get('HyperParameterTuningJobStatus')} "
                f"without a best training job that has the tuned hyperparameters ({', '.join(missing)} missing): no "
                f"trial reported {objective}? Check its training jobs' logs (a failing churn_train.py, or MetricDefinitions "
                f"that match nothing)."
            )
        return result

    def _start_or_attach(self, context: Any) -> dict:
        self._create_integer_fields()
        self.parse_config_integers()
        parents = [p.strip() for p in (self.warm_start_parents or "").split(",") if p.strip()]
        if parents:
            self.config["WarmStartConfig"] = {
                # New weekly data, same algorithm: what the parents learned transfers, the data is not identical.
                "WarmStartType": "TransferLearning",
                "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": p} for p in parents[:5]],
            }
        dag_id, logical_date = _run_key(context)
        base = naming.job_name(
            self.job_name_prefix, dag_id, logical_date,
            {k: v for k, v in self.config.items() if k != "HyperParameterTuningJobName"},
            max_len=naming.TUNING_MAX_LEN,
        )
        limits = self.config["HyperParameterTuningJobConfig"]["ResourceLimits"]
        rounds = -(-int(limits["MaxNumberOfTrainingJobs"]) // int(limits["MaxParallelTrainingJobs"]))
        budget = rounds * _wait_budget(self.config["TrainingJobDefinition"])
        # The provider's tuning trigger polls up to 480 times: space the polls to cover the budget.
        self.check_interval = max(self.check_interval, -(-budget // 480))
        name, found = self._attempt_name(
            base, self.hook.describe_tuning_job, "HyperParameterTuningJobStatus", naming.TUNING_MAX_LEN
        )
        self.config["HyperParameterTuningJobName"] = name
        if found is None:
            return super().execute(context)
        if found["HyperParameterTuningJobStatus"] == "Completed":
            return {"Tuning": serialize(found)}
        # The provider's tuning trigger keeps its 480 polls; check_interval was spaced to cover the budget.
        self._wait_for(name, "tuning", found["HyperParameterTuningJobStatus"])


def spark_job(
    *, task_id: str, job: str, arguments: dict[str, str], glue_job_name: str, job_name_prefix: str,
    spark_conf: dict[str, str] | None = None, **kwargs: Any,
):
    """The Spark job ``include/jobs/<job>.py`` on the backend ``CHURN_SPARK_BACKEND`` selects.

    Both variants send the same script, arguments and Python library; the task id and graph do not
    depend on the backend (or the target).
    """
    s = cfg.settings
    script = f"{s.artifacts}/jobs/{job}.py"
    library = f"{s.artifacts}/lib/churn.zip"
    conf = spark_conf or {}
    if cfg.spark_backend() == "glue":
        # The job (script, library, workers, security configuration, logging, timeout) is the
        # template's; a run sends only its own arguments, never one of the job's DefaultArguments.
        script_args: dict[str, str] = dict(arguments)
        if conf:
            script_args["--conf"] = " --conf ".join(f"{k}={v}" for k, v in conf.items())
        return GlueSparkJobOperator(
            task_id=task_id,
            job_name=glue_job_name,
            script_location=script,
            script_args=script_args,
            aws_conn_id=s.aws_conn_id,
            **kwargs,
        )
    submit = " ".join([f"--py-files {library}", *[f"--conf {k}={v}" for k, v in conf.items()]])
    return EmrServerlessSparkJobOperator(
        task_id=task_id,
        job_name_prefix=job_name_prefix,
        application_id="{{ churn.emr_application_id }}",
        execution_role_arn="{{ churn.emr_execution_role_arn }}",
        job_driver={
            "sparkSubmit": {
                "entryPoint": script,
                "entryPointArguments": [item for key, value in arguments.items() for item in (key, value)],
                "sparkSubmitParameters": submit,
            }
        },
        configuration_overrides={
            "monitoringConfiguration": {"s3MonitoringConfiguration": {"logUri": f"{s.lake}/_logs/emr-serverless/"}}
        },
        aws_conn_id=s.aws_conn_id,
        **kwargs,
    )


class RetrainingTriggerOperator(TriggerDagRunOperator):
    """TriggerDagRunOperator whose ``note`` (the triggered run's note in the UI) is templated too, so
    that it can carry the reason the run was triggered for."""

    template_fields: Sequence[str] = (*TriggerDagRunOperator.template_fields, "note")


__all__: Sequence[str] = (
    "RetrainingTriggerOperator",
    "EmrServerlessSparkJobOperator",
    "SageMakerEndpointDeployOperator",
    "SageMakerJobFailed",
    "GlueJobDefinitionError",
    "GlueSparkJobOperator",
    "LakeKeySensor",
    "SageMakerTrainingJobOperator",
    "SageMakerTransformJobOperator",
    "SageMakerTuningJobOperator",
    "StartOnlyGlueJobHook",
    "spark_job",
)
