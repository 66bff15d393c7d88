"""Every job's log where AWS puts it (the control plane's CloudWatch Logs and S3), and in the task log.

One control plane for the module, on a lake of its own: the jobs read their inputs from its lake
folder. A training job's log is read as the SageMaker SDK reads it (the group and the job's stream
prefix); a Spark job that raises leaves its driver's traceback in the driver's logs under the request's
logUri, and the project's operator prints it into the task log while the task still fails.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import time

import numpy as np
import pytest

from churn_ml.job_logs import MAX_BYTES, CloudWatchLog, JobLogMixin, S3Log, bounded_tail
from local_aws import control_plane
from local_aws.job_logs import instance_id
from support import free_port, training_request, write_channel

pytestmark = pytest.mark.e2e
TRAINING_GROUP = "/aws/sagemaker/TrainingJobs"
BOOSTING_ROUND = re.compile(r"^\[\d+\]\t.*validation-auc:[0-9.]+$")


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    lake = tmp_path_factory.mktemp("job-logs") / "lake"
    env = {"LAKE_ROOT": str(lake), "ML_TARGET": "local", "CHURN_LOCAL_AWS_PORT": str(free_port()),
           "CHURN_LOCAL_RUNTIME_PORT": str(free_port()), "CHURN_LOCAL_SPOT_INTERRUPTIONS": ""}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        url = control_plane.ensure_server()
        patch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(control_plane.connection(url, role=None)))
        rng = np.random.default_rng(5)
        for name in ("train", "validation", "holdout"):
            write_channel(lake, name, rng)
        try:
            yield {"url": url, "lake": lake}
        finally:
            control_plane.stop_server()


def client(plane, service: str):
    return control_plane.client(service, plane["url"])


def wait_until(done, what: str, seconds: float = 240):
    deadline = time.monotonic() + seconds
    while not (answer := done()):
        assert time.monotonic() < deadline, f"{what} within {seconds:.0f}s"
        time.sleep(1)
    return answer


def test_a_training_jobs_log_is_in_cloudwatch_where_the_sdk_looks(plane):
    sagemaker, logs = client(plane, "sagemaker"), client(plane, "logs")
    started = int(time.time())
    sagemaker.create_training_job(**{**training_request(), "TrainingJobName": "logs-train"})
    wait_until(lambda: sagemaker.describe_training_job(TrainingJobName="logs-train")["TrainingJobStatus"] != "InProgress",
               "the training job ends")
    assert sagemaker.describe_training_job(TrainingJobName="logs-train")["TrainingJobStatus"] == "Completed"

    # The SageMaker SDK's logs_for_job: DescribeLogStreams of the group with the job's name as prefix.
    streams = logs.describe_log_streams(logGroupName=TRAINING_GROUP, logStreamNamePrefix="logs-train/")["logStreams"]
    assert len(streams) == 1, streams
    name = streams[0]["logStreamName"]
    match = re.fullmatch(r"logs-train/algo-1-(\d+)", name)
    assert match and started - 5 <= int(match.group(1)) <= int(time.time()), name
    assert streams[0]["storedBytes"] > 0 and streams[0]["lastEventTimestamp"] >= streams[0]["firstEventTimestamp"]
    groups = logs.describe_log_groups(logGroupNamePrefix="/aws/sagemaker/")["logGroups"]
    assert TRAINING_GROUP in [g["logGroupName"] for g in groups]

    events = logs.get_log_events(logGroupName=TRAINING_GROUP, logStreamName=name, startFromHead=True)["events"]
    messages = [e["message"] for e in events]
    assert any(BOOSTING_ROUND.match(m) for m in messages), messages[:40]  # the job's own lines
    assert any(m.startswith("holdout:auc: ") for m in messages), messages[-20:]
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps) and started * 1000 - 5000 <= stamps[0] <= stamps[-1] <= time.time() * 1000

    # Paging as CloudWatch pages: forward from the head, and the newest events without startFromHead.
    first = logs.get_log_events(logGroupName=TRAINING_GROUP, logStreamName=name, startFromHead=True, limit=2)
    second = logs.get_log_events(logGroupName=TRAINING_GROUP, logStreamName=name, startFromHead=True, limit=2,
                                 nextToken=first["nextForwardToken"])
    assert [e["message"] for e in first["events"] + second["events"]] == messages[:4]
    last = logs.get_log_events(logGroupName=TRAINING_GROUP, logStreamName=name, limit=3)
    assert [e["message"] for e in last["events"]] == messages[-3:]
    window = logs.get_log_events(logGroupName=TRAINING_GROUP, logStreamName=name, startFromHead=True,
                                 startTime=stamps[-1], endTime=stamps[-1])["events"]
    assert window and all(e["timestamp"] == stamps[-1] for e in window)

    found = logs.filter_log_events(logGroupName=TRAINING_GROUP, logStreamNamePrefix="logs-train/",
                                   filterPattern="holdout")["events"]
    assert found and all("holdout" in e["message"] and e["logStreamName"] == name for e in found)
    assert logs.filter_log_events(logGroupName=TRAINING_GROUP, logStreamNamePrefix="other-job/")["events"] == []

    # Groups a client makes itself still work as in moto.
    logs.create_log_group(logGroupName="/churn/test")
    logs.create_log_stream(logGroupName="/churn/test", logStreamName="s")
    logs.put_log_events(logGroupName="/churn/test", logStreamName="s",
                        logEvents=[{"timestamp": int(time.time() * 1000), "message": "hello"}])
    assert [e["message"] for e in logs.get_log_events(logGroupName="/churn/test", logStreamName="s")["events"]] == ["hello"]

    # The files are the state: a restarted control plane lists the same stream and events.
    control_plane.stop_server()
    control_plane.ensure_server()
    again = client(plane, "logs").get_log_events(logGroupName=TRAINING_GROUP, logStreamName=name, startFromHead=True)
    assert [e["message"] for e in again["events"]] == messages


def test_a_failing_spark_jobs_traceback_is_in_its_s3_logs_and_in_the_task_log(plane, capsys):
    from airflow.exceptions import AirflowException

    from churn_ml.operators import SparkOnEmrServerlessOperator
    from churn_ml.settings import settings

    script = plane["lake"] / "churn-lake" / "probe" / "raises.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("print('probe: starting', flush=True)\nraise ValueError('the probe fails on purpose')\n")
    app = settings.emr_application_id
    driver = {"sparkSubmit": {"entryPoint": "s3://churn-lake/probe/raises.py"}}
    overrides = {"monitoringConfiguration": {"s3MonitoringConfiguration": {"logUri": "s3://churn-lake/_logs/emr-serverless/"}}}
    emr = client(plane, "emr-serverless")
    run_id = emr.start_job_run(applicationId=app, executionRoleArn=settings.emr_execution_role_arn, name="probe-raises",
                               clientToken="probe-raises", jobDriver=driver, configurationOverrides=overrides)["jobRunId"]
    state = wait_until(lambda: (s := emr.get_job_run(applicationId=app, jobRunId=run_id)["jobRun"]["state"])
                       in ("SUCCESS", "FAILED") and s, "the Spark job ends")
    assert state == "FAILED"

    key = f"_logs/emr-serverless/applications/{app}/jobs/{run_id}/SPARK_DRIVER/"
    s3 = client(plane, "s3")
    stderr = gzip.decompress(s3.get_object(Bucket="churn-lake", Key=key + "stderr.gz")["Body"].read()).decode()
    stdout = gzip.decompress(s3.get_object(Bucket="churn-lake", Key=key + "stdout.gz")["Body"].read()).decode()
    # spark-submit's PythonRunner merges the Python driver's stderr into its own stdout (as on EMR
    # Serverless, which runs the same spark-submit): the traceback is in stdout.gz, the JVM's lines in stderr.gz.
    assert "probe: starting" in stdout and "Traceback (most recent call last)" in stdout, stdout
    assert stdout.index("probe: starting") < stdout.index("ValueError: the probe fails on purpose")
    assert "probe: starting" not in stderr and "WARNING" in stderr, stderr

    operator = SparkOnEmrServerlessOperator(
        task_id="probe", job_name_prefix="probe", application_id=app, execution_role_arn=settings.emr_execution_role_arn,
        job_driver=driver, configuration_overrides=overrides, aws_conn_id="aws_default")
    event = {"status": "failure", "message": "Serverless Job failed",
             "job_details": {"application_id": app, "job_id": run_id}}
    capsys.readouterr()
    with pytest.raises(AirflowException, match=f"job run {run_id} .* is FAILED: "):  # the task still fails
        operator.execute_complete({}, event)
    task_log = capsys.readouterr().out  # the operator logs through Airflow's task logging (structlog, to stdout here)
    assert "Traceback (most recent call last)" in task_log
    assert "ValueError: the probe fails on purpose" in task_log
    assert f"s3://churn-lake/{key}stdout.gz" in task_log and f"s3://churn-lake/{key}stderr.gz" in task_log


def test_a_glue_runs_output_and_error_are_in_its_log_groups_and_in_the_task_log(plane, capsys):
    from airflow.exceptions import AirflowException

    from churn_ml.operators import SparkOnGlueOperator

    script = plane["lake"] / "churn-lake" / "probe" / "glue_raises.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("print('glue probe: starting', flush=True)\nraise RuntimeError('the glue probe fails')\n")
    glue, logs = client(plane, "glue"), client(plane, "logs")
    arguments = {"--scriptLocation": "s3://churn-lake/probe/glue_raises.py",
                 "--extra-py-files": "s3://churn-lake/probe/glue_raises.py"}
    run_id = glue.start_job_run(JobName="churn-training-set", Arguments=arguments)["JobRunId"]
    run = wait_until(lambda: (r := glue.get_job_run(JobName="churn-training-set", RunId=run_id)["JobRun"])
                     ["JobRunState"] not in ("STARTING", "RUNNING", "STOPPING") and r, "the Glue run ends")
    assert run["JobRunState"] == "FAILED", run
    group = run["LogGroupName"]
    assert group.startswith("/aws-glue/jobs"), group
    output = logs.get_log_events(logGroupName=f"{group}/output", logStreamName=run_id, startFromHead=True)["events"]
    text = "\n".join(e["message"] for e in output)
    assert "glue probe: starting" in text and "RuntimeError: the glue probe fails" in text, text
    error = logs.describe_log_streams(logGroupName=f"{group}/error", logStreamNamePrefix=run_id)["logStreams"]
    assert [s["logStreamName"] for s in error] == [run_id]

    operator = SparkOnGlueOperator(task_id="probe", job_name="churn-training-set", aws_conn_id="aws_default")
    capsys.readouterr()
    with pytest.raises(AirflowException, match="Error in glue job"):  # the task still fails, as the provider fails it
        operator.execute_complete({}, {"status": "error", "message": "Glue job failed", "run_id": run_id})
    task_log = capsys.readouterr().out
    assert "RuntimeError: the glue probe fails" in task_log
    assert f"log group {group}/output, stream {run_id}" in task_log and f"{group}/error" in task_log


def test_an_endpoints_containers_log_to_its_group_one_stream_per_instance(plane):
    """The containers' server.log (Python logging, as local_aws.endpoint_server writes it) under
    /aws/sagemaker/Endpoints/<endpoint>, stream <VariantName>/<instance id>; a traceback line has the
    time of the line before it. Written here as a container writes it: a deployment is the batch chain's."""
    import datetime as dt

    folder = plane["lake"] / ".control-plane" / "sagemaker"
    (folder / "endpoint-configs").mkdir(parents=True, exist_ok=True)
    (folder / "endpoint-configs" / "logs-ep-config-1.json").write_text(
        json.dumps({"request": {"ProductionVariants": [{"VariantName": "primary"}]}}))
    started = dt.datetime.now().replace(microsecond=0)
    for index in (0, 1):
        log = folder / "endpoint-instances" / "logs-ep" / "logs-ep-config-1" / f"instance-{index}" / "server.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"{started:%Y-%m-%d %H:%M:%S},250 INFO local_aws.endpoint_server: listening (instance {index})\n"
                       f"{started:%Y-%m-%d %H:%M:%S},900 ERROR uvicorn: an invocation failed\n"
                       "Traceback (most recent call last):\n")
    logs = client(plane, "logs")
    group = "/aws/sagemaker/Endpoints/logs-ep"
    streams = [s["logStreamName"] for s in logs.describe_log_streams(logGroupName=group)["logStreams"]]
    first = f"primary/{instance_id('logs-ep', 'logs-ep-config-1', 'instance-0')}"
    assert len(streams) == 2 and first in streams and all(re.fullmatch(r"primary/i-[0-9a-f]{17}", s) for s in streams)
    events = logs.get_log_events(logGroupName=group, logStreamName=first, startFromHead=True)["events"]
    epoch = int(started.timestamp()) * 1000
    assert [(e["timestamp"] - epoch, e["message"].split(": ")[-1]) for e in events] == [
        (250, "listening (instance 0)"), (900, "an invocation failed"), (900, "Traceback (most recent call last):")]


class _Printer(JobLogMixin):
    aws_conn_id = "aws_default"
    region_name = "us-east-1"
    log = logging.getLogger("test.job_logs")

    def __init__(self, sources):
        self.sources = sources

    def job_log_sources(self, event):
        return self.sources


def test_a_log_that_cannot_be_read_is_one_warning_and_never_fails_the_task(plane, caplog):
    printer = _Printer([CloudWatchLog("/aws/sagemaker/TrainingJobs-missing", "x/", "log of training job x"),
                        S3Log("s3://churn-lake/_logs/emr-serverless/none/stderr.gz", "driver stderr of run none")])
    with caplog.at_level(logging.INFO, logger="test.job_logs"):
        printer.print_job_log({})
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, caplog.text
    assert "ResourceNotFoundException" in warnings[0].getMessage() and "TrainingJobs-missing" in warnings[0].getMessage()
    assert "s3://churn-lake/_logs/emr-serverless/none/stderr.gz" in warnings[1].getMessage()


def test_the_tail_is_bounded_by_lines_and_bytes():
    lines = [f"line {i}" for i in range(1000)]
    tail, left_out = bounded_tail(lines, max_lines=100)
    assert tail == lines[-100:] and left_out == 900
    assert bounded_tail(lines[:5]) == (lines[:5], 0)
    wide = ["x" * 1000 + str(i) for i in range(200)]
    tail, left_out = bounded_tail(wide, max_lines=100, max_bytes=10_000)
    assert tail == wide[-9:] and left_out == 191  # 9 lines of 1,004 bytes fit in 10,000
    assert sum(len(line) + 1 for line in tail) <= 10_000
    huge, left_out = bounded_tail(["a" * 10 + "é" * (MAX_BYTES)], max_bytes=MAX_BYTES)
    assert len(huge) == 1 and left_out == 0 and len(huge[0].encode()) <= MAX_BYTES and huge[0].endswith("é")
    assert bounded_tail([]) == ([], 0)
