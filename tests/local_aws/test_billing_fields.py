"""The control plane reports what AWS would bill for the work it really ran (issue 27).

Each service's billing fields equal the runner's measured time scaled by the capacity the request asked
for, with AWS's minimums (``local_aws.billing``, ``local_aws.spark_api``, ``local_aws.training``), and the
ledger's readers (``churn_ml.cost.usage``) turn the answers into usage. Tiny jobs: Spark probes that print a
line, XGBoost on 400 rows for 20 rounds, a transform of 10 rows.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time

import numpy as np
import pytest
from botocore.exceptions import ClientError

from churn_ml.cost import usage
from local_aws import billing, control_plane
from local_aws.common import read_state
from support import free_port, model_request, training_request, write_channel

pytestmark = pytest.mark.e2e
ROLE = "arn:aws:iam::000000000000:role/churn-emr-job"
RESTART_SECONDS = 3  # how long an interrupted spot job waits for capacity here


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    """A control plane of this module's own (include/ deployed into its lake): spot jobs are interrupted at
    round 5 and wait ``RESTART_SECONDS`` for capacity, so the module's on-demand jobs run on it unchanged."""
    lake = tmp_path_factory.mktemp("billing-fields") / "lake"
    env = {"LAKE_ROOT": str(lake), "ML_TARGET": "local", "CHURN_LOCAL_AWS_PORT": str(free_port()),
           "CHURN_LOCAL_RUNTIME_PORT": str(free_port()), "CHURN_LOCAL_SPOT_INTERRUPTIONS": "5",
           "CHURN_LOCAL_SPOT_RESTART_SECONDS": str(RESTART_SECONDS), "CHURN_LOCAL_SPOT_NOTICE_SECONDS": "30"}
    probe = lake / "churn-lake" / "probe"
    probe.mkdir(parents=True)
    (probe / "ok.py").write_text("print('probe says hello')\n")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        url = control_plane.ensure_server()
        try:
            yield {"url": url, "lake": lake}
        finally:
            control_plane.stop_server()


def until(what, condition, timeout: float = 180.0, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if condition(value):
            return value
        assert time.monotonic() < deadline, f"still {value!r} after {timeout:.0f}s"
        time.sleep(every)


def runner_record(lake, run_id: str) -> dict:
    """The local Spark runner's own record of a run (``local_aws.spark.run_spark_job``)."""
    record = read_state(lake / ".control-plane" / "spark" / "job-runs" / run_id / "job-run.json")
    assert record and record.get("totalExecutionDurationSeconds") is not None, record
    return record


def at(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp)


def hours(seconds: float, per_worker: list[int]) -> float:
    return round(sum(per_worker) * seconds / 3600, 3)


# ------------------------------------------------------------------ EMR Serverless: the rules, without a run

def test_emr_serverless_worker_sizes_defaults_and_minimum():
    default = billing.emr_capacity({})
    # EMR Serverless' defaults: a driver and 3 executors of 4 vCPUs, 14 GB (+ overhead: a 16 GB worker), 20 GB disk.
    assert default == billing.EmrCapacity(billing.EmrWorker(4, 16, 20), billing.EmrWorker(4, 16, 20), 3)
    total, billed = billing.emr_resource_utilization(default, 12.2)
    assert total == {"vCPUHour": hours(13, [4] * 4), "memoryGBHour": hours(13, [16] * 4), "storageGBHour": hours(13, [20] * 4)}
    # Within the minute: a minute of each worker, the free 20 GB of disk not billed.
    assert billed == {"vCPUHour": 0.267, "memoryGBHour": 1.067, "storageGBHour": 0.0}
    sized = billing.emr_capacity({"spark.executor.memory": "27g", "spark.executor.cores": "4", "spark.driver.cores": "8",
                                  "spark.driver.memory": "16g", "spark.emr-serverless.executor.disk": "200GB",
                                  "spark.executor.instances": "10", "spark.sql.shuffle.partitions": "8"})
    # 27 GB + 10 % is a 30 GB worker; 8 vCPUs come in 4 GB steps (16 GB + 1.6 GB -> 20 GB).
    assert (sized.executor, sized.driver, sized.executors) == (billing.EmrWorker(4, 30, 200), billing.EmrWorker(8, 20, 20), 10)
    _, billed = billing.emr_resource_utilization(sized, 3600)
    assert billed["storageGBHour"] == 10 * 180  # beyond the free 20 GB of each worker


@pytest.mark.parametrize("conf, message", [
    ({"spark.executor.cores": "3"}, "an EMR Serverless worker has 1, 2, 4, 8, 16 vCPUs"),
    ({"spark.executor.memory": "28g"}, "a 4-vCPU worker has at most 30 GB"),
    ({"spark.emr-serverless.driver.disk": "10g"}, "from 20 to 200"),
    ({"spark.executor.instances": "many"}, "is not a whole number"),
])
def test_emr_serverless_sizes_it_does_not_have_are_refused(conf, message):
    with pytest.raises(ValueError, match=message):
        billing.emr_capacity(conf)


# ------------------------------------------------------------------ EMR Serverless: a run

def test_an_emr_serverless_run_reports_its_measured_time_times_its_workers(plane, monkeypatch):
    emr = control_plane.client("emr-serverless", plane["url"])
    app = emr.create_application(name="billing", releaseLabel="emr-7.9.0", type="SPARK")["applicationId"]
    until(lambda: emr.get_application(applicationId=app)["application"]["state"], lambda s: s == "CREATED")
    submit = ("--conf spark.driver.cores=1 --conf spark.driver.memory=2g --conf spark.executor.cores=2 "
              "--conf spark.executor.memory=4g --conf spark.executor.instances=2 --conf spark.sql.shuffle.partitions=4")
    overrides = {"applicationConfiguration": [{"classification": "spark-defaults", "properties": {
        "spark.emr-serverless.executor.disk": "50G", "spark.executor.instances": "7"}}]}  # --conf wins: 2 executors

    # A size EMR Serverless does not have is refused at StartJobRun, and leaves no run.
    with pytest.raises(ClientError) as refused:
        emr.start_job_run(applicationId=app, executionRoleArn=ROLE, jobDriver={"sparkSubmit": {
            "entryPoint": "s3://churn-lake/probe/ok.py", "sparkSubmitParameters": "--conf spark.executor.cores=3"}})
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "1, 2, 4, 8, 16 vCPUs" in refused.value.response["Error"]["Message"]
    assert emr.list_job_runs(applicationId=app)["jobRuns"] == []

    run_id = emr.start_job_run(applicationId=app, executionRoleArn=ROLE, configurationOverrides=overrides, jobDriver={
        "sparkSubmit": {"entryPoint": "s3://churn-lake/probe/ok.py", "sparkSubmitParameters": submit}})["jobRunId"]
    early = emr.get_job_run(applicationId=app, jobRunId=run_id)["jobRun"]
    if early["state"] not in ("SUCCESS", "FAILED", "CANCELLED"):  # not billed before it ends, as on AWS
        assert not {"billedResourceUtilization", "totalResourceUtilization", "totalExecutionDurationSeconds"} & set(early)
    run = until(lambda: emr.get_job_run(applicationId=app, jobRunId=run_id)["jobRun"],
                lambda r: r["state"] in ("SUCCESS", "FAILED", "CANCELLED"))
    assert run["state"] == "SUCCESS", run

    record = runner_record(plane["lake"], run_id)
    seconds = record["totalExecutionDurationSeconds"]
    assert run["totalExecutionDurationSeconds"] == seconds
    assert abs((run["startedAt"] - at(record["createdAt"])).total_seconds()) < 1
    assert abs((run["endedAt"] - at(record["updatedAt"])).total_seconds()) < 1
    # The driver: 1 vCPU, 2 GB + 384 MB overhead -> 3 GB, 20 GB disk; 2 executors: 2 vCPUs, 4 GB + 10 % -> 5 GB, 50 GB.
    vcpus, memory, disks = [1, 2, 2], [3, 5, 5], [20, 50, 50]
    assert run["totalResourceUtilization"] == {
        "vCPUHour": hours(seconds, vcpus), "memoryGBHour": hours(seconds, memory), "storageGBHour": hours(seconds, disks)}
    billed_seconds = max(60, seconds)  # each worker's minute
    assert run["billedResourceUtilization"] == {
        "vCPUHour": hours(billed_seconds, vcpus), "memoryGBHour": hours(billed_seconds, memory),
        "storageGBHour": hours(billed_seconds, [d - 20 for d in disks])}
    assert all(isinstance(v, float) for v in run["billedResourceUtilization"].values())  # botocore's Double

    ledger = {u.item: u.quantity for u in usage.emr_serverless_usage({"jobRun": run})}
    assert ledger == {"emr_serverless.vcpu_hour": run["billedResourceUtilization"]["vCPUHour"],
                      "emr_serverless.memory_gb_hour": run["billedResourceUtilization"]["memoryGBHour"],
                      "emr_serverless.storage_gb_hour": run["billedResourceUtilization"]["storageGBHour"]}

    # A restarted control plane answers the same.
    monkeypatch.setenv("LAKE_ROOT", str(plane["lake"]))
    control_plane.stop_server()
    assert control_plane.ensure_server() == plane["url"]
    again = control_plane.client("emr-serverless", plane["url"]).get_job_run(applicationId=app, jobRunId=run_id)["jobRun"]
    fields = ("totalResourceUtilization", "billedResourceUtilization", "totalExecutionDurationSeconds", "startedAt",
              "endedAt")
    assert {k: again[k] for k in fields} == {k: run[k] for k in fields}


# ------------------------------------------------------------------ Glue

def test_glue_runs_report_execution_time_and_capacity_and_dpu_seconds_only_for_flex(plane):
    glue = control_plane.client("glue", plane["url"])
    command = {"Name": "glueetl", "ScriptLocation": "s3://churn-lake/probe/ok.py", "PythonVersion": "3"}
    role = "arn:aws:iam::000000000000:role/probe-role"
    glue.create_job(Name="bill-standard", Role=role, Command=command, GlueVersion="5.0", WorkerType="G.2X",
                    NumberOfWorkers=3)
    glue.create_job(Name="bill-flex", Role=role, Command=command, GlueVersion="5.0", WorkerType="G.1X",
                    NumberOfWorkers=2, ExecutionClass="FLEX")
    runs = {job: glue.start_job_run(JobName=job)["JobRunId"] for job in ("bill-standard", "bill-flex")}
    answers = {job: until(lambda job=job: glue.get_job_run(JobName=job, RunId=runs[job])["JobRun"],
                          lambda r: r["JobRunState"] not in ("STARTING", "RUNNING", "STOPPING"))
               for job in runs}

    standard = answers["bill-standard"]
    assert standard["JobRunState"] == "SUCCEEDED", standard
    record = runner_record(plane["lake"], runs["bill-standard"])
    assert standard["ExecutionTime"] == record["totalExecutionDurationSeconds"]
    assert abs((standard["CompletedOn"] - at(record["updatedAt"])).total_seconds()) < 1
    assert (standard["WorkerType"], standard["NumberOfWorkers"], standard["MaxCapacity"]) == ("G.2X", 3, 6.0)
    assert (standard["GlueVersion"], standard["ExecutionClass"]) == ("5.0", "STANDARD")
    assert "DPUSeconds" not in standard  # AWS reports it for FLEX and auto-scaling runs only
    used = usage.glue_job_run_usage({"JobRun": standard})
    assert used.item == "glue.etl.dpu_hour"
    assert used.quantity == pytest.approx(max(60, standard["ExecutionTime"]) * 6.0 / 3600)  # Glue 2.0+: 1-minute minimum

    flex = answers["bill-flex"]
    assert flex["JobRunState"] == "SUCCEEDED", flex
    record = runner_record(plane["lake"], runs["bill-flex"])
    assert flex["ExecutionTime"] == record["totalExecutionDurationSeconds"]
    assert (flex["ExecutionClass"], flex["MaxCapacity"]) == ("FLEX", 2.0)
    assert flex["DPUSeconds"] == pytest.approx(flex["ExecutionTime"] * 2.0)
    used = usage.glue_job_run_usage({"JobRun": flex})
    assert (used.item, used.detail["basis"]) == ("glue.flex.dpu_hour", "DPUSeconds")
    assert used.quantity == pytest.approx(flex["DPUSeconds"] / 3600)


# ------------------------------------------------------------------ SageMaker training and transform

def _train(sm, name: str, **extra) -> dict:
    sm.create_training_job(**{**training_request(checkpoint_every="10"), "TrainingJobName": name, **extra})
    return until(lambda: sm.describe_training_job(TrainingJobName=name),
                 lambda d: d["TrainingJobStatus"] in ("Completed", "Failed", "Stopped"), timeout=300)


@pytest.fixture(scope="module")
def on_demand(plane):
    """An on-demand training job, to Completed (its model serves the transform below)."""
    rng = np.random.default_rng(27)
    for channel in ("train", "validation", "holdout"):
        write_channel(plane["lake"], channel, rng)
    done = _train(control_plane.client("sagemaker", plane["url"]), f"bill-od-{time.time_ns() % 10**9}")
    assert done["TrainingJobStatus"] == "Completed", done.get("FailureReason")
    return done


def test_training_bills_its_time_and_a_spot_job_not_its_waits_for_capacity(plane, on_demand):
    sm = control_plane.client("sagemaker", plane["url"])

    def wall(job: dict) -> float:
        return (job["TrainingEndTime"] - job["TrainingStartTime"]).total_seconds()

    # On demand: the whole job is billed, TrainingStartTime to TrainingEndTime.
    assert on_demand["BillableTimeInSeconds"] == on_demand["TrainingTimeInSeconds"]
    assert abs(on_demand["TrainingTimeInSeconds"] - wall(on_demand)) <= 1
    [used] = usage.training_job_usage(on_demand)
    assert used.item == "sagemaker.training.ml.m5.large"
    assert used.quantity == on_demand["BillableTimeInSeconds"] * 1 / 3600
    assert used.detail["spot_saving"] == 0.0

    name = f"bill-spot-{time.time_ns() % 10**9}"
    spot = _train(sm, name, ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 5},
                  EnableManagedSpotTraining=True, StoppingCondition={"MaxRuntimeInSeconds": 300, "MaxWaitTimeInSeconds": 600},
                  CheckpointConfig={"S3Uri": f"s3://churn-lake/checkpoints/{name}/", "LocalPath": "/opt/ml/checkpoints"})
    assert spot["TrainingJobStatus"] == "Completed", spot.get("FailureReason")
    transitions = spot["SecondaryStatusTransitions"]
    statuses = [t["Status"] for t in transitions]
    assert "Interrupted" in statuses, statuses
    # The wait for spot capacity: from the interruption to the restart on new capacity.
    waits = [(transitions[i + 1]["StartTime"] - t["StartTime"]).total_seconds()
             for i, t in enumerate(transitions) if t["Status"] == "Interrupted"]
    assert all(w >= RESTART_SECONDS - 0.1 for w in waits), waits
    assert abs(spot["TrainingTimeInSeconds"] - wall(spot)) <= 1
    assert abs(spot["TrainingTimeInSeconds"] - spot["BillableTimeInSeconds"] - sum(waits)) <= 1
    assert spot["BillableTimeInSeconds"] < spot["TrainingTimeInSeconds"]
    [used] = usage.training_job_usage(spot)
    assert used.quantity == spot["BillableTimeInSeconds"] * 2 / 3600  # x the instance count
    assert used.detail["managed_spot"] and used.detail["spot_saving"] > 0


def test_a_transform_job_reports_its_start_end_and_instances(plane, on_demand):
    sm = control_plane.client("sagemaker", plane["url"])
    name = on_demand["TrainingJobName"]
    sm.create_model(**model_request(f"{name}-model", on_demand["ModelArtifacts"]["S3ModelArtifacts"]))
    scoring = plane["lake"] / "churn-lake/scoring_input/dt=2026-05-02"
    scoring.mkdir(parents=True, exist_ok=True)
    (scoring / "part-00000.csv").write_text("".join(f"C{i},{i / 10:.1f},0.5,-1.0\n" for i in range(10)))
    job = f"{name}-score"
    sm.create_transform_job(
        TransformJobName=job, ModelName=f"{name}-model", BatchStrategy="MultiRecord", MaxPayloadInMB=1,
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                        "S3Uri": "s3://churn-lake/scoring_input/dt=2026-05-02/"}},
                        "ContentType": "text/csv", "SplitType": "Line"},
        TransformOutput={"S3OutputPath": f"s3://churn-lake/predictions/{job}/", "Accept": "text/csv"},
        TransformResources={"InstanceType": "ml.m5.xlarge", "InstanceCount": 2},
        DataProcessing={"InputFilter": "$[1:]", "JoinSource": "Input"})
    done = until(lambda: sm.describe_transform_job(TransformJobName=job),
                 lambda d: d["TransformJobStatus"] in ("Completed", "Failed", "Stopped"), timeout=300)
    assert done["TransformJobStatus"] == "Completed", done.get("FailureReason")
    assert done["TransformResources"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2}
    billed = (done["TransformEndTime"] - done["TransformStartTime"]).total_seconds()
    # The billed interval holds the work the runner measured (its workers' time, in its own record).
    record = json.loads((plane["lake"] / ".control-plane/sagemaker/transform-jobs" / job / "describe.json").read_text())
    assert done["CreationTime"] <= done["TransformStartTime"] and billed >= record["LocalSeconds"] - 0.01
    used = usage.transform_job_usage(done)
    assert used.item == "sagemaker.transform.ml.m5.xlarge"
    assert used.quantity == pytest.approx(2 * billed / 3600)
    assert math.isclose(used.detail["seconds"], billed)
