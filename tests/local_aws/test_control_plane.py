"""The local control plane through the clients that use it: boto3, the provider's hooks and triggers.

One control plane per module, on a lake and port of its own. Jobs really run (a small training job,
a Spark job), so these are end-to-end tests of the local target's AWS: a job answers InProgress
until it ends, the provider's trigger waits for it, a failing job's FailureReason reaches the
caller, and the answers parse with botocore's output shapes (moto serializes them from the service
model; the checks below also ask for each shape's required members).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from botocore.exceptions import ClientError

from local_aws import control_plane
from support import free_port, training_request, write_channel

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    lake = tmp_path_factory.mktemp("control-plane") / "lake"
    env = {"LAKE_ROOT": str(lake), "ML_TARGET": "local", "CHURN_LOCAL_AWS_PORT": str(free_port()),
           "CHURN_LOCAL_RUNTIME_PORT": str(free_port()), "CHURN_LOCAL_SPOT_INTERRUPTIONS": "",
           "CHURN_LOCAL_SPOT_RESTART_SECONDS": "0.2", "CHURN_LOCAL_SPOT_NOTICE_SECONDS": "5"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        url = control_plane.ensure_server()
        patch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(control_plane.connection(url, role=None)))
        rng = np.random.default_rng(3)
        for name in ("train", "validation", "holdout"):
            write_channel(lake, name, rng)
        try:
            yield {"url": url, "lake": lake}
        finally:
            control_plane.stop_server()


def client(plane, service: str):
    return control_plane.client(service, plane["url"])


def required_members_present(service: str, operation: str, answer: dict) -> None:
    """Every member the operation's output shape requires is in the parsed answer, recursively."""
    shape = botocore_model(service).operation_model(operation).output_shape

    def check(shape, value, where):
        if shape.type_name == "structure":
            missing = [m for m in shape.required_members if m not in value]
            assert not missing, f"{operation}: {where} lacks required {missing}"
            for name, member in shape.members.items():
                if name in value:
                    check(member, value[name], f"{where}.{name}")
        elif shape.type_name == "list":
            for i, item in enumerate(value):
                check(shape.member, item, f"{where}[{i}]")

    check(shape, answer, operation)


def botocore_model(service: str):
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


def wait(trigger) -> dict:
    """Run a provider trigger to its first event, as the triggerer does."""
    async def first():
        async for event in trigger.run():
            return event.payload
    return asyncio.run(first())


def test_a_training_job_runs_and_the_providers_trigger_waits_for_it(plane):
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook
    from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger

    request = {**training_request(), "TrainingJobName": "cp-train"}
    hook = SageMakerHook(aws_conn_id="aws_default")
    hook.create_training_job(request, wait_for_completion=False, print_log=False)
    first = hook.describe_training_job("cp-train")
    assert first["TrainingJobStatus"] == "InProgress"  # answered at once, as SageMaker does
    event = wait(SageMakerTrigger(job_name="cp-train", job_type="Training", waiter_delay=1,
                                  waiter_max_attempts=300, aws_conn_id="aws_default"))
    assert event["status"] == "success", event
    done = client(plane, "sagemaker").describe_training_job(TrainingJobName="cp-train")
    required_members_present("sagemaker", "DescribeTrainingJob", done)
    assert done["TrainingJobStatus"] == "Completed" and done["SecondaryStatus"] == "Completed"
    assert {m["MetricName"] for m in done["FinalMetricDataList"]} >= {"holdout:auc", "validation:auc"}
    artifact = done["ModelArtifacts"]["S3ModelArtifacts"]
    assert (plane["lake"] / artifact.removeprefix("s3://")).stat().st_size > 0
    with pytest.raises(ClientError, match="ResourceInUse"):
        client(plane, "sagemaker").create_training_job(**request)  # names are unique, as on AWS


def test_a_failing_job_is_failed_with_its_reason_and_the_trigger_says_so(plane):
    from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger

    sagemaker = client(plane, "sagemaker")
    sagemaker.create_training_job(**{**training_request(max_depth="99"), "TrainingJobName": "cp-fails"})
    event = wait(SageMakerTrigger(job_name="cp-fails", job_type="Training", waiter_delay=1,
                                  waiter_max_attempts=300, aws_conn_id="aws_default"))
    assert event["status"] == "error", event
    failed = sagemaker.describe_training_job(TrainingJobName="cp-fails")
    assert failed["TrainingJobStatus"] == "Failed"
    assert "max_depth" in failed["FailureReason"], failed["FailureReason"]
    # The task resumed from that event fails saying why (the trigger's event carries the status only).
    from churn_ml.operators import ChurnTrainingOperator, SageMakerJobFailed

    operator = ChurnTrainingOperator(task_id="train", job_name_prefix="cp", config={})
    with pytest.raises(SageMakerJobFailed, match="cp-fails is Failed: .*max_depth"):
        operator.execute_complete({}, event)


def test_a_bad_request_is_refused_at_create_time(plane):
    bad = {**training_request(), "TrainingJobName": "cp-bad"}
    bad["HyperParameters"] = {**bad["HyperParameters"], "sagemaker_program": "missing.py"}
    del bad["HyperParameters"]["sagemaker_submit_directory"]
    with pytest.raises(ClientError, match="ValidationException"):
        client(plane, "sagemaker").create_training_job(**bad)
    with pytest.raises(ClientError, match="Could not find"):
        client(plane, "sagemaker").describe_training_job(TrainingJobName="cp-never-created")


def test_a_worker_that_dies_fails_its_job_instead_of_running_for_ever(plane):
    sagemaker = client(plane, "sagemaker")
    sagemaker.create_training_job(**{**training_request(num_round="5000"), "TrainingJobName": "cp-killed"})
    worker = plane["lake"] / ".control-plane/sagemaker/training-jobs/cp-killed/worker.json"
    deadline = time.monotonic() + 30
    while not worker.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    os.kill(json.loads(worker.read_text())["pid"], 9)
    deadline = time.monotonic() + 30
    while (job := sagemaker.describe_training_job(TrainingJobName="cp-killed"))["TrainingJobStatus"] == "InProgress":
        assert time.monotonic() < deadline, "the job stayed InProgress after its worker died"
        time.sleep(0.5)
    assert job["TrainingJobStatus"] == "Failed" and job["FailureReason"]


def test_s3_is_the_lake_folder(plane):
    s3 = client(plane, "s3")
    listed = s3.list_objects_v2(Bucket="churn-lake", Prefix="ts/", Delimiter="/")
    assert [p["Prefix"] for p in listed["CommonPrefixes"]] == ["ts/holdout/", "ts/train/", "ts/validation/"]
    required_members_present("s3", "ListObjectsV2", listed)
    key = "ts/train/part-00000.csv"
    body = s3.get_object(Bucket="churn-lake", Key=key)["Body"].read()
    assert body == (plane["lake"] / "churn-lake" / key).read_bytes()
    with pytest.raises(ClientError, match="404"):
        s3.head_object(Bucket="churn-lake", Key="ts/train/missing.csv")
    s3.put_object(Bucket="churn-lake", Key="ts/x", Body=b"x")  # read and write: the runners see it
    assert (plane["lake"] / "churn-lake" / "ts" / "x").read_bytes() == b"x"
    s3.delete_object(Bucket="churn-lake", Key="ts/x")
    assert not (plane["lake"] / "churn-lake" / "ts" / "x").exists()


def test_the_lake_sensor_sees_the_lake_through_s3(plane):
    from churn_ml import lake
    from churn_ml.operators import LakeKeySensor

    keys = [f"s3://churn-lake/raw/{e}/dt=2026-07-01/_SUCCESS" for e in ("customers", "events")]
    sensor = LakeKeySensor(task_id="wait", bucket_key=keys, timeout=600)
    assert not sensor.poke({})
    lake.write_bytes(keys[0], b"")
    assert not sensor.poke({})
    lake.write_bytes(keys[1], b"")
    assert sensor.poke({})


def test_emr_serverless_runs_the_job_driver_with_spark_and_start_is_idempotent(plane):
    from airflow.providers.amazon.aws.triggers.emr import EmrServerlessStartJobTrigger

    from churn_ml.settings import settings

    script = plane["lake"] / "churn-lake" / "probe" / "probe.py"  # not in the artifacts bucket: rebuilt from include/
    script.parent.mkdir(parents=True, exist_ok=True)
    # spark-submit of a script that exits at once: the control plane's part, not Spark's, is under test
    # (the batch chain runs the real jobs through it).
    script.write_text("import sys\nsys.exit(0 if sys.argv[1:] == ['--ok'] else 3)\n")
    emr = client(plane, "emr-serverless")
    app = settings.emr_application_id
    application = emr.get_application(applicationId=app)["application"]  # CREATED as the template makes it,
    assert application["state"] in ("CREATED", "STARTING", "STARTED")  # started by its first run (auto-start)
    assert application["autoStartConfiguration"]["enabled"]
    runs = {}
    for name, argument in (("probe-ok", "--ok"), ("probe-fails", "--fail")):
        request = {"applicationId": app, "executionRoleArn": settings.emr_execution_role_arn, "name": name,
                   "clientToken": name, "jobDriver": {"sparkSubmit": {
                       "entryPoint": "s3://churn-lake/probe/probe.py", "entryPointArguments": [argument]}}}
        runs[name] = emr.start_job_run(**request)["jobRunId"]
        assert emr.start_job_run(**request)["jobRunId"] == runs[name]  # the same clientToken: the same run
    ok = wait(EmrServerlessStartJobTrigger(application_id=app, job_id=runs["probe-ok"], waiter_delay=1,
                                           waiter_max_attempts=300, aws_conn_id="aws_default", cancel_on_kill=False))
    assert ok["status"] == "success", ok
    answer = emr.get_job_run(applicationId=app, jobRunId=runs["probe-ok"])
    required_members_present("emr-serverless", "GetJobRun", answer)
    assert answer["jobRun"]["state"] == "SUCCESS"
    failed = wait(EmrServerlessStartJobTrigger(application_id=app, job_id=runs["probe-fails"], waiter_delay=1,
                                               waiter_max_attempts=300, aws_conn_id="aws_default", cancel_on_kill=False))
    assert failed["status"] in ("error", "failure"), failed
    details = emr.get_job_run(applicationId=app, jobRunId=runs["probe-fails"])["jobRun"]
    assert details["state"] == "FAILED" and "exit 3" in details["stateDetails"], details


def test_glue_jobs_are_the_templates_and_a_failed_run_says_why(plane):
    glue = client(plane, "glue")
    from churn_ml import artifacts
    from local_aws import code_deploy

    job = glue.get_job(JobName="churn-training-set")["Job"]
    # The template's definition names its CodeVersion parameter's default, as on AWS; every run the
    # project starts overrides both with the current version (artifacts.glue_code_arguments).
    default = "0000000000000000"
    assert job["Command"]["ScriptLocation"] == f"s3://churn-artifacts/code/{default}/jobs/churn_training_set.py"
    assert job["DefaultArguments"]["--extra-py-files"] == f"s3://churn-artifacts/code/{default}/lib/churn.zip"
    code = artifacts.glue_code_arguments(code_deploy.deploy(), "churn_training_set")  # as stack.sh start deploys
    run_id = glue.start_job_run(JobName="churn-training-set", Arguments={**code, "--no-such-argument": "1"})["JobRunId"]
    deadline = time.monotonic() + 180
    while (run := glue.get_job_run(JobName="churn-training-set", RunId=run_id)["JobRun"])["JobRunState"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(1)
    required_members_present("glue", "GetJobRun", {"JobRun": run})
    assert run["JobRunState"] == "FAILED" and run["ErrorMessage"], run
    # The provider's Glue trigger waits on the control plane too, and reports the failure.
    from airflow.providers.amazon.aws.triggers.glue import GlueJobCompleteTrigger

    event = wait(GlueJobCompleteTrigger(job_name="churn-training-set", run_id=run_id, verbose=False,
                                        aws_conn_id="aws_default", waiter_delay=1, waiter_max_attempts=10))
    assert event["status"] != "success", event


def test_env_sh_connects_airflow_to_the_same_control_plane(plane):
    shell = subprocess.run(["bash", "-c", ". scripts/env.sh >/dev/null && printf %s \"$AIRFLOW_CONN_AWS_DEFAULT\""],
                           cwd=REPO, capture_output=True, text=True, timeout=60,
                           env={**os.environ, "AIRFLOW_HOME": str(plane["lake"].parent / "airflow")})
    assert json.loads(shell.stdout) == control_plane.connection()
    shell = subprocess.run(["bash", "-c", ". scripts/env.sh >/dev/null && printf %s \"$AIRFLOW_CONN_ATHENA_DEFAULT\""],
                           cwd=REPO, capture_output=True, text=True, timeout=60,
                           env={**os.environ, "AIRFLOW_HOME": str(plane["lake"].parent / "airflow")})
    assert json.loads(shell.stdout) == control_plane.athena_connection()  # the data checks' Athena connection


def test_the_templates_alerts_topic_takes_the_providers_publish(plane):
    """The control plane creates the template's SNS topic at its start, under the ARN the setting
    defaults to locally; the provider's SnsPublishOperator publishes to it through aws_default, and
    an SQS queue subscribed to it (moto delivers) gets the message."""
    from airflow.providers.amazon.aws.operators.sns import SnsPublishOperator

    from churn_ml.settings import settings

    sns, sqs = client(plane, "sns"), client(plane, "sqs")
    topic = settings.alerts_topic_arn
    assert topic in [t["TopicArn"] for t in sns.list_topics()["Topics"]]
    assert topic.endswith(":churn-model-alerts")
    queue = sqs.create_queue(QueueName="cp-alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    SnsPublishOperator(task_id="alert", target_arn=topic, subject="churn drift", message="psi 0.31 > 0.2",
                       aws_conn_id="aws_default").execute({})
    received = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5)["Messages"]
    envelope = json.loads(received[0]["Body"])
    assert (envelope["TopicArn"], envelope["Subject"], envelope["Message"]) == (topic, "churn drift", "psi 0.31 > 0.2")
