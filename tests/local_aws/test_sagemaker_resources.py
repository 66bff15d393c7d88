"""Describe, List and Delete agree: every SageMaker resource type the project or the SDK creates,
through boto3 against the session's control plane (``aws_local``).

Per type, the whole round a client sees on AWS: Create -> Describe -> List (it is there, with the
filters, sort orders and pages of the service) -> tags (those given at Create kept; AddTags,
ListTags, DeleteTags by ARN) -> Delete -> Describe answers ValidationException "Could not find ...".
Jobs cannot be deleted (Stop them); a model package group with versions cannot be deleted; an
endpoint deleted while InService is Deleting, stops answering at the Runtime router at once, and is
then gone with its container processes.
"""

from __future__ import annotations

import datetime as dt
import json
import time

import httpx
import numpy as np
import psutil
import pytest
from botocore.exceptions import ClientError

from local_aws import control_plane
from support import model_request, training_request, write_channel

pytestmark = pytest.mark.e2e


@pytest.fixture
def plane(aws_local, tmp_path_factory, monkeypatch):
    """The session control plane's client and lake (this process reads and writes the same lake:
    the training channels, the source bundle the requests name)."""
    lake = next((p.parents[1] for p in tmp_path_factory.getbasetemp().glob("control-plane*/lake/.control-plane/server.json")
                 if json.loads(p.read_text())["url"] == aws_local), None)
    assert lake is not None, f"the lake of the session control plane {aws_local} is not under the test session's tmp"
    monkeypatch.setenv("LAKE_ROOT", str(lake))
    monkeypatch.setenv("ML_TARGET", "local")
    yield {"sm": control_plane.client("sagemaker", aws_local), "lake": lake}


def not_found(call, **kwargs) -> str:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationException", error
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return error["Message"]


def tags_round(sm, resource_arn: str, given: dict[str, str]) -> None:
    """Tags given at Create are kept; AddTags adds (a key given again takes the new value), DeleteTags removes."""
    assert {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=resource_arn)["Tags"]} == given
    sm.add_tags(ResourceArn=resource_arn, Tags=[{"Key": "team", "Value": "data"}, {"Key": "stage", "Value": "test"}])
    sm.add_tags(ResourceArn=resource_arn, Tags=[{"Key": "team", "Value": "ml"}])
    listed = sm.list_tags(ResourceArn=resource_arn, MaxResults=50)["Tags"]
    assert {t["Key"]: t["Value"] for t in listed} == {**given, "team": "ml", "stage": "test"}
    sm.delete_tags(ResourceArn=resource_arn, TagKeys=["stage"])
    assert {t["Key"] for t in sm.list_tags(ResourceArn=resource_arn)["Tags"]} == {*given, "team"}


def wait_for(describe, key: str, until: set[str], seconds: float = 300) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        answer = describe()
        if answer[key] in until or time.monotonic() > deadline:
            assert answer[key] in until, f"{key} is {answer[key]} after {seconds}s, expected one of {until}: {answer}"
            return answer
        time.sleep(0.5)


def model_data(name: str) -> str:
    """A model artifact URI in the lake (CreateModel checks the URI; the container opens it only when deployed)."""
    return f"s3://churn-lake/models/{name}/output/model.tar.gz"


# ---------------------------------------------------------------- models and endpoint configs

def test_models_create_describe_list_tag_delete(plane):
    sm = plane["sm"]
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    for name in ("res-model-a", "res-model-b", "res-other-c"):
        sm.create_model(**model_request(name, model_data(name)), Tags=[{"Key": "origin", "Value": name}])
    described = sm.describe_model(ModelName="res-model-a")
    assert described["ModelArn"].endswith(":model/res-model-a") and described["PrimaryContainer"]["Image"]

    listed = sm.list_models(NameContains="res-model", SortBy="Name", SortOrder="Ascending")["Models"]
    assert [m["ModelName"] for m in listed] == ["res-model-a", "res-model-b"]
    newest_first = [m["ModelName"] for m in sm.list_models(NameContains="res-")["Models"]]  # CreationTime, Descending
    assert newest_first == ["res-other-c", "res-model-b", "res-model-a"]
    assert [m["ModelName"] for m in sm.list_models(NameContains="res-", CreationTimeAfter=before)["Models"]] == newest_first
    assert sm.list_models(NameContains="res-", CreationTimeBefore=before)["Models"] == []
    page = sm.list_models(NameContains="res-", SortBy="Name", MaxResults=2)
    assert [m["ModelName"] for m in page["Models"]] == ["res-other-c", "res-model-b"] and page["NextToken"]
    rest = sm.list_models(NameContains="res-", SortBy="Name", MaxResults=2, NextToken=page["NextToken"])
    assert [m["ModelName"] for m in rest["Models"]] == ["res-model-a"] and "NextToken" not in rest

    tags_round(sm, described["ModelArn"], {"origin": "res-model-a"})

    sm.delete_model(ModelName="res-model-a")
    assert "Could not find model" in not_found(sm.describe_model, ModelName="res-model-a")
    assert "res-model-a" not in [m["ModelName"] for m in sm.list_models(NameContains="res-")["Models"]]
    assert "Could not find model" in not_found(sm.delete_model, ModelName="res-model-a")
    assert "does not exist" in not_found(sm.list_tags, ResourceArn=described["ModelArn"])
    # The name is free again, and its tags did not come back with it.
    sm.create_model(**model_request("res-model-a", model_data("res-model-a")))
    assert sm.list_tags(ResourceArn=described["ModelArn"])["Tags"] == []


def test_endpoint_configs_create_describe_list_tag_delete(plane):
    sm = plane["sm"]
    sm.create_model(**model_request("res-cfg-model", model_data("res-cfg-model")))
    for name in ("res-cfg-1", "res-cfg-2"):
        sm.create_endpoint_config(
            EndpointConfigName=name, Tags=[{"Key": "model_package_version", "Value": name[-1]}],
            ProductionVariants=[{"VariantName": "primary", "ModelName": "res-cfg-model", "InitialInstanceCount": 1,
                                 "InstanceType": "ml.m5.large"}])
    described = sm.describe_endpoint_config(EndpointConfigName="res-cfg-1")
    assert described["ProductionVariants"][0]["ModelName"] == "res-cfg-model"

    listed = sm.list_endpoint_configs(NameContains="res-cfg", SortBy="Name", SortOrder="Descending")["EndpointConfigs"]
    assert [c["EndpointConfigName"] for c in listed] == ["res-cfg-2", "res-cfg-1"]
    assert all(c["EndpointConfigArn"].endswith(c["EndpointConfigName"]) for c in listed)

    tags_round(sm, described["EndpointConfigArn"], {"model_package_version": "1"})

    sm.delete_endpoint_config(EndpointConfigName="res-cfg-1")
    assert "Could not find endpoint configuration" in not_found(sm.describe_endpoint_config, EndpointConfigName="res-cfg-1")
    assert [c["EndpointConfigName"] for c in sm.list_endpoint_configs(NameContains="res-cfg")["EndpointConfigs"]] == ["res-cfg-2"]


# ---------------------------------------------------------------- the model registry

def test_model_package_groups_and_versions_round(plane):
    sm = plane["sm"]
    group_arn = sm.create_model_package_group(ModelPackageGroupName="res-registry", ModelPackageGroupDescription="d",
                                              Tags=[{"Key": "owner", "Value": "ml"}])["ModelPackageGroupArn"]
    sm.create_model_package_group(ModelPackageGroupName="res-registry-other")
    assert sm.describe_model_package_group(ModelPackageGroupName="res-registry")["ModelPackageGroupArn"] == group_arn
    groups = sm.list_model_package_groups(NameContains="res-registry", SortBy="Name", SortOrder="Descending")
    assert [g["ModelPackageGroupName"] for g in groups["ModelPackageGroupSummaryList"]] == ["res-registry-other", "res-registry"]
    assert groups["ModelPackageGroupSummaryList"][1]["ModelPackageGroupStatus"] == "Completed"
    tags_round(sm, group_arn, {"owner": "ml"})

    spec = {"Containers": [{"Image": "xgboost:1.7-1", "ModelDataUrl": "s3://churn-lake/models/x/model.tar.gz"}],
            "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]}
    arns = [sm.create_model_package(ModelPackageGroupName="res-registry", InferenceSpecification=spec,
                                    ModelApprovalStatus=status, Tags=[{"Key": "n", "Value": str(i)}])["ModelPackageArn"]
            for i, status in enumerate(("Approved", "PendingManualApproval", "Approved"), start=1)]
    assert [a.rsplit("/", 1)[1] for a in arns] == ["1", "2", "3"]
    approved = sm.list_model_packages(ModelPackageGroupName="res-registry", ModelApprovalStatus="Approved",
                                      SortOrder="Descending")["ModelPackageSummaryList"]
    assert [p["ModelPackageVersion"] for p in approved] == [3, 1]
    tags_round(sm, arns[1], {"n": "2"})

    with pytest.raises(ClientError) as caught:  # as SageMaker: the versions go first
        sm.delete_model_package_group(ModelPackageGroupName="res-registry")
    assert caught.value.response["Error"]["Code"] == "ConflictException"
    assert sm.describe_model_package_group(ModelPackageGroupName="res-registry")

    sm.delete_model_package(ModelPackageName=arns[1])
    assert "does not exist" in not_found(sm.describe_model_package, ModelPackageName=arns[1])
    left = sm.list_model_packages(ModelPackageGroupName="res-registry")["ModelPackageSummaryList"]
    assert [p["ModelPackageVersion"] for p in left] == [1, 3]
    # Numbering goes on after the newest version, not into the gap.
    fourth = sm.create_model_package(ModelPackageGroupName="res-registry", InferenceSpecification=spec)["ModelPackageArn"]
    assert fourth.endswith("/4")
    for package in (arns[0], arns[2], fourth):
        sm.delete_model_package(ModelPackageName=package)
    sm.delete_model_package_group(ModelPackageGroupName="res-registry")
    assert "does not exist" in not_found(sm.describe_model_package_group, ModelPackageGroupName="res-registry")
    assert [g["ModelPackageGroupName"] for g in
            sm.list_model_package_groups(NameContains="res-registry")["ModelPackageGroupSummaryList"]] == ["res-registry-other"]
    assert "does not exist" in not_found(sm.list_tags, ResourceArn=group_arn)


# ---------------------------------------------------------------- jobs and endpoints (they run for real)

@pytest.fixture
def trained(plane):
    """A training job run through the control plane (its tags given at Create), to Completed."""
    sm = plane["sm"]
    rng = np.random.default_rng(7)
    for channel in ("train", "validation", "holdout"):
        write_channel(plane["lake"], channel, rng)
    name = f"res-train-{time.time_ns() % 10**9}"
    sm.create_training_job(**{**training_request(), "TrainingJobName": name}, Tags=[{"Key": "kind", "Value": "test"}])
    done = wait_for(lambda: sm.describe_training_job(TrainingJobName=name), "TrainingJobStatus", {"Completed", "Failed"})
    assert done["TrainingJobStatus"] == "Completed", done.get("FailureReason")
    return done


def test_training_and_transform_jobs_list_tag_and_stop_but_cannot_be_deleted(plane, trained):
    sm = plane["sm"]
    name = trained["TrainingJobName"]
    listed = sm.list_training_jobs(NameContains=name, StatusEquals="Completed")["TrainingJobSummaries"]
    assert [(j["TrainingJobName"], j["TrainingJobStatus"]) for j in listed] == [(name, "Completed")]
    assert listed[0]["TrainingJobArn"] == trained["TrainingJobArn"]
    assert sm.list_training_jobs(NameContains=name, StatusEquals="InProgress")["TrainingJobSummaries"] == []
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    assert sm.list_training_jobs(NameContains=name, CreationTimeAfter=later)["TrainingJobSummaries"] == []
    tags_round(sm, trained["TrainingJobArn"], {"kind": "test"})
    message = not_found(sm.stop_training_job, TrainingJobName=name)
    assert "only a job in progress can be stopped" in message
    assert "Could not find job" in not_found(sm.describe_training_job, TrainingJobName=f"{name}-none")

    # A transform job of that model: Create -> Describe -> List (filters) -> tags.
    model = f"{name}-model"
    sm.create_model(**model_request(model, trained["ModelArtifacts"]["S3ModelArtifacts"]))
    scoring = plane["lake"] / "churn-lake/scoring_input/dt=2026-05-01"
    scoring.mkdir(parents=True, exist_ok=True)
    (scoring / "part-00000.csv").write_text("".join(f"C{i},{i / 10:.1f},0.5,-1.0\n" for i in range(10)))
    job = f"{name}-score"
    sm.create_transform_job(
        TransformJobName=job, ModelName=model, BatchStrategy="MultiRecord", MaxPayloadInMB=1,
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                        "S3Uri": "s3://churn-lake/scoring_input/dt=2026-05-01/"}},
                        "ContentType": "text/csv", "SplitType": "Line"},
        TransformOutput={"S3OutputPath": f"s3://churn-lake/predictions/{job}/", "Accept": "text/csv"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        DataProcessing={"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
        Tags=[{"Key": "batch", "Value": "2026-05-01"}])
    done = wait_for(lambda: sm.describe_transform_job(TransformJobName=job), "TransformJobStatus",
                    {"Completed", "Failed", "Stopped"})
    assert done["TransformJobStatus"] == "Completed", done.get("FailureReason")
    summaries = sm.list_transform_jobs(NameContains=job, StatusEquals="Completed")["TransformJobSummaries"]
    assert [s["TransformJobName"] for s in summaries] == [job]
    assert sm.list_transform_jobs(NameContains=job, StatusEquals="Failed")["TransformJobSummaries"] == []
    tags_round(sm, done["TransformJobArn"], {"batch": "2026-05-01"})
    # The model can go; the job's record stays (jobs are not deleted on SageMaker).
    sm.delete_model(ModelName=model)
    assert sm.describe_transform_job(TransformJobName=job)["TransformJobStatus"] == "Completed"


def test_a_tuning_job_lists_its_trials(plane):
    sm = plane["sm"]
    rng = np.random.default_rng(11)
    for channel in ("train", "validation", "holdout"):
        write_channel(plane["lake"], channel, rng)
    trial = training_request()
    definition = {k: v for k, v in trial.items() if k not in ("TrainingJobName", "HyperParameters")}
    definition["StaticHyperParameters"] = {k: v for k, v in trial["HyperParameters"].items() if k != "max_depth"}
    definition["InputDataConfig"] = [c for c in definition["InputDataConfig"] if c["ChannelName"] != "holdout"]
    name = f"res-hpo-{time.time_ns() % 10**6}"
    sm.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name, TrainingJobDefinition=definition, Tags=[{"Key": "search", "Value": "small"}],
        HyperParameterTuningJobConfig={
            "Strategy": "Bayesian", "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "validation:auc"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 2, "MaxParallelTrainingJobs": 2},
            "ParameterRanges": {"IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "2", "MaxValue": "4",
                                                            "ScalingType": "Linear"}]}})
    listed = sm.list_hyper_parameter_tuning_jobs(NameContains=name)["HyperParameterTuningJobSummaries"]
    assert [(j["HyperParameterTuningJobName"], j["Strategy"]) for j in listed] == [(name, "Bayesian")]
    done = wait_for(lambda: sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
                    "HyperParameterTuningJobStatus", {"Completed", "Failed"})
    assert done["HyperParameterTuningJobStatus"] == "Completed", done.get("FailureReason")
    assert sm.list_hyper_parameter_tuning_jobs(NameContains=name, StatusEquals="Completed")["HyperParameterTuningJobSummaries"]
    assert sm.list_hyper_parameter_tuning_jobs(NameContains=name, StatusEquals="InProgress")[
        "HyperParameterTuningJobSummaries"] == []

    trials = sm.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name, SortBy="FinalObjectiveMetricValue", SortOrder="Descending")["TrainingJobSummaries"]
    assert len(trials) == 2 and trials[0]["TrainingJobName"] == done["BestTrainingJob"]["TrainingJobName"]
    assert all(t["TuningJobName"] == name and t["TrainingJobStatus"] == "Completed" for t in trials)
    # Each trial is a training job of its own, as ListTrainingJobs shows on SageMaker.
    assert {j["TrainingJobName"] for j in sm.list_training_jobs(NameContains=name)["TrainingJobSummaries"]} == \
        {t["TrainingJobName"] for t in trials}
    with pytest.raises(ClientError) as caught:
        sm.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName=f"{name}-none")
    assert caught.value.response["Error"]["Code"] == "ResourceNotFound"
    tags_round(sm, done["HyperParameterTuningJobArn"], {"search": "small"})


@pytest.fixture
def runtime(plane):
    yield plane
    from local_aws import endpoints

    endpoints.main(["delete", "--all"])  # what a failing test left running; and the router


def test_an_endpoint_deleted_while_in_service_stops_answering_and_is_gone(runtime, trained):
    from local_aws.common import control_plane as folder
    from local_aws.common import read_state

    sm = runtime["sm"]
    name = "res-endpoint"
    sm.create_model(**model_request("res-ep-model", trained["ModelArtifacts"]["S3ModelArtifacts"]))
    sm.create_endpoint_config(EndpointConfigName="res-ep-config", ProductionVariants=[
        {"VariantName": "primary", "ModelName": "res-ep-model", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    arn = sm.create_endpoint(EndpointName=name, EndpointConfigName="res-ep-config",
                             Tags=[{"Key": "service", "Value": "churn"}])["EndpointArn"]
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Creating"
    with pytest.raises(ClientError, match="in-progress"):  # as SageMaker: not while it is being created
        sm.delete_endpoint(EndpointName=name)
    described = wait_for(lambda: sm.describe_endpoint(EndpointName=name), "EndpointStatus", {"InService", "Failed"})
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    listed = sm.list_endpoints(NameContains="res-endpoint", StatusEquals="InService")["Endpoints"]
    assert [(e["EndpointName"], e["EndpointArn"]) for e in listed] == [(name, arn)]
    assert sm.list_endpoints(NameContains="res-endpoint", StatusEquals="Creating")["Endpoints"] == []
    tags_round(sm, arn, {"service": "churn"})

    router = read_state(folder("sagemaker", "runtime") / "router.json")["url"]
    rows = "".join(f"C{i},{i / 10:.1f},0.5,-1.0\n" for i in range(3))

    def invoke() -> httpx.Response:
        from local_aws.endpoints import runtime_client

        try:
            answer = runtime_client(router).invoke_endpoint(EndpointName=name, ContentType="text/csv", Body=rows)
            return httpx.Response(200, content=answer["Body"].read())
        except ClientError as err:
            return httpx.Response(err.response["ResponseMetadata"]["HTTPStatusCode"], text=err.response["Error"]["Message"])

    assert invoke().status_code == 200
    # Its model and config can go while it serves (as on SageMaker): it keeps answering.
    sm.delete_model(ModelName="res-ep-model")
    sm.delete_endpoint_config(EndpointConfigName="res-ep-config")
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"
    assert invoke().status_code == 200

    pids = [i["pid"] for i in read_state(folder("sagemaker", "endpoints") / f"{name}.json")["live"]["instances"]]
    assert pids and all(psutil.pid_exists(p) for p in pids)
    sm.delete_endpoint(EndpointName=name)
    refused = invoke()  # at once: the router has no route to it any more
    assert refused.status_code == 400 and "not found" in refused.text, refused.text
    try:
        assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Deleting"
    except ClientError as err:  # already gone (its containers stopped that fast)
        assert "Could not find endpoint" in err.response["Error"]["Message"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            sm.describe_endpoint(EndpointName=name)
        except ClientError:
            break
        time.sleep(0.2)
    assert "Could not find endpoint" in not_found(sm.describe_endpoint, EndpointName=name)
    assert sm.list_endpoints(NameContains="res-endpoint")["Endpoints"] == []
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)
    assert "Could not find endpoint" in not_found(sm.delete_endpoint, EndpointName=name)
    assert "does not exist" in not_found(sm.list_tags, ResourceArn=arn)
