"""EndpointDeployOperator's decisions on the aws target, against a recording SageMaker hook.

The requests it sends are validated against botocore's SageMaker model; what the service then does
(blue/green, alarms) is simulated by the describe answers the fake hook gives.
"""

from __future__ import annotations

import copy

import botocore.session
import pytest
from airflow.exceptions import TaskDeferred
from airflow.sdk.exceptions import AirflowFailException
from botocore.validate import ParamValidator

from churn_ml import registry
from churn_ml.operators import DeploymentError, EndpointDeployOperator
from support import BLUE_GREEN_CANARY

SAGEMAKER = botocore.session.get_session().get_service_model("sagemaker")
ARTIFACT = "s3://churn-lake/models/churn/job/output/model.tar.gz"
CONFIG = {
    "Model": {
        "ExecutionRoleArn": "arn:aws:iam::111122223333:role/churn-sagemaker",
        "PrimaryContainer": {
            "Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
            "ModelDataUrl": ARTIFACT,
            "Environment": {"SAGEMAKER_PROGRAM": "inference.py",
                            "SAGEMAKER_SUBMIT_DIRECTORY": "s3://churn-artifacts/code/0123456789abcdef/sagemaker/sourcedir.tar.gz"},
        },
    },
    "EndpointConfig": {
        "ProductionVariants": [{"VariantName": "primary", "InstanceType": "ml.m5.large", "InitialInstanceCount": "2"}],
    },
    "Endpoint": {
        "EndpointName": "churn-xgboost",
        "DeploymentConfig": BLUE_GREEN_CANARY,
    },
}


def _validate(operation: str, params: dict) -> None:
    report = ParamValidator().validate(params, SAGEMAKER.operation_model(operation).input_shape)
    assert not report.has_errors(), report.generate_report()


class FakeSageMaker:
    """Records the calls; describe_endpoint answers from ``endpoint`` (None = does not exist)."""

    def __init__(self, endpoint: dict | None = None) -> None:
        self.endpoint, self.calls = endpoint, []

    def _missing(self, what):
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "ValidationException", "Message": f"Could not find {what}"}}, "Describe")

    def describe_endpoint(self, name):
        return self.endpoint if self.endpoint is not None else self._missing(f"endpoint {name}")

    def describe_model(self, name):
        self._missing(f"model {name}")

    def describe_endpoint_config(self, name):
        if any(c[0] == "create_endpoint_config" for c in self.calls):
            return {"EndpointConfigName": name}
        self._missing(f"endpoint config {name}")

    def __getattr__(self, operation):
        def record(config, **kwargs):
            self.calls.append((operation, copy.deepcopy(config)))
            return {"ResponseMetadata": {"HTTPStatusCode": 200}}

        return record


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("ML_TARGET", "aws")
    package = {"ModelApprovalStatus": "Approved", "ModelDataUrl": ARTIFACT, "ApprovalDescription": "ok"}
    monkeypatch.setattr(registry, "show_version", lambda version, group=None: package)
    return package


def _operator(fake: FakeSageMaker) -> EndpointDeployOperator:
    op = EndpointDeployOperator(task_id="deploy_model", config=copy.deepcopy(CONFIG), model_package_version="7",
                                         check_interval=30)
    op.hook = fake
    return op


def test_first_deployment_creates_model_config_and_endpoint_with_valid_requests_then_defers(aws):
    fake = FakeSageMaker(endpoint=None)
    with pytest.raises(TaskDeferred) as deferred:
        _operator(fake).execute({})
    assert [c[0] for c in fake.calls] == ["create_model", "create_endpoint_config", "create_endpoint"]
    model, config, endpoint = (c[1] for c in fake.calls)
    _validate("CreateModel", model)
    _validate("CreateEndpointConfig", config)
    _validate("CreateEndpoint", endpoint)
    assert config["EndpointConfigName"].startswith("churn-xgboost-v7-") and endpoint["EndpointConfigName"] == config["EndpointConfigName"]
    assert config["ProductionVariants"][0]["InitialInstanceCount"] == 2 and config["ProductionVariants"][0]["ModelName"] == model["ModelName"]
    assert {"Key": "model_package_version", "Value": "7"} in config["Tags"]
    assert deferred.value.trigger.job_type == "endpoint"


def test_update_is_blue_green_with_rollback_alarms(aws):
    fake = FakeSageMaker(endpoint={"EndpointName": "churn-xgboost", "EndpointStatus": "InService",
                                   "EndpointConfigName": "churn-xgboost-v6-aaaa"})
    with pytest.raises(TaskDeferred):
        _operator(fake).execute({})
    operation, request = fake.calls[-1]
    assert operation == "update_endpoint"
    _validate("UpdateEndpoint", request)
    assert request["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]


def test_names_are_stable_so_a_retry_reattaches_to_its_deployment(aws):
    first = FakeSageMaker(endpoint=None)
    with pytest.raises(TaskDeferred):
        _operator(first).execute({})
    new_config = first.calls[1][1]["EndpointConfigName"]
    in_progress = FakeSageMaker(endpoint={"EndpointName": "churn-xgboost", "EndpointStatus": "Updating",
                                          "EndpointConfigName": "churn-xgboost-v6-aaaa",
                                          "PendingDeploymentSummary": {"EndpointConfigName": new_config}})
    with pytest.raises(TaskDeferred):
        _operator(in_progress).execute({})
    assert in_progress.calls == []  # waits for its own deployment, sends nothing


def test_another_deployment_in_progress_fails_clearly(aws):
    busy = FakeSageMaker(endpoint={"EndpointName": "churn-xgboost", "EndpointStatus": "Updating",
                                   "EndpointConfigName": "churn-xgboost-v6-aaaa",
                                   "PendingDeploymentSummary": {"EndpointConfigName": "churn-xgboost-v5-bbbb"}})
    with pytest.raises(DeploymentError, match="another deployment"):
        _operator(busy).execute({})
    assert busy.calls == []


def test_a_silently_rolled_back_update_fails_the_task(aws):
    rolled_back = FakeSageMaker(endpoint={"EndpointName": "churn-xgboost", "EndpointStatus": "InService",
                                          "EndpointConfigName": "churn-xgboost-v6-aaaa"})
    with pytest.raises(DeploymentError, match="serves churn-xgboost-v6-aaaa, not churn-xgboost-v7-.*rolled back"):
        _operator(rolled_back).execute_complete({}, {"status": "success", "job_name": "churn-xgboost"})


def test_only_approved_models_are_deployed(aws):
    aws["ModelApprovalStatus"] = "Rejected"
    aws["ApprovalDescription"] = "holdout AUC 0.61 is below the floor 0.70"
    fake = FakeSageMaker(endpoint=None)
    # No retry can approve a model: the task fails on this try (AirflowFailException), the cause kept.
    with pytest.raises(AirflowFailException, match="Rejected, not Approved.*below the floor.*not retried") as failed:
        _operator(fake).execute({})
    assert isinstance(failed.value.__cause__, DeploymentError)
    aws.update(ModelApprovalStatus="Approved", ModelDataUrl="s3://elsewhere/model.tar.gz")
    with pytest.raises(AirflowFailException, match="but the request deploys.*not retried") as failed:
        _operator(fake).execute({})
    assert isinstance(failed.value.__cause__, DeploymentError)
    assert fake.calls == []
