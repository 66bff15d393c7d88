"""EndpointDeployOperator's decisions on the aws target, against a recording SageMaker hook.

The requests it sends are validated against botocore's SageMaker model; what the service then does
(blue/green, alarms) is simulated by the describe answers the fake hook gives.
"""

from __future__ import annotations

import copy
import datetime as dt
from types import SimpleNamespace

import botocore.session
import pytest
from airflow.exceptions import TaskDeferred
from airflow.sdk.exceptions import AirflowFailException
from botocore.validate import ParamValidator

from churn_ml import registry
from churn_ml.cost import recorder, usage
from churn_ml.cost.prices import load_prices
from churn_ml.operators import DeploymentError, EndpointDeployOperator
from churn_ml.operators import sagemaker as sagemaker_operators
from support import BLUE_GREEN_CANARY

PRICES = load_prices("us-east-1")
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
        if any(c[0] == "create_endpoint_config" for c in self.calls) or (self.endpoint or {}).get("EndpointConfigName") == name:
            return {"EndpointConfigName": name, "ProductionVariants": [
                {"VariantName": "primary", "InstanceType": "ml.m5.large", "InitialInstanceCount": 2}]}
        self._missing(f"endpoint config {name}")

    def __getattr__(self, operation):
        def record(config, **kwargs):
            self.calls.append((operation, copy.deepcopy(config)))
            return {"ResponseMetadata": {"HTTPStatusCode": 200}}

        return record


@pytest.fixture
def aws(monkeypatch, memory_lake):
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
                                   "EndpointConfigName": "churn-xgboost-v6-aaaa", "CreationTime": T0})
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


T0 = dt.datetime(2026, 7, 1, 22, 0, tzinfo=dt.UTC)
MONITOR = {"dag": SimpleNamespace(dag_id="churn_monitoring"), "task": SimpleNamespace(task_id="record_costs"),
           "run_id": "scheduled__x", "dag_run": SimpleNamespace(clear_number=0)}


def _hours(records) -> float:
    return sum(line["quantity"] for r in records for line in r["lines"])


def _serving_v6():
    """An endpoint serving v6 since T0 (created before the ledger), and a task deploying v7 to it."""
    fake = FakeSageMaker(endpoint={"EndpointName": "churn-xgboost", "EndpointStatus": "InService",
                                   "EndpointConfigName": "churn-xgboost-v6-aaaa", "CreationTime": T0})
    return fake, _operator(fake)


def _update(fake, op, at, monkeypatch):
    """The task's execute at ``at``: it starts the blue/green update (recording it) and defers."""
    monkeypatch.setattr(sagemaker_operators, "_utcnow", lambda: at)
    with pytest.raises(TaskDeferred):
        op.execute({})


def test_the_endpoints_fleets_are_recorded_so_a_day_bills_both_fleets_of_a_blue_green_update(aws, memory_lake,
                                                                                              monkeypatch):
    """An endpoint created before the ledger existed gets its creation recorded from DescribeEndpoint; the update
    starts a second fleet, its completion stops the first; a retry records nothing new; the days are priced."""
    fake, op = _serving_v6()
    started = T0 + dt.timedelta(hours=3)
    _update(fake, op, started, monkeypatch)
    new = op.config["EndpointConfig"]["EndpointConfigName"]
    events = [(e["event"], e["config"], e["model_version"]) for e in recorder.endpoint_history("churn-xgboost")]
    assert events == [("create", "churn-xgboost-v6-aaaa", "6"), ("update", new, "7")]
    finished = started + dt.timedelta(minutes=30)
    fake.endpoint = {**fake.endpoint, "EndpointConfigName": new, "LastModifiedTime": finished}
    op._verified("churn-xgboost", new, canary=None)
    recorded = dict(memory_lake)
    op._verified("churn-xgboost", new, canary=None)  # a retry of the task finds the endpoint serving its config
    assert memory_lake == recorded
    assert [e["event"] for e in recorder.endpoint_history("churn-xgboost")] == ["create", "update", "update_complete"]
    now = T0 + dt.timedelta(days=2, hours=1)
    records = recorder.endpoint_day_records(MONITOR, "churn-xgboost", now, prices=PRICES)
    # the old fleet (2 instances) from T0 to the update's end, the new one (2) from the update's start to now
    assert _hours(records) == pytest.approx(2 * 3.5 + 2 * (now - started).total_seconds() / 3600)
    assert [r["ds"] for r in records] == ["2026-07-01", "2026-07-02", "2026-07-03"]  # one record per UTC day
    from churn_ml.monitoring_report import cost_figures

    by_version = cost_figures(records, {})["by_model_version"]
    assert by_version["6"] == pytest.approx(2 * 3.5 * PRICES.item("sagemaker.hosting.ml.m5.large").usd)
    assert set(by_version) == {"6", "7"}  # the first day's record holds both fleets, each under its version


def test_a_rolled_back_update_bills_the_new_fleet_until_the_rollback_and_a_retry_deploys_again(aws, memory_lake,
                                                                                              monkeypatch):
    fake, op = _serving_v6()
    first = T0 + dt.timedelta(hours=1)
    _update(fake, op, first, monkeypatch)
    new = op.config["EndpointConfig"]["EndpointConfigName"]
    fake.endpoint = {**fake.endpoint, "LastModifiedTime": first + dt.timedelta(minutes=20)}  # still v6: rolled back
    with pytest.raises(DeploymentError, match="rolled back"):
        op._verified("churn-xgboost", new, canary=None)
    second = T0 + dt.timedelta(hours=2)  # the task's retry updates again, and this time it completes
    retry = _operator(fake)
    _update(fake, retry, second, monkeypatch)
    fake.endpoint = {**fake.endpoint, "EndpointConfigName": new, "LastModifiedTime": second + dt.timedelta(minutes=10)}
    retry._verified("churn-xgboost", new, canary=None)
    assert [e["event"] for e in recorder.endpoint_history("churn-xgboost")] == [
        "create", "update", "rollback", "update", "update_complete"]
    records = recorder.endpoint_day_records(MONITOR, "churn-xgboost", T0 + dt.timedelta(hours=3), prices=PRICES)
    # v6: 2 x (2 h 10 min); v7: 2 x 20 min (rolled back) + 2 x 1 h (from the second update to now)
    assert _hours(records) == pytest.approx(2 * (2 + 10 / 60) + 2 * (20 / 60) + 2 * 1)


def test_a_deleted_endpoint_is_billed_until_it_is_found_gone(aws, memory_lake):
    live = {"EndpointName": "churn-xgboost", "EndpointConfigName": "churn-xgboost-v6-aaaa", "CreationTime": T0}
    answer = {"EndpointConfigName": "churn-xgboost-v6-aaaa", "ProductionVariants": [
        {"VariantName": "primary", "InstanceType": "ml.m5.large", "InitialInstanceCount": 2}]}
    recorder.record_endpoint_event("churn-xgboost", usage.creation_event(live, answer), model_version="6")
    gone = T0 + dt.timedelta(hours=5)
    recorder.note_endpoint_state("churn-xgboost", None, None, gone)
    recorder.note_endpoint_state("churn-xgboost", None, None, gone + dt.timedelta(hours=1))  # recorded once
    assert [e["event"] for e in recorder.endpoint_history("churn-xgboost")] == ["create", "delete"]
    later = recorder.endpoint_day_records(MONITOR, "churn-xgboost", T0 + dt.timedelta(days=3), prices=PRICES)
    assert _hours(later) == pytest.approx(2 * 5)  # not a day more
