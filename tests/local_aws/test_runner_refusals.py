"""The control plane refuses, at Create/Start time, a job that names code or paths outside what the
runners accept (local_aws.sandbox, local_aws.spark.check_job_request): the service's error, and
nothing run, recorded or deleted.

Each request below is otherwise valid (the control plane would run it), so what stops it is the check.
One control plane for the module, on a lake and port of its own; no job really runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from botocore.exceptions import ClientError

from local_aws import control_plane
from support import free_port, model_request, training_request, write_channel


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    base = tmp_path_factory.mktemp("refusals")
    lake = base / "lake"
    env = {"LAKE_ROOT": str(lake), "ML_TARGET": "local", "CHURN_LOCAL_AWS_PORT": str(free_port()),
           "CHURN_LOCAL_RUNTIME_PORT": str(free_port())}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        url = control_plane.ensure_server()
        rng = np.random.default_rng(3)
        for name in ("train", "validation", "holdout"):
            write_channel(lake, name, rng)
        try:
            yield {"url": url, "lake": lake, "base": base}
        finally:
            control_plane.stop_server()


def client(plane, service: str):
    return control_plane.client(service, plane["url"])


@pytest.fixture
def evil(plane, tmp_path) -> dict:
    """A program that would leave a marker if it ran, and a folder (with a file) that must survive."""
    marker = tmp_path / "ran"
    program = tmp_path / "evil.py"
    program.write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n")
    sentinel = plane["base"] / "sentinel"
    sentinel.mkdir(exist_ok=True)
    (sentinel / "keep.txt").write_text("keep")
    return {"program": program, "marker": marker, "sentinel": sentinel}


def refused(operation, request: dict, code: str, *expected: str) -> str:
    """``operation(**request)`` fails with the service error ``code`` (400), its message saying ``expected``."""
    with pytest.raises(ClientError) as caught:
        operation(**request)
    error = caught.value.response["Error"]
    assert error["Code"] == code, error
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    for text in expected:
        assert text in error["Message"], error["Message"]
    return error["Message"]


def nothing_ran(plane, evil, kind: str, name: str) -> None:
    time.sleep(1)  # a worker, had one been started, would be running by now
    assert not (plane["lake"] / ".control-plane" / "sagemaker" / kind / name).exists()
    assert not evil["marker"].exists()
    assert (evil["sentinel"] / "keep.txt").read_text() == "keep"


def test_a_training_program_outside_the_source_bundle_is_refused(plane, evil):
    sagemaker = client(plane, "sagemaker")
    for number, program in enumerate((str(evil["program"]), "../evil.py", "code/../../evil.py")):
        name = f"rf-program-{number}"
        request = {**training_request(), "TrainingJobName": name}
        request["HyperParameters"] = {**request["HyperParameters"], "sagemaker_program": program}
        refused(sagemaker.create_training_job, request, "ValidationException",
                "CreateTrainingJob", f"sagemaker_program {program!r} is refused", "at the root of the source bundle")
        nothing_ran(plane, evil, "training-jobs", name)
        refused(sagemaker.describe_training_job, {"TrainingJobName": name}, "ValidationException", "Could not find")


def test_a_checkpoint_folder_with_dotdot_is_refused_before_anything_is_deleted(plane, evil):
    # From opt_ml (<lake>/.control-plane/sagemaker/training-jobs/<job>/opt_ml) six levels up is the
    # sentinel's folder: this LocalPath named the sentinel, which the checkpoint sync empties first.
    local_path = "/opt/ml/" + "../" * 6 + evil["sentinel"].name
    name = "rf-checkpoints"
    request = {**training_request(), "TrainingJobName": name,
               "CheckpointConfig": {"S3Uri": "s3://churn-lake/checkpoints/rf/", "LocalPath": local_path}}
    refused(client(plane, "sagemaker").create_training_job, request, "ValidationException",
            "CheckpointConfig.LocalPath", "'..' segment", "/opt/ml/checkpoints (the default)")
    nothing_ran(plane, evil, "training-jobs", name)


def test_a_tuning_job_whose_trials_would_run_a_program_outside_is_refused(plane, evil):
    definition = {k: v for k, v in training_request().items() if k not in ("TrainingJobName", "HyperParameters")}
    static = {**training_request()["HyperParameters"], "sagemaker_program": str(evil["program"])}
    request = {
        "HyperParameterTuningJobName": "rf-tuning",
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian", "ResourceLimits": {"MaxNumberOfTrainingJobs": 2, "MaxParallelTrainingJobs": 1},
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "validation:auc"},
            "ParameterRanges": {"IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "2", "MaxValue": "6"}]},
        },
        "TrainingJobDefinition": {**definition, "StaticHyperParameters": static},
    }
    refused(client(plane, "sagemaker").create_hyper_parameter_tuning_job, request, "ValidationException",
            "CreateHyperParameterTuningJob", "sagemaker_program")
    nothing_ran(plane, evil, "tuning-jobs", "rf-tuning")


def test_a_model_whose_handlers_are_outside_its_bundle_is_refused(plane, evil):
    sagemaker = client(plane, "sagemaker")
    model = model_request("rf-model", "s3://churn-lake/models/rf/model.tar.gz")
    model["PrimaryContainer"]["Environment"]["SAGEMAKER_PROGRAM"] = str(evil["program"])
    refused(sagemaker.create_model, model, "ValidationException", "CreateModel", "SAGEMAKER_PROGRAM")
    refused(sagemaker.describe_model, {"ModelName": "rf-model"}, "ValidationException", "Could not find model")
    assert not evil["marker"].exists()


def _emr_request(plane, name: str, **submit) -> dict:
    from churn_ml.settings import settings

    return {"applicationId": settings.emr_application_id, "executionRoleArn": settings.emr_execution_role_arn,
            "name": name, "clientToken": name, "jobDriver": {"sparkSubmit": {
                "entryPoint": "s3://churn-lake/probe/probe.py", "entryPointArguments": ["--ok"], **submit}}}


def _job_runs(emr, app: str) -> list[dict]:
    try:
        return emr.list_job_runs(applicationId=app)["jobRuns"]
    except emr.exceptions.ResourceNotFoundException:  # moto's answer for an application with no run yet
        return []


def test_emr_serverless_refuses_local_paths_and_unknown_spark_settings(plane, evil):
    from churn_ml.settings import settings

    emr = client(plane, "emr-serverless")
    app = settings.emr_application_id
    application = emr.get_application(applicationId=app)["application"]  # CREATED as the template makes it,
    assert application["state"] in ("CREATED", "STARTING", "STARTED")  # started by its first run (auto-start)
    assert application["autoStartConfiguration"]["enabled"]
    before = _job_runs(emr, app)
    cases = [
        ({"entryPointArguments": ["--output", f"file://{evil['sentinel']}"]}, "scheme other than s3://"),
        ({"entryPointArguments": ["--output", str(evil["sentinel"])]}, "absolute path"),
        ({"entryPoint": evil["program"].as_uri()}, "entryPoint"),
        ({"sparkSubmitParameters": "--conf spark.driver.extraJavaOptions=-Dx=1"}, "--conf spark.driver.extraJavaOptions is refused"),
        ({"sparkSubmitParameters": "--jars /tmp/x.jar"}, "'--jars' is not supported"),
    ]
    for number, (submit, message) in enumerate(cases):
        request = _emr_request(plane, f"rf-spark-{number}", **submit)
        refused(emr.start_job_run, request, "ValidationException", "StartJobRun", message)
    assert _job_runs(emr, app) == before  # none was recorded
    time.sleep(1)
    assert not evil["marker"].exists() and (evil["sentinel"] / "keep.txt").exists()


def test_glue_refuses_local_paths_in_the_runs_and_the_jobs_arguments(plane, evil):
    glue = client(plane, "glue")
    runs = len(glue.get_job_runs(JobName="churn-training-set")["JobRuns"])
    refused(glue.start_job_run, {"JobName": "churn-training-set", "Arguments": {"--output": f"file://{evil['sentinel']}"}},
            "InvalidInputException", "StartJobRun of churn-training-set", "scheme other than s3://")
    refused(glue.start_job_run, {"JobName": "churn-training-set", "Arguments": {"--conf": "spark.jars=/tmp/x.jar"}},
            "InvalidInputException", "--conf spark.jars is refused")
    assert len(glue.get_job_runs(JobName="churn-training-set")["JobRuns"]) == runs
    # A job created through the API with a local script or local default arguments cannot run either.
    glue.create_job(Name="rf-local-script", Role="arn:aws:iam::123456789012:role/x",
                    Command={"Name": "glueetl", "ScriptLocation": evil["program"].as_uri()})
    refused(glue.start_job_run, {"JobName": "rf-local-script"}, "InvalidInputException", "entryPoint")
    glue.create_job(Name="rf-local-defaults", Role="arn:aws:iam::123456789012:role/x",
                    Command={"Name": "glueetl",
                             "ScriptLocation": "s3://churn-artifacts/code/0123456789abcdef/jobs/churn_training_set.py"},
                    DefaultArguments={"--extra-py-files": str(evil["program"])})
    refused(glue.start_job_run, {"JobName": "rf-local-defaults"}, "InvalidInputException", "--py-files entry")
    for job in ("rf-local-script", "rf-local-defaults"):
        assert glue.get_job_runs(JobName=job)["JobRuns"] == []
    time.sleep(1)
    assert not evil["marker"].exists() and (evil["sentinel"] / "keep.txt").exists()


def test_an_accepted_request_still_runs(plane):
    """The checks refuse only what they should: the project's own training request is accepted and answered
    InProgress (the run itself is test_control_plane's)."""
    sagemaker = client(plane, "sagemaker")
    request = {**training_request(num_round="2"), "TrainingJobName": "rf-accepted",
               "CheckpointConfig": {"S3Uri": "s3://churn-lake/checkpoints/rf-accepted/", "LocalPath": "/opt/ml/checkpoints"}}
    sagemaker.create_training_job(**request)
    deadline = time.monotonic() + 120
    while (job := sagemaker.describe_training_job(TrainingJobName="rf-accepted"))["TrainingJobStatus"] == "InProgress":
        assert time.monotonic() < deadline, "the training job did not end in 120 s"
        time.sleep(1)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    opt_ml = Path(plane["lake"]) / ".control-plane/sagemaker/training-jobs/rf-accepted/opt_ml"
    assert (opt_ml / "checkpoints").is_dir()
    assert json.loads((opt_ml / "input/config/hyperparameters.json").read_text())["sagemaker_program"] == "churn_train.py"
