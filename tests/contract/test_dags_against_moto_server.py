"""`airflow dags test` of churn_batch_scoring with ML_TARGET=aws against moto in server mode.

The AWS connection carries moto's ``endpoint_url`` (what the provider's async hooks and triggers
need too). moto completes the transform job at once but runs no container, so no ``.out`` file
appears: every task up to ``batch_transform`` must succeed, and ``publish_predictions`` must fail
for exactly that reason. No deferral happens here (the sensor's key exists from the start and the
job is complete on creation). The features DAG's Spark job does defer: its trigger runs in line
under ``airflow dags test`` against the same server.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from churn_ml.dag_support import MODEL_POINTER_KEY
from support import free_port, upload_code_version

# Each test runs `airflow dags test` in a subprocess against a moto server (~15 s each): in the full
# test command, not in make test-fast.
pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
DS = "2026-07-02"



@pytest.fixture
def moto_server():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(10)


def _application(emr) -> str:
    """An EMR Serverless application, as the stack creates it. moto answers ListJobRuns of an application
    that has no run yet with ResourceNotFound, where AWS answers an empty list; the operators look a
    run up by name before starting it, so the application gets one run of another name first."""
    application = emr.create_application(name="churn-spark", releaseLabel="emr-7.9.0", type="SPARK")["applicationId"]
    emr.start_job_run(applicationId=application, clientToken="moto-seed", name="moto-seed",
                      executionRoleArn="arn:aws:iam::123456789012:role/churn-emr-serverless",
                      jobDriver={"sparkSubmit": {"entryPoint": "s3://churn-artifacts/seed.py"}})
    return application


def _client(service: str, url: str):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def _dags_test(dag_id: str, url: str, tmp_path: Path, database: str, **settings: str) -> str:
    """``airflow dags test <dag_id> DS`` with ML_TARGET=aws and moto's endpoint in the AWS connection; the log."""
    env = {
        **os.environ,
        "ML_TARGET": "aws", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "CHURN_TASK_RETRIES": "0",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws", "extra": {"endpoint_url": url, "region_name": "us-east-1"}}),
        "CHURN_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/churn-sagemaker",
        "CHURN_XGBOOST_IMAGE_URI": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,  # a migrated copy (the airflow_sqlite fixture)
        **settings,
    }
    run = subprocess.run(["airflow", "dags", "test", dag_id, DS], env=env, capture_output=True, text=True, timeout=600)
    return run.stdout + run.stderr


def test_features_dag_starts_the_spark_job_on_emr_serverless_against_moto(moto_server, tmp_path, airflow_sqlite):
    """The sensor, then StartJobRun on EMR Serverless, deferral, and the provider's trigger waiting
    for the run through aiobotocore (moto reports SUCCESS); moto runs no Spark, so report_features
    finds no run summary and fails, saying so."""
    s3 = _client("s3", moto_server)
    for bucket in ("churn-lake", "churn-artifacts"):
        s3.create_bucket(Bucket=bucket)
    upload_code_version(s3, "churn-artifacts", tmp_path / "artifacts")  # the deploy's code version and pointer
    for entity in ("customers", "events"):
        s3.put_object(Bucket="churn-lake", Key=f"raw/{entity}/dt=2026-07-01/_SUCCESS", Body=b"")
    emr = _client("emr-serverless", moto_server)
    application = _application(emr)
    log = _dags_test("churn_features", moto_server, tmp_path, airflow_sqlite, CHURN_EMR_APPLICATION_ID=application,
                     CHURN_EMR_EXECUTION_ROLE_ARN="arn:aws:iam::123456789012:role/churn-emr-serverless")
    for task in ("wait_for_raw_partitions", "build_features", "report_features"):
        assert f"end task task_id={task}" in log, f"{task} did not run:\n{log[-3000:]}"
    runs = [r for r in emr.list_job_runs(applicationId=application)["jobRuns"] if r["name"] != "moto-seed"]
    assert len(runs) == 1 and runs[0]["name"].startswith("churn-features-20260702-") and runs[0]["state"] == "SUCCESS"
    assert "Serverless job completed" in log  # the provider's trigger (aiobotocore) saw the run finish
    assert "wrote no run summary at s3://churn-lake/_runs/churn_features/ds=2026-07-02/summary.json" in log
    assert re.search(r"DagRun Finished: dag_id=churn_features, .* state=failed", log)


def test_batch_scoring_dag_runs_on_the_aws_target_against_moto(moto_server, tmp_path, airflow_sqlite):
    s3 = _client("s3", moto_server)
    for bucket in ("churn-lake", "churn-artifacts"):
        s3.create_bucket(Bucket=bucket)
    upload_code_version(s3, "churn-artifacts", tmp_path / "artifacts")  # the deploy's code version and pointer
    s3.put_object(Bucket="churn-lake", Key=f"scoring_input/dt={DS}/part-00000.csv", Body=b"C1,1.0,2.0\n")
    s3.put_object(Bucket="churn-lake", Key=f"scoring_input/dt={DS}/_SUCCESS", Body=b"")
    s3.put_object(Bucket="churn-lake", Key=f"predictions/dt={DS}/stale.out", Body=b"from an earlier run\n")
    s3.put_object(Bucket="churn-lake", Key=MODEL_POINTER_KEY, Body=json.dumps(
        {"model_data_url": "s3://churn-lake/models/churn/job/output/model.tar.gz"}).encode())

    log = _dags_test("churn_batch_scoring", moto_server, tmp_path, airflow_sqlite)
    for task in ("wait_for_scoring_input", "resolve_model", "list_scoring_input", "batch_transform"):
        assert f"end task task_id={task}" in log, f"{task} did not run:\n{log[-3000:]}"
    # moto completes the job without running it: no output to publish, and the task says so.
    assert re.search(r"batch transform left no output s3://churn-lake/_staging/predictions/dt=2026-07-02/[^ ]+/out/"
                     r"part-00000\.csv\.out", log), log[-3000:]
    assert re.search(r"DagRun Finished: dag_id=churn_batch_scoring, .* state=failed", log)

    sagemaker = _client("sagemaker", moto_server)
    jobs = sagemaker.list_transform_jobs()["TransformJobSummaries"]
    assert len(jobs) == 1 and jobs[0]["TransformJobName"].startswith("churn-score-20260702-")
    job = sagemaker.describe_transform_job(TransformJobName=jobs[0]["TransformJobName"])
    source = job["TransformInput"]["DataSource"]["S3DataSource"]
    assert source["S3DataType"] == "ManifestFile" and job["TransformOutput"]["S3OutputPath"].startswith(
        f"s3://churn-lake/_staging/predictions/dt={DS}/")
    # The manifest lists the data object only: the _SUCCESS marker is never sent to the model.
    bucket, key = source["S3Uri"][len("s3://"):].split("/", 1)
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert manifest == [{"prefix": f"s3://churn-lake/scoring_input/dt={DS}/"}, "part-00000.csv"]
    # The run failed before publishing: the partition readers use is exactly as it was.
    listed = s3.list_objects_v2(Bucket="churn-lake", Prefix=f"predictions/dt={DS}/")["Contents"]
    assert [o["Key"] for o in listed] == [f"predictions/dt={DS}/stale.out"]


def test_streaming_dag_starts_the_glue_streaming_job_against_moto(moto_server, tmp_path, airflow_sqlite):
    """ensure_endpoint (DescribeEndpoint), ensure_streaming_job (GetJobRuns, GetJob, StartJobRun) and
    check_health (the stream's partitions in the Glue Data Catalog: none yet; the run's progress.json in S3: none
    yet, so the run is STARTING within its grace).
    moto runs no Spark: no progress is ever written, which a later check reports as a problem."""
    s3 = _client("s3", moto_server)
    for bucket in ("churn-lake", "churn-artifacts"):
        s3.create_bucket(Bucket=bucket)
    upload_code_version(s3, "churn-artifacts", tmp_path / "artifacts")  # the deploy's code version and pointer
    iam = _client("iam", moto_server)
    iam.create_role(RoleName="churn-glue", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    kinesis = _client("kinesis", moto_server)
    kinesis.create_stream(StreamName="churn-events", ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName="churn-events")["StreamDescriptionSummary"]["StreamARN"]
    glue = _client("glue", moto_server)
    from local_aws import spark_api
    from local_aws.template import glue_catalog

    databases, tables = glue_catalog(spark_api.glue_refs(moto_server))  # the stack's Data Catalog
    for database in databases:
        glue.create_database(DatabaseInput=database)
    for database_name, table_input in tables:
        glue.create_table(DatabaseName=database_name, TableInput=table_input)
    glue.create_job(Name="churn-streaming", Role="churn-glue", GlueVersion="5.0",
                    Command={"Name": "gluestreaming",  # the template's CodeVersion default; runs override it
                             "ScriptLocation": "s3://churn-artifacts/code/0000000000000000/jobs/churn_stream_scoring.py"},
                    DefaultArguments={"--source": "glue", "--stream-arn": arn}, ExecutionProperty={"MaxConcurrentRuns": 1})
    sagemaker = _client("sagemaker", moto_server)
    sagemaker.create_model(ModelName="m", ExecutionRoleArn="arn:aws:iam::123456789012:role/churn-sagemaker",
                           PrimaryContainer={"Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"})
    sagemaker.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[
        {"VariantName": "primary", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    sagemaker.create_endpoint(EndpointName="churn-xgboost", EndpointConfigName="c")

    log = _dags_test("churn_streaming", moto_server, tmp_path, airflow_sqlite)
    for task in ("ensure_endpoint", "ensure_streaming_job", "check_health"):
        assert f"end task task_id={task}" in log, f"{task} did not run:\n{log[-3000:]}"
    assert re.search(r"DagRun Finished: dag_id=churn_streaming, .* state=success", log), log[-3000:]
    runs = glue.get_job_runs(JobName="churn-streaming")["JobRuns"]
    assert len(runs) == 1 and runs[0]["Arguments"]["--lake"] == "s3://churn-lake"
    assert runs[0]["Arguments"]["--progress-root"] == "s3://churn-lake/_streaming/churn_streaming/runs"
    assert "'state': 'STARTING'" in log  # the health check's metrics: no progress yet, within the grace
    assert not glue.get_partitions(DatabaseName="churn_lake", TableName="stream_predictions")["Partitions"]


def test_training_dag_on_the_aws_target_against_moto(moto_server, tmp_path, airflow_sqlite):
    """The labels sensor, the training-set Spark job on EMR Serverless (the provider's trigger waits
    through aiobotocore), the manifest check, the registry lookup (ListModelPackages), then
    CreateHyperParameterTuningJob. moto runs no Spark (the manifest and channels are planted, as the
    job writes them) and completes a tuning job on creation without running a trial (its best training job is a
    placeholder without our hyperparameters) and does not list its trials, which the cost ledger reads: the task
    fails there, and the final training is not reached here
    (its request, and the registry's and the deployment's, are in test_aws_requests.py)."""
    s3 = _client("s3", moto_server)
    for bucket in ("churn-lake", "churn-artifacts"):
        s3.create_bucket(Bucket=bucket)
    upload_code_version(s3, "churn-artifacts", tmp_path / "artifacts")  # the deploy's code version and pointer
    s3.put_object(Bucket="churn-lake", Key="labels/dt=2026-06-02/_SUCCESS", Body=b"")
    manifest = {"fingerprint": "f00dfeed", "splits": {
        split: {"rows": 100, "positive_rate": 0.05, "snapshots": ["2026-05-01", "2026-05-29"]}
        for split in ("train", "validation", "holdout")}}
    s3.put_object(Bucket="churn-lake", Key=f"training_sets/ds={DS}/_manifest.json", Body=json.dumps(manifest).encode())
    for split in ("train", "validation", "holdout"):  # the provider checks that every channel exists
        s3.put_object(Bucket="churn-lake", Key=f"training_sets/ds={DS}/{split}/part-00000.csv", Body=b"churned_30d,x\n0,1\n")
    emr = _client("emr-serverless", moto_server)
    application = _application(emr)
    log = _dags_test("churn_training", moto_server, tmp_path, airflow_sqlite, CHURN_EMR_APPLICATION_ID=application,
                     CHURN_EMR_EXECUTION_ROLE_ARN="arn:aws:iam::123456789012:role/churn-emr-serverless")
    for task in ("wait_for_labels", "build_training_set", "inspect_training_set", "resolve_champion",
                 "tune_hyperparameters"):
        assert f"end task task_id={task}" in log, f"{task} did not run:\n{log[-4000:]}"
    assert "Serverless job completed" in log  # the provider's trigger (aiobotocore) saw the Spark run finish
    tuning = _client("sagemaker", moto_server).list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"]
    assert len(tuning) == 1 and tuning[0]["HyperParameterTuningJobName"].startswith("churn-hpo-20260702-")
    # When the tuning job ends, the task reads its trials' billed time for the cost ledger with
    # ListTrainingJobsForHyperParameterTuningJob, which moto does not implement (it answers 500, which the task
    # takes as a service error a retry may not meet): the task fails there. The check after it (a best trial with the
    # tuned hyperparameters) is tested against in-process moto, tests/contract/test_aws_requests.py.
    assert "500) when calling the ListTrainingJobsForHyperParameterTuningJob operation" in log
    assert "end task task_id=train_model" not in log
    assert re.search(r"DagRun Finished: dag_id=churn_training, .* state=failed", log)
