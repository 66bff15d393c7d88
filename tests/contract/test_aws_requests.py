"""The aws target's requests, sent for real through boto3 to moto (in-process).

Each test renders a DAG task as the scheduler would (``ML_TARGET=aws``, the templates, the XComs
its upstream tasks return), runs ``execute`` and lets botocore serialise the request, which
validates it against the service model before moto answers. Then it checks what moto holds, and
that a retry of the same task re-attaches to the job instead of starting a second one.

What moto does not do, and so is not covered here: it completes SageMaker jobs at once (no
deferral happens; the triggers are the provider's), it does not run Spark, and it has no MWAA.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import boto3
import pendulum
import pytest
from airflow.exceptions import TaskDeferred
from airflow.sdk import macros
from moto import mock_aws

from churn_ml.training_requests import TUNED
from support import upload_code_version

REPO = Path(__file__).resolve().parents[2]
TEMPLATE_CODE_VERSION = "0000000000000000"  # the template's CodeVersion default, which the Glue definitions name


def code() -> str:
    """``s3://churn-artifacts/code/<version>``: include/'s version, the one the ``aws`` fixture deployed."""
    from churn_ml import artifacts

    return f"s3://churn-artifacts/code/{artifacts.fingerprint(REPO / 'include')}"
ACCOUNT = "123456789012"
DS = "2026-07-06"
ENV = {
    "ML_TARGET": "aws",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AIRFLOW_CONN_AWS_DEFAULT": '{"conn_type": "aws"}',
    "CHURN_SAGEMAKER_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/churn-sagemaker",
    "CHURN_XGBOOST_IMAGE_URI": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
    "CHURN_EMR_EXECUTION_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/churn-emr-serverless",
    # What infra/deploy_mwaa.py sets from the stack's DataKeyArn: the endpoint's capture is encrypted with it.
    "CHURN_CAPTURE_KMS_KEY_ID": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
}
MODEL = "s3://churn-lake/models/churn/churn-xgb-20260706-aaaa/output/model.tar.gz"
BEST = {name: "0.5" for name in TUNED} | {"max_depth": "4", "eta": "0.1"}


class FakeTI:
    """What templates and the provider's operators read from the task instance."""

    def __init__(self, task, xcoms: dict) -> None:
        self.task_id, self.dag_id, self.run_id = task.task_id, task.dag_id, "scheduled__2026-07-06T00:00:00+00:00"
        self.map_index, self.try_number, self.xcoms, self.pushed = -1, 1, xcoms, {}
        # The DAG run, as the OpenLineage provider reads it to name the task's run for the Spark jobs
        # ([openlineage] spark_inject_parent_job_info, which scripts/env.sh sets as MWAA's template does).
        self.dag_run = SimpleNamespace(run_id=self.run_id, logical_date=pendulum.parse(DS), run_after=pendulum.parse(DS),
                                       conf={}, clear_number=0)

    def get_template_context(self) -> dict:
        return {"ti": self, "dag_run": self.dag_run, "ds": DS}

    def xcom_pull(self, task_ids=None, key="return_value", **_):
        return self.xcoms.get(task_ids) if key == "return_value" else self.pushed.get((task_ids, key))

    def xcom_push(self, key, value, **_):
        self.pushed[(self.task_id, key)] = value


@pytest.fixture
def aws(monkeypatch, tmp_path):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    # moto bills nothing (no BillableTimeInSeconds, billedResourceUtilization or DPUSeconds; no
    # ListTrainingJobsForHyperParameterTuningJob): the ledger is checked against the control plane's answers
    # (tests/e2e, tests/local_aws/test_billing_fields.py) and fixed ones (tests/unit/test_cost*.py), not here.
    from churn_ml.operators.cost import JobCostMixin

    monkeypatch.setattr(JobCostMixin, "record_job_cost", lambda self, context, name: None)
    with mock_aws():
        s3 = boto3.client("s3")
        for bucket in ("churn-lake", "churn-artifacts"):
            s3.create_bucket(Bucket=bucket)
        for key in [f"training_sets/ds={DS}/{c}/part-0.csv" for c in ("train", "validation", "holdout")] + [
            MODEL.removeprefix("s3://churn-lake/"), f"scoring_input/dt={DS}/part-0.csv",
        ]:
            s3.put_object(Bucket="churn-lake", Key=key, Body=b"1,2,3\n")
        upload_code_version(s3, "churn-artifacts", tmp_path / "artifacts")  # as infra/deploy_mwaa.py does
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "glue.amazonaws.com"},
                                                         "Action": "sts:AssumeRole"}]}
        boto3.client("iam").create_role(RoleName="churn-glue", AssumeRolePolicyDocument=json.dumps(trust))
        application = boto3.client("emr-serverless").create_application(
            name="churn-spark", releaseLabel="emr-7.9.0", type="SPARK")["applicationId"]
        # moto answers ListJobRuns of an application without runs with ResourceNotFound (AWS: an empty
        # list); the operators look their run up by name first. local_aws.spark_api.list_job_runs does the same.
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.emrserverless.models import emrserverless_backends

        emrserverless_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].job_runs.setdefault(application, [])
        monkeypatch.setenv("CHURN_EMR_APPLICATION_ID", application)
        yield s3


def task_of(dag_file: str, dag_id: str, task_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / dag_file))
    assert not bag.import_errors, bag.import_errors
    task = bag.get_dag(dag_id).get_task(task_id)
    if hasattr(task, "check_interval"):
        task.check_interval = 1
    return task


def run(task, xcoms: dict | None = None, params: dict | None = None):
    """Render the task's templates as the scheduler would, then execute it (a retry: call again).
    ``params`` overrides the DAG's defaults, as a triggered run's conf does."""
    dag = task.dag
    context = {
        "ds": DS, "ds_nodash": DS.replace("-", ""), "logical_date": pendulum.parse(DS), "run_id": "scheduled__x",
        "params": {**{k: dag.params[k] for k in dag.params}, **(params or {})}, "macros": macros, "dag": dag, "task": task,
        "ti": FakeTI(task, xcoms or {}),
    }
    task.render_template_fields(context)
    try:
        return task.execute(context)
    except TaskDeferred as deferred:  # moto finished nothing yet: the provider's trigger would take over
        return deferred


def template_glue_job(resource: str) -> dict:
    """CreateJob arguments for one of the template's Glue jobs (infra/cloudformation/churn.yaml), as the
    stack creates it in this test's account: what the DAGs find, and must leave as it is."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: (
        loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else loader.construct_sequence(node)
        if isinstance(node, yaml.SequenceNode) else loader.construct_mapping(node)))
    template = yaml.load((REPO / "infra/cloudformation/churn.yaml").read_text(), Loader=Loader)  # a SafeLoader subclass
    names = {"${Project}": "churn", "${ArtifactsBucket}": "churn-artifacts", "${CodeVersion}": TEMPLATE_CODE_VERSION}

    def sub(value):
        if isinstance(value, dict):
            return {k: sub(v) for k, v in value.items()}
        if isinstance(value, str):
            for name, replacement in names.items():
                value = value.replace(name, replacement)
        return value

    props = sub(template["Resources"][resource]["Properties"])
    props["Role"] = f"arn:aws:iam::{ACCOUNT}:role/churn-glue"
    props["SecurityConfiguration"] = "churn-glue"
    return props


@pytest.mark.parametrize("backend", ["emr_serverless", "glue"])
def test_spark_jobs_start_with_valid_requests_on_either_backend(aws, monkeypatch, backend):
    monkeypatch.setenv("CHURN_SPARK_BACKEND", backend)
    if backend == "glue":
        definition = template_glue_job("TrainingSetJob")
        boto3.client("glue").create_job(**definition)
        before = boto3.client("glue").get_job(JobName="churn-training-set")["Job"]
    task = task_of("churn_training.py", "churn_training", "build_training_set")
    sent: list[dict] = []
    if backend == "glue":  # what StartJobRun sends (moto's GetJobRuns merges the job's defaults in)
        # Recorded on every client: the task's hook exists only once its templates are rendered (an
        # unrendered script_location, "{{ churn.code }}/...", looks like a local script to the provider).
        from botocore.client import BaseClient

        call = BaseClient._make_api_call

        def record(client, operation, params):
            if operation == "StartJobRun":
                sent.append(dict(params))
            return call(client, operation, params)

        monkeypatch.setattr(BaseClient, "_make_api_call", record)
    run(task)
    if backend == "emr_serverless":
        client = boto3.client("emr-serverless")
        application = task.application_id
        runs = client.list_job_runs(applicationId=application)["jobRuns"]
        assert len(runs) == 1 and runs[0]["name"].startswith("churn-training-set-20260706-")
        job = client.get_job_run(applicationId=application, jobRunId=runs[0]["id"])["jobRun"]
        driver = job["jobDriver"]["sparkSubmit"]
        assert driver["entryPoint"] == f"{code()}/jobs/churn_training_set.py"
        assert f"--py-files {code()}/lib/churn.zip" in driver["sparkSubmitParameters"]
        assert driver["entryPointArguments"][:2] == ["--ds", DS]
    else:
        glue = boto3.client("glue")
        job = glue.get_job(JobName="churn-training-set")["Job"]
        # StartJobRun only: the template's definition is untouched (security configuration, default
        # arguments, workers, timeout); the run overrides exactly its code (--scriptLocation,
        # --extra-py-files: the deployed version's) and sends none of the job's other default arguments.
        assert job == before
        assert job["SecurityConfiguration"] == "churn-glue" and job["Timeout"] == definition["Timeout"]
        template_code = f"s3://churn-artifacts/code/{TEMPLATE_CODE_VERSION}"
        assert job["Command"]["ScriptLocation"] == f"{template_code}/jobs/churn_training_set.py"
        assert job["DefaultArguments"]["--extra-py-files"] == f"{template_code}/lib/churn.zip"
        assert task.script_location is None  # the definition's: only a run's --scriptLocation replaces it
        runs = glue.get_job_runs(JobName="churn-training-set")["JobRuns"]
        assert len(runs) == 1 and runs[0]["Arguments"]["--ds"] == DS
        assert len(sent) == 1 and set(sent[0]) == {"JobName", "Arguments"}
        arguments = sent[0]["Arguments"]
        assert arguments["--ds"] == DS and set(arguments) & set(job["DefaultArguments"]) == {"--extra-py-files"}
        assert arguments["--scriptLocation"] == f"{code()}/jobs/churn_training_set.py"
        assert arguments["--extra-py-files"] == f"{code()}/lib/churn.zip"


def test_a_glue_job_the_template_does_not_define_is_never_created(aws, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from churn_ml.operators import GlueJobDefinitionError

    monkeypatch.setenv("CHURN_SPARK_BACKEND", "glue")
    # Not retried: a retry cannot define the job (the task fails on its first try, saying what to do).
    with pytest.raises(AirflowFailException, match="does not exist: the stack of infra/cloudformation/churn.yaml") as err:
        run(task_of("churn_training.py", "churn_training", "build_training_set"))
    assert isinstance(err.value.__cause__, GlueJobDefinitionError)
    assert boto3.client("glue").get_jobs()["Jobs"] == []


def test_tuning_request_is_valid_and_a_retry_reattaches(aws):
    task = task_of("churn_training.py", "churn_training", "tune_hyperparameters")
    xcoms = {"inspect_training_set": {"fingerprint": "f1"}, "resolve_champion": {"model_data_url": "", "warm_start": ""}}
    assert isinstance(run(task, xcoms), TaskDeferred)  # created; the provider's trigger would wait for it
    client = boto3.client("sagemaker")
    jobs = client.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"]
    assert len(jobs) == 1 and len(jobs[0]["HyperParameterTuningJobName"]) <= 32
    described = client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=jobs[0]["HyperParameterTuningJobName"])
    assert described["HyperParameterTuningJobConfig"]["Strategy"] == "Bayesian"
    assert described["TrainingJobDefinition"]["EnableManagedSpotTraining"] is True
    # The retry re-attaches to the job, which moto completed on creation with a placeholder best
    # training job (no trial ran): the operator refuses it instead of training with missing values.
    with pytest.raises(RuntimeError, match="without a best training job that has the tuned hyperparameters"):
        run(task_of("churn_training.py", "churn_training", "tune_hyperparameters"), xcoms)
    assert len(client.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"]) == 1


def test_training_request_is_valid_spot_with_checkpoints_and_a_retry_reattaches(aws):
    xcoms = {"inspect_training_set": {"fingerprint": "f1"}, "resolve_champion": {"model_data_url": MODEL, "warm_start": ""},
             "tune_hyperparameters": {"Tuning": {"BestTrainingJob": {"TunedHyperParameters": BEST}}}}
    first = run(task_of("churn_training.py", "churn_training", "train_model"), xcoms)
    client = boto3.client("sagemaker")
    jobs = client.list_training_jobs()["TrainingJobSummaries"]
    assert len(jobs) == 1
    job = client.describe_training_job(TrainingJobName=jobs[0]["TrainingJobName"])
    assert job["EnableManagedSpotTraining"] is True and job["StoppingCondition"]["MaxWaitTimeInSeconds"] == 7200
    assert job["CheckpointConfig"]["S3Uri"].endswith(f"/{job['TrainingJobName']}/")
    assert [c["ChannelName"] for c in job["InputDataConfig"]] == ["train", "validation", "holdout", "champion"]
    assert job["HyperParameters"]["eta"] == "0.1"
    again = run(task_of("churn_training.py", "churn_training", "train_model"), xcoms)
    assert len(client.list_training_jobs()["TrainingJobSummaries"]) == 1
    assert again["Training"]["TrainingJobName"] == first["Training"]["TrainingJobName"]


def test_transform_request_is_valid_and_a_retry_reattaches_only_while_its_outputs_are_there(aws):
    xcoms = {"resolve_model": {"model_data_url": MODEL}}
    listed = run(task_of("churn_batch_scoring.py", "churn_batch_scoring", "list_scoring_input"))
    assert listed["objects"] == 1 and listed["manifest"].endswith("/scheduled__x/scoring_input.manifest")
    run(task_of("churn_batch_scoring.py", "churn_batch_scoring", "batch_transform"), xcoms)
    client = boto3.client("sagemaker")
    jobs = client.list_transform_jobs()["TransformJobSummaries"]
    assert len(jobs) == 1
    job = client.describe_transform_job(TransformJobName=jobs[0]["TransformJobName"])
    assert job["DataProcessing"] == {"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"}
    assert job["TransformInput"]["SplitType"] == "Line" and job["BatchStrategy"] == "MultiRecord"
    assert job["TransformInput"]["DataSource"]["S3DataSource"] == {"S3DataType": "ManifestFile", "S3Uri": listed["manifest"]}
    assert len(client.list_models()["Models"]) == 1
    # moto completes the job without writing its output; SageMaker would have: put it where it goes.
    output = job["TransformOutput"]["S3OutputPath"] + "part-0.csv.out"
    assert output.startswith(f"s3://churn-lake/_staging/predictions/dt={DS}/scheduled__x/out/")
    aws.put_object(Bucket="churn-lake", Key=output.removeprefix("s3://churn-lake/"), Body=b"1,0.5\n")
    run(task_of("churn_batch_scoring.py", "churn_batch_scoring", "batch_transform"), xcoms)
    assert len(client.list_transform_jobs()["TransformJobSummaries"]) == 1  # outputs in place: re-attached
    assert len(client.list_models()["Models"]) == 1  # same definition, same model
    # Once the outputs were published (moved away) or cleared, the completed job is not trusted: it runs again.
    aws.delete_object(Bucket="churn-lake", Key=output.removeprefix("s3://churn-lake/"))
    run(task_of("churn_batch_scoring.py", "churn_batch_scoring", "batch_transform"), xcoms)
    names = sorted(j["TransformJobName"] for j in client.list_transform_jobs()["TransformJobSummaries"])
    assert names == [job["TransformJobName"], job["TransformJobName"] + "-r2"]


def register(job: str, approval: str, data_date: str = "2026-07-02", model: str = MODEL) -> dict:
    """registry.register as register_model calls it, for the training job ``job``."""
    from churn_ml import registry

    return registry.register(
        model_data_url=model, image_uri=ENV["CHURN_XGBOOST_IMAGE_URI"], training_job_name=job, approval=approval,
        reason="test", metrics={"holdout:auc": 0.8}, card={}, card_plot=None,
        evaluation_uri="s3://churn-lake/models/churn/evaluation.json", data_date=data_date,
        tuning_job_name=f"churn-hpo-{data_date.replace('-', '')}-abc",
    )


def test_registry_and_deployment_requests_are_valid_and_only_approved_models_deploy(aws):
    from churn_ml import registry
    from churn_ml.operators import DeploymentError

    rejected = register("churn-xgb-a", "Rejected")
    approved = register("churn-xgb-b", "Approved")
    assert (rejected["ModelPackageVersion"], approved["ModelPackageVersion"]) == (1, 2)
    assert register("churn-xgb-b", "Approved")["ModelPackageVersion"] == 2  # idempotent per training job
    assert registry.latest_approved()["ModelPackageVersion"] == 2
    # The data date and tuning job survive the round trip through SageMaker's metadata properties.
    assert registry.champion_for("2026-07-03")["ModelPackageVersion"] == 2
    assert registry.champion_for("2026-07-02") is None
    assert registry.trained_before("2026-07-03")[-1]["TuningJobName"] == "churn-hpo-20260702-abc"

    from airflow.sdk.exceptions import AirflowFailException

    # No retry can approve a model: the task fails on this try, the DeploymentError as its cause.
    with pytest.raises(AirflowFailException, match="Rejected, not Approved.*not retried") as failed:
        run(task_of("churn_training.py", "churn_training", "deploy_model"),
            {"publish_model": {"model_package_version": 1, "model_data_url": MODEL, "evaluation_uri": ""}})
    assert isinstance(failed.value.__cause__, DeploymentError)
    result = run(task_of("churn_training.py", "churn_training", "deploy_model"),
                 {"publish_model": {"model_package_version": 2, "model_data_url": MODEL, "evaluation_uri": ""}})
    client = boto3.client("sagemaker")
    endpoint = client.describe_endpoint(EndpointName="churn-xgboost")
    assert endpoint["EndpointConfigName"].startswith("churn-xgboost-v2-")
    config = client.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    assert config["ProductionVariants"][0]["InitialInstanceCount"] == 2
    assert isinstance(result, TaskDeferred) or result["Endpoint"]["EndpointConfigName"] == endpoint["EndpointConfigName"]


CAPTURED = {
    "EnableCapture": True, "InitialSamplingPercentage": 15, "DestinationS3Uri": "s3://churn-lake/monitoring/capture/",
    "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]},
}


@pytest.mark.parametrize(("params", "kms_key", "expected"), [
    ({}, "alias/churn-data", {**CAPTURED, "KmsKeyId": "alias/churn-data"}),
    ({"capture_sampling_percentage": 100}, "alias/churn-data", {**CAPTURED, "InitialSamplingPercentage": 100,
                                                                 "KmsKeyId": "alias/churn-data"}),
    ({"capture_sampling_percentage": 0}, "", {**CAPTURED, "EnableCapture": False, "InitialSamplingPercentage": 0}),
], ids=["default-with-kms", "100-percent", "off-without-a-key"])
def test_the_endpoint_captures_to_the_lake_as_the_run_says(aws, monkeypatch, params, kms_key, expected):
    """DataCaptureConfig as SageMaker takes it (botocore validated the request on its way to moto): the
    run's percentage (0: capture off), the lake's capture prefix, the KMS key (none needed with capture off)."""
    monkeypatch.setenv("CHURN_CAPTURE_KMS_KEY_ID", kms_key)
    version = register("churn-xgb-b", "Approved")["ModelPackageVersion"]
    run(task_of("churn_training.py", "churn_training", "deploy_model"),
        {"publish_model": {"model_package_version": version, "model_data_url": MODEL, "evaluation_uri": ""}}, params)
    client = boto3.client("sagemaker")
    endpoint = client.describe_endpoint(EndpointName="churn-xgboost")
    assert client.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])["DataCaptureConfig"] == expected


def test_an_endpoint_with_capture_and_no_kms_key_is_refused_on_aws(aws, monkeypatch):
    """An empty key would have SageMaker pick one the monitoring roles cannot read: the task fails instead."""
    monkeypatch.setenv("CHURN_CAPTURE_KMS_KEY_ID", "")
    version = register("churn-xgb-b", "Approved")["ModelPackageVersion"]
    with pytest.raises(Exception, match="CHURN_CAPTURE_KMS_KEY_ID is empty.*DataKeyArn"):
        run(task_of("churn_training.py", "churn_training", "deploy_model"),
            {"publish_model": {"model_package_version": version, "model_data_url": MODEL, "evaluation_uri": ""}})
    assert boto3.client("sagemaker").list_endpoint_configs()["EndpointConfigs"] == []


@pytest.fixture
def sagemaker_calls(aws, monkeypatch) -> list[tuple[str, dict]]:
    """(operation, parameters) of every SageMaker request the registry sends (through one hook)."""
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    from churn_ml import registry

    hook, calls = SageMakerHook(aws_conn_id="aws_default"), []
    hook.conn.meta.events.register("provide-client-params.sagemaker",
                                   lambda params, model, **_: calls.append((model.name, dict(params))))
    monkeypatch.setattr(registry, "_sagemaker", lambda: hook)
    return calls


def test_registry_lookups_filter_on_the_server_and_describe_only_what_they_need(sagemaker_calls, monkeypatch):
    """ListModelPackages filters (group, Approved, newest first), one page of one summary at a time, and
    a DescribeModelPackage only of the versions a lookup needs, never of every version."""
    from churn_ml import registry

    monkeypatch.setattr(registry, "PAGE_SIZE", 1)  # every lookup has to walk the pages
    for job, approval, data_date in [("churn-xgb-a", "Rejected", "2026-06-25"), ("churn-xgb-b", "Approved", "2026-07-02"),
                                     ("churn-xgb-c", "Rejected", "2026-07-09"),
                                     ("churn-xgb-d", "Approved", "2026-06-18")]:  # a backfill: registered last, oldest data
        register(job, approval, data_date, model=MODEL.replace("aaaa", job[-1]))

    def calls_of(lookup) -> tuple[object, list[str], list[dict]]:
        sagemaker_calls.clear()
        result = lookup()
        listed = [params for op, params in sagemaker_calls if op == "ListModelPackages"]
        return result, [op for op, _ in sagemaker_calls if op != "ListModelPackages"], listed

    newest, others, listed = calls_of(registry.latest_approved)
    assert newest["TrainingJobName"] == "churn-xgb-d" and others == ["DescribeModelPackage"]
    assert listed == [{"ModelPackageGroupName": "churn-xgboost", "ModelApprovalStatus": "Approved",
                       "SortBy": "CreationTime", "SortOrder": "Descending", "MaxResults": 1}]
    # The champion is the Approved version with the newest data before the date, not the newest registered;
    # the Rejected versions are never described.
    champion, others, listed = calls_of(lambda: registry.champion_for("2026-07-16"))
    assert champion["TrainingJobName"] == "churn-xgb-b" and others == ["DescribeModelPackage"] * 2
    assert {p["ModelApprovalStatus"] for p in listed} == {"Approved"} and len(listed) >= 2  # both pages
    assert registry.champion_for("2026-06-30")["TrainingJobName"] == "churn-xgb-d"
    shown, others, _ = calls_of(lambda: registry.show_version(3))
    assert shown["TrainingJobName"] == "churn-xgb-c" and others == ["DescribeModelPackage"]
    # The version of a training job, among several: found from the summaries, nothing created.
    again, others, _ = calls_of(lambda: register("churn-xgb-b", "Approved", "2026-07-02", model=MODEL.replace("aaaa", "b")))
    assert again["ModelPackageVersion"] == 2 and others == ["DescribeModelPackage"]
    assert [v["TrainingJobName"] for v in registry.list_versions()] == [f"churn-xgb-{x}" for x in "abcd"]


def test_a_retried_registration_sends_the_same_client_token_and_gets_the_same_version(sagemaker_calls, monkeypatch):
    """SageMaker answers a CreateModelPackage whose ClientToken it has seen with the package it created
    then; moto 5.2.5 records the token but creates another version, so this test gives it SageMaker's
    answer. The registry's own lookup is blinded, as when ListModelPackages does not show the first
    create yet (two attempts at once, or a create that went through while its attempt failed): the
    token alone keeps the registration one version."""
    from moto.sagemaker.models import SageMakerModelBackend

    from churn_ml import naming, registry

    create = SageMakerModelBackend.create_model_package

    def create_once_per_token(self, **request):
        seen = [p for p in self.model_packages.values() if request["client_token"] and p.client_token == request["client_token"]]
        return seen[0].arn if seen else create(self, **request)

    monkeypatch.setattr(SageMakerModelBackend, "create_model_package", create_once_per_token)
    monkeypatch.setattr(registry, "_registered", lambda *_: None)
    first, retry = register("churn-xgb-a", "Approved"), register("churn-xgb-a", "Approved")
    other = register("churn-xgb-b", "Approved", model=MODEL.replace("aaaa", "bbbb"))
    tokens = [params["ClientToken"] for op, params in sagemaker_calls if op == "CreateModelPackage"]
    assert len(tokens) == 3 and tokens[0] == tokens[1] != tokens[2]
    assert naming.check_name(tokens[0], "sagemaker", "CreateModelPackage", "ClientToken") == tokens[0]
    assert [v["ModelPackageVersion"] for v in (first, retry, other)] == [1, 1, 2]
    assert [v["TrainingJobName"] for v in registry.list_versions()] == ["churn-xgb-a", "churn-xgb-b"]


def test_a_registration_found_again_carries_every_metric_of_a_fresh_one(sagemaker_calls):
    """Every metric of the model goes into CustomerMetadataProperties (botocore checks the keys and the
    50-entry limit), so the version a rerun finds has them; one registered with the headline metrics only
    (as before) gets the others in a valid UpdateModelPackage that keeps its status. Nothing is created twice."""
    from churn_ml import registry

    metrics = {f"{split}:{name}": 0.5 for split in ("validation", "holdout")
               for name in ("auc", "pr_auc", "logloss", "brier", "lift_at_10")} | {"holdout:best_single_feature_auc": 0.6}

    def again(job: str, given: dict) -> dict:
        return registry.register(
            model_data_url=MODEL.replace("aaaa", job[-1]), image_uri=ENV["CHURN_XGBOOST_IMAGE_URI"], training_job_name=job,
            approval="Approved", reason="clears the floor", metrics=given, card={}, card_plot=None,
            evaluation_uri="s3://churn-lake/models/churn/evaluation.json", data_date="2026-07-02")

    fresh = again("churn-xgb-a", metrics)
    assert again("churn-xgb-a", metrics) == fresh and set(fresh["Metrics"]) == set(metrics)
    old = again("churn-xgb-b", {k: v for k, v in metrics.items() if k.startswith("holdout:") and "single" not in k})
    sagemaker_calls.clear()
    healed = again("churn-xgb-b", metrics)
    updates = [params for op, params in sagemaker_calls if op == "UpdateModelPackage"]
    assert [op for op, _ in sagemaker_calls if op.startswith("Create")] == [] and len(updates) == 1
    assert updates[0]["ModelApprovalStatus"] == "Approved" and updates[0]["ApprovalDescription"] == "clears the floor"
    assert healed["ModelPackageVersion"] == old["ModelPackageVersion"] and set(healed["Metrics"]) == set(metrics)
    assert registry.show_version(old["ModelPackageVersion"])["Metrics"] == healed["Metrics"]


def test_the_endpoint_and_batch_scoring_create_the_same_model_for_an_artifact(aws):
    """Both DAGs build their CreateModel from one definition: the same container, code and role for a model."""
    register("churn-xgb-b", "Approved")
    run(task_of("churn_training.py", "churn_training", "deploy_model"),
        {"publish_model": {"model_package_version": 1, "model_data_url": MODEL, "evaluation_uri": ""}})
    run(task_of("churn_batch_scoring.py", "churn_batch_scoring", "list_scoring_input"))
    run(task_of("churn_batch_scoring.py", "churn_batch_scoring", "batch_transform"), {"resolve_model": {"model_data_url": MODEL}})
    client = boto3.client("sagemaker")
    models = [client.describe_model(ModelName=m["ModelName"]) for m in client.list_models()["Models"]]
    assert sorted(m["ModelName"].split("-model-")[0] for m in models) == ["churn-score", "churn-xgboost"]
    definitions = [{k: m[k] for k in ("PrimaryContainer", "ExecutionRoleArn")} for m in models]
    assert definitions[0] == definitions[1] and definitions[0]["PrimaryContainer"]["ModelDataUrl"] == MODEL


def test_sensor_pokes_s3(aws):
    task = task_of("churn_batch_scoring.py", "churn_batch_scoring", "wait_for_scoring_input")
    context = {"ds": DS, "params": {}, "macros": macros, "dag": task.dag, "task": task, "ti": FakeTI(task, {}),
               "logical_date": pendulum.parse(DS), "run_id": "x", "ds_nodash": DS.replace("-", "")}
    task.render_template_fields(context)
    assert task.poke(context) is False
    aws.put_object(Bucket="churn-lake", Key=f"scoring_input/dt={DS}/_SUCCESS", Body=json.dumps({}).encode())
    assert task.poke(context) is True


@pytest.fixture
def streaming_aws(aws):
    """What the CloudFormation template creates for streaming: the stream, the Glue streaming job
    (MaxConcurrentRuns 1, --source glue), and a serving endpoint."""
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName="churn-events", ShardCount=2)
    arn = kinesis.describe_stream_summary(StreamName="churn-events")["StreamDescriptionSummary"]["StreamARN"]
    boto3.client("glue").create_job(
        Name="churn-streaming", Role="churn-glue", GlueVersion="5.0", WorkerType="G.1X", NumberOfWorkers=2,
        Command={"Name": "gluestreaming",
                 "ScriptLocation": f"s3://churn-artifacts/code/{TEMPLATE_CODE_VERSION}/jobs/churn_stream_scoring.py",
                 "PythonVersion": "3"},
        DefaultArguments={"--extra-py-files": f"s3://churn-artifacts/code/{TEMPLATE_CODE_VERSION}/lib/churn.zip",
                          "--source": "glue",
                          "--stream-arn": arn, "--region": "us-east-1"},
        ExecutionProperty={"MaxConcurrentRuns": 1},
    )
    sagemaker = boto3.client("sagemaker")
    sagemaker.create_model(ModelName="m", ExecutionRoleArn=ENV["CHURN_SAGEMAKER_ROLE_ARN"],
                           PrimaryContainer={"Image": ENV["CHURN_XGBOOST_IMAGE_URI"], "ModelDataUrl": MODEL})
    sagemaker.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[
        {"VariantName": "primary", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    sagemaker.create_endpoint(EndpointName="churn-xgboost", EndpointConfigName="c")
    return arn


def test_kinesis_requests_of_the_producer_and_the_spark_source_are_valid(streaming_aws):
    from churn.kinesis_source import KinesisStreamReader
    from churn.stream_producer import kinesis_client, produce

    lines = [json.dumps({"event_id": f"e{i}", "customer_id": f"c{i % 7}", "event_ts": "2026-07-06T10:00:00Z",
                         "event_type": "usage", "value": 1.5}) for i in range(40)] + ["not json {"]
    assert produce(kinesis_client(), "churn-events", iter(lines), rate=0) == 41  # PutRecords, validated
    reader = KinesisStreamReader({"stream": "churn-events"})  # ListShards, GetShardIterator, GetRecords
    rows, offset = reader.read(reader.initialOffset())
    rows = list(rows)
    assert len(rows) == 41 and {r[3] for r in rows if r[3].startswith("not")} == {"not json {"}
    for shard, sequence in offset["shards"].items():  # the offset is the last record read of each shard
        assert sequence == max((r[1] for r in rows if r[0] == shard), key=int, default="")
    replay = list(reader.readBetweenOffsets(reader.initialOffset(), offset))  # AFTER_SEQUENCE_NUMBER path too
    assert [r[1] for r in replay] == [r[1] for r in sorted(rows, key=lambda r: r[0])]
    assert reader.read(offset)[1] == offset  # nothing new


def test_streaming_dag_starts_one_glue_run_and_a_retry_or_a_race_reattaches(streaming_aws, monkeypatch):
    """ensure_job on the aws target: StartJobRun (validated) once; a second check, a retried task and a
    start that races another all find the same run. moto moves a run STARTING -> RUNNING -> SUCCEEDED
    on each read; pinned here so the run stays active, as a streaming run does."""
    import logging

    from moto.moto_api import state_manager

    from churn_ml import stream_job

    log = logging.getLogger("test")
    state_manager.set_transition("glue::job_run", {"progression": "manual", "times": 10**6})
    try:
        assert stream_job.ensure_endpoint(log)["status"] == "InService"
        first = stream_job.ensure_job(log)
        assert first["action"] == "started"
        again = stream_job.ensure_job(log)
        assert again["action"] == "none" and again["run_id"] == first["run_id"]
        raced = stream_job._start(log)  # a start while the run is active: ConcurrentRunsExceeded -> that run
        assert raced["Id"] == first["run_id"]
        runs = boto3.client("glue").get_job_runs(JobName="churn-streaming")["JobRuns"]
        assert len(runs) == 1
        arguments = runs[0]["Arguments"]
        assert arguments["--source"] == "glue" and arguments["--stream-arn"] == streaming_aws
        assert arguments["--checkpoint"] == "s3://churn-lake/_streaming/churn_streaming/checkpoint"
        assert arguments["--endpoint-name"] == "churn-xgboost"
    finally:
        state_manager.unset_transition("glue::job_run")
    # A finished run (moto: SUCCEEDED after its reads) is replaced by a new one.
    for _ in range(3):
        boto3.client("glue").get_job_runs(JobName="churn-streaming")
    assert stream_job.ensure_job(log)["action"] == "started"
    assert len(boto3.client("glue").get_job_runs(JobName="churn-streaming")["JobRuns"]) == 2


def test_stopping_the_streaming_job_sends_a_valid_batch_stop(streaming_aws, monkeypatch):
    """moto has no BatchStopJobRun: botocore's Stubber validates the request against the service model."""
    import logging

    from botocore.stub import Stubber
    from moto.moto_api import state_manager

    from churn_ml import stream_job

    log = logging.getLogger("test")
    state_manager.set_transition("glue::job_run", {"progression": "manual", "times": 10**6})
    try:
        run_id = stream_job.ensure_job(log)["run_id"]
        runs = boto3.client("glue").get_job_runs(JobName="churn-streaming")
    finally:
        state_manager.unset_transition("glue::job_run")
    hook = stream_job._glue_hook()
    with Stubber(hook.conn) as stub:
        stub.add_response("get_job_runs", runs, {"JobName": "churn-streaming", "MaxResults": 10})
        stub.add_response("batch_stop_job_run", {"SuccessfulSubmissions": [{"JobName": "churn-streaming", "JobRunId": run_id}],
                                                 "Errors": []},
                          {"JobName": "churn-streaming", "JobRunIds": [run_id]})
        monkeypatch.setattr(stream_job, "_glue_hook", lambda: hook)
        assert stream_job.stop_job(log)["Id"] == run_id
        stub.assert_no_pending_responses()
