"""What the local runners accept from a request (local_aws.sandbox, local_aws.spark): the pure checks.

A request names code and paths; these checks keep them inside the source bundle, the job's
``/opt/ml`` sandbox and the lake. No server here: the control plane's refusals are in
tests/local_aws/test_runner_refusals.py.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from local_aws import sandbox, spark
from local_aws.models import validate_model
from local_aws.training import validate_request as validate_training
from local_aws.transform import validate_request as validate_transform
from local_aws.tuning import validate_request as validate_tuning
from support import deployed_code, model_request, training_request

# ---------------------------------------------------------------- programs


@pytest.mark.parametrize("program", ["churn_train.py", "inference.py", "sub/train.py", "./inference.py"])
def test_a_program_relative_to_the_bundle_is_accepted(program):
    assert str(sandbox.check_program(program, "sagemaker_program")) == program.removeprefix("./")


@pytest.mark.parametrize(("program", "reason"), [
    ("/etc/evil.py", "absolute path"),
    ("../evil.py", "'..' segment"),
    ("sub/../../evil.py", "'..' segment"),
    ("sub\\..\\evil.py", "backslash"),
    ("evil.sh", "not a .py file"),
    ("", "empty"),
    (None, "empty or not a string"),
    ("a\0.py", "NUL"),
])
def test_a_program_outside_the_bundle_is_refused(program, reason):
    with pytest.raises(ValueError, match=f"sagemaker_program .* is refused: .*{reason}.*relative to the source bundle"):
        sandbox.check_program(program, "sagemaker_program")


def test_the_program_path_is_resolved_inside_the_unpacked_bundle(tmp_path):
    code, outside = tmp_path / "code", tmp_path / "outside"
    (code / "sub").mkdir(parents=True)
    outside.mkdir()
    (code / "train.py").write_text("")
    (code / "sub" / "inner.py").write_text("")
    (outside / "evil.py").write_text("")
    (code / "link.py").symlink_to(outside / "evil.py")  # a link in the bundle pointing out of it
    (code / "inside.py").symlink_to(code / "train.py")  # one that stays inside is fine
    (code / "folder.py").mkdir()
    assert sandbox.program_path(code, "train.py", "p") == (code / "train.py").resolve()
    assert sandbox.program_path(code, "sub/inner.py", "p") == (code / "sub" / "inner.py").resolve()
    assert sandbox.program_path(code, "inside.py", "p") == (code / "train.py").resolve()
    with pytest.raises(ValueError, match="outside the source bundle's folder"):
        sandbox.program_path(code, "link.py", "p")
    for missing in ("missing.py", "folder.py"):
        with pytest.raises(ValueError, match="is not a file of the source bundle"):
            sandbox.program_path(code, missing, "p")
    with pytest.raises(ValueError, match="absolute path"):
        sandbox.program_path(code, str(outside / "evil.py"), "p")


# ---------------------------------------------------------------- container paths


@pytest.mark.parametrize("path", ["/opt/ml/checkpoints", "/opt/ml/checkpoints/", "/opt/ml/ckpt/run-1", "/opt/ml//x"])
def test_a_checkpoint_folder_of_its_own_under_opt_ml_is_accepted(path):
    sandbox.check_container_path(path, "CheckpointConfig.LocalPath", "/opt/ml/checkpoints")


@pytest.mark.parametrize(("path", "reason"), [
    ("/opt/ml/../../tmp/x", "'..' segment"),
    ("/opt/ml/checkpoints/..", "'..' segment"),
    ("/tmp/checkpoints", "not a folder under /opt/ml/"),
    ("opt/ml/checkpoints", "not a folder under /opt/ml/"),
    ("/opt/ml", "not a folder under /opt/ml/"),
    ("/opt/ml/", "not a folder under /opt/ml/"),
    ("/opt/ml/input/data", "/opt/ml/input/, a folder the runner fills"),
    ("/opt/ml/code", "/opt/ml/code/, a folder the runner fills"),
    ("/opt/ml/model/ckpt", "/opt/ml/model/, a folder the runner fills"),
    ("", "empty"),
])
def test_a_checkpoint_folder_that_could_delete_something_else_is_refused(path, reason):
    with pytest.raises(ValueError, match=f"LocalPath .* is refused: .*{reason}"):
        sandbox.check_container_path(path, "CheckpointConfig.LocalPath", "/opt/ml/checkpoints")


def test_the_checkpoint_folder_is_resolved_inside_the_sandbox(tmp_path):
    opt_ml, outside = tmp_path / "opt_ml", tmp_path / "outside"
    opt_ml.mkdir()
    outside.mkdir()
    assert sandbox.container_path(opt_ml, "/opt/ml/checkpoints", "LocalPath", "") == opt_ml.resolve() / "checkpoints"
    (opt_ml / "escape").symlink_to(outside)  # a folder of the sandbox that is a link out of it
    with pytest.raises(ValueError, match="outside the job's sandbox"):
        sandbox.container_path(opt_ml, "/opt/ml/escape", "LocalPath", "")


@pytest.mark.parametrize("name", ["..", ".", "a/b", "", "x" * 65, None])
def test_a_channel_name_that_is_not_one_folder_is_refused(name):
    with pytest.raises(ValueError, match="ChannelName .* is refused"):
        sandbox.check_channel_name(name)


def test_lake_uris_are_s3_uris_inside_the_lake(lake_root):
    assert sandbox.check_lake_uri("s3://churn-lake/models/x/", "S3OutputPath") == "s3://churn-lake/models/x/"
    for uri in ("file:///tmp/x", "/tmp/x", "s3://churn-lake/a/../../../x", "s3://../x", None):
        with pytest.raises(ValueError, match="S3OutputPath"):
            sandbox.check_lake_uri(uri, "S3OutputPath")


# ---------------------------------------------------------------- the SageMaker requests


def test_the_projects_training_request_passes(lake_root):
    validate_training({**training_request(), "CheckpointConfig": {"S3Uri": "s3://churn-lake/ckpt/", "LocalPath": "/opt/ml/checkpoints"}})


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r["HyperParameters"].update(sagemaker_program="/tmp/evil.py"), "sagemaker_program '/tmp/evil.py' is refused"),
    (lambda r: r["HyperParameters"].update(sagemaker_program="../evil.py"), "sagemaker_program '../evil.py' is refused"),
    (lambda r: r["HyperParameters"].update(sagemaker_submit_directory="file:///tmp/b.tar.gz"), "must be an s3://"),
    (lambda r: r.update(CheckpointConfig={"S3Uri": "s3://churn-lake/c/", "LocalPath": "/opt/ml/../../../x"}), "LocalPath"),
    (lambda r: r.update(CheckpointConfig={"S3Uri": "s3://churn-lake/c/", "LocalPath": "/opt/ml/input"}), "LocalPath"),
    (lambda r: r.update(CheckpointConfig={"S3Uri": "/tmp/c"}), "CheckpointConfig.S3Uri must be an s3://"),
    (lambda r: r["InputDataConfig"][0].update(ChannelName=".."), "ChannelName '..' is refused"),
    (lambda r: r["InputDataConfig"][1].update(ChannelName="train"), "more than once"),
    (lambda r: r["InputDataConfig"][0]["DataSource"]["S3DataSource"].update(S3Uri="file:///etc/"), "S3Uri must be"),
    (lambda r: r["OutputDataConfig"].update(S3OutputPath="s3://churn-lake/../../x"), "S3OutputPath"),
])
def test_a_training_request_naming_something_outside_is_refused(lake_root, change, message):
    request = training_request()
    change(request)
    with pytest.raises(ValueError, match=message):
        validate_training(request)


def _tuning_request() -> dict:
    definition = {k: v for k, v in training_request().items() if k not in ("TrainingJobName", "HyperParameters")}
    return {
        "HyperParameterTuningJobName": "t",
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian", "ResourceLimits": {"MaxNumberOfTrainingJobs": 2, "MaxParallelTrainingJobs": 1},
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "validation:auc"},
            "ParameterRanges": {"IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "2", "MaxValue": "6"}]},
        },
        "TrainingJobDefinition": {**definition, "StaticHyperParameters": training_request()["HyperParameters"]},
    }


def test_a_tuning_jobs_trials_are_held_to_the_training_checks(lake_root):
    validate_tuning(_tuning_request())
    request = _tuning_request()
    request["TrainingJobDefinition"]["StaticHyperParameters"]["sagemaker_program"] = "/tmp/evil.py"
    with pytest.raises(ValueError, match="sagemaker_program '/tmp/evil.py' is refused"):
        validate_tuning(request)
    request = _tuning_request()
    request["TrainingJobDefinition"]["CheckpointConfig"] = {"S3Uri": "s3://churn-lake/c/", "LocalPath": "/opt/ml/../x"}
    with pytest.raises(ValueError, match="LocalPath"):
        validate_tuning(request)
    request = _tuning_request()  # the program as a tuned parameter would reach the trials unchecked
    request["HyperParameterTuningJobConfig"]["ParameterRanges"]["CategoricalParameterRanges"] = [
        {"Name": "sagemaker_program", "Values": ["churn_train.py", "/tmp/evil.py"]}]
    with pytest.raises(ValueError, match="not tunable"):
        validate_tuning(request)


def test_a_models_program_and_archives_are_checked_at_create_time(lake_root):
    validate_model(model_request("m", "s3://churn-lake/models/m/model.tar.gz"))
    for key, value, message in (
        ("SAGEMAKER_PROGRAM", "/tmp/evil.py", "SAGEMAKER_PROGRAM '/tmp/evil.py' is refused"),
        ("SAGEMAKER_PROGRAM", "../inference.py", "'..' segment"),
        ("SAGEMAKER_SUBMIT_DIRECTORY", "file:///tmp/b.tar.gz", "SAGEMAKER_SUBMIT_DIRECTORY must be an s3://"),
    ):
        model = model_request("m", "s3://churn-lake/models/m/model.tar.gz")
        model["PrimaryContainer"]["Environment"][key] = value
        with pytest.raises(ValueError, match=message):
            validate_model(model)
    with pytest.raises(ValueError, match="ModelDataUrl must be an s3://"):
        validate_model(model_request("m", "/tmp/model.tar.gz"))


def test_a_transform_jobs_input_and_output_are_lake_uris(lake_root):
    transform = {
        "TransformJobName": "t", "ModelName": "m", "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://churn-lake/in/"}}},
        "TransformOutput": {"S3OutputPath": "s3://churn-lake/out/"},
    }
    validate_transform(None, transform)
    with pytest.raises(ValueError, match="S3OutputPath must be an s3://"):
        validate_transform(None, {**transform, "TransformOutput": {"S3OutputPath": "file:///tmp/out"}})
    bad_input = {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://churn-lake/../../in/"}}}
    with pytest.raises(ValueError, match="S3Uri"):
        validate_transform(None, {**transform, "TransformInput": bad_input})


# ---------------------------------------------------------------- handlers by location

HANDLERS = "def model_fn(d): return {marker!r}\ndef input_fn(b, c): return b\ndef predict_fn(x, m): return x\ndef output_fn(p, a): return p, a\n"


def test_handlers_are_loaded_from_the_bundles_file_not_a_module_of_that_name(tmp_path, monkeypatch):
    code, elsewhere = tmp_path / "code", tmp_path / "elsewhere"
    code.mkdir()
    elsewhere.mkdir()
    (code / "inference.py").write_text(HANDLERS.format(marker="bundle"))
    (elsewhere / "inference.py").write_text(HANDLERS.format(marker="elsewhere"))
    # A module named "inference" from elsewhere is imported already, as a name lookup would find it.
    # (syspath_prepend also restores sys.path afterwards, which load_handlers extends; setitem restores
    # the modules it registers.)
    monkeypatch.syspath_prepend(str(elsewhere))
    for name in ("inference", "partial"):
        monkeypatch.setitem(sys.modules, name, None)
        del sys.modules[name]
    assert importlib.import_module("inference").model_fn("m") == "elsewhere"
    handlers = sandbox.load_handlers(code, "inference.py")
    assert handlers.model_fn("m") == "bundle" and Path(handlers.__file__) == (code / "inference.py").resolve()
    assert sys.modules["inference"] is handlers
    (code / "partial.py").write_text("def model_fn(d): return 1\n")
    with pytest.raises(RuntimeError, match=r"no input_fn\(\), predict_fn\(\), output_fn\(\)"):
        sandbox.load_handlers(code, "partial.py")
    with pytest.raises(ValueError, match="absolute path"):
        sandbox.load_handlers(code, str(elsewhere / "inference.py"))


# ---------------------------------------------------------------- Spark job runs

ARTIFACTS, LAKE = "s3://churn-artifacts", "s3://churn-lake"
CODE = f"{ARTIFACTS}/code/0123456789abcdef"  # one code version's prefix (churn_ml.artifacts.code_uri)


def _spark(**change) -> dict:
    request = {"entry_point": f"{CODE}/jobs/churn_features.py",
               "arguments": ["--ds", "2026-07-01", "--lake", LAKE, "--max-bad-fraction", "0.01"],
               "py_files": [f"{CODE}/lib/churn.zip"], "spark_conf": {"spark.sql.shuffle.partitions": "8"}}
    return {**request, **change}


def test_the_projects_spark_requests_pass():
    spark.check_job_request(**_spark())
    spark.check_job_request(**_spark(entry_point=f"{LAKE}/probe/probe.py", py_files=[], spark_conf={}))


@pytest.mark.parametrize(("change", "message"), [
    ({"arguments": ["--lake", "file:///etc"]}, "argument 2 'file:///etc' is refused: .*scheme other than s3://"),
    ({"arguments": ["--lake", "file:/etc"]}, "scheme other than s3://"),
    ({"arguments": ["--lake", "FILE:///etc"]}, "scheme other than s3://"),
    ({"arguments": ["--lake", "s3a://churn-lake"]}, "scheme other than s3://"),
    ({"arguments": ["--lake", "hdfs://namenode/x"]}, "scheme other than s3://"),
    ({"arguments": ["--output", "/tmp/out"]}, "absolute path"),
    ({"arguments": ["--output", "../../out"]}, "'..' path segment"),
    ({"arguments": ["--output", "s3://churn-lake/a/../../../x"]}, "outside the lake root"),
    ({"entry_point": "file:///tmp/evil.py"}, "entryPoint .* is refused: it is not an s3:// URI"),
    ({"entry_point": "/tmp/evil.py"}, "entryPoint .* is refused: it is not an s3:// URI"),
    ({"entry_point": "s3://other-bucket/evil.py"}, "neither the artifacts nor the lake bucket"),
    ({"entry_point": f"{ARTIFACTS}/jobs/evil.jar"}, r"does not end with \.py"),
    ({"entry_point": f"{ARTIFACTS}/../evil.py"}, "'..' segment"),
    ({"py_files": ["file:///tmp/evil.zip"]}, "--py-files entry .* is refused"),
    ({"spark_conf": {"spark.driver.extraClassPath": "/tmp"}}, "--conf spark.driver.extraClassPath is refused"),
    ({"spark_conf": {"spark.pyspark.python": "/tmp/evil"}}, "--conf spark.pyspark.python is refused"),
    ({"spark_conf": {"spark.sql.session.timeZone": "file:///x"}}, "--conf spark.sql.session.timeZone 'file:///x' is refused"),
])
def test_a_spark_request_naming_something_outside_is_refused(lake_root, change, message):
    with pytest.raises(ValueError, match=message):
        spark.check_job_request(**_spark(**change))


def test_glue_runs_are_checked_with_the_jobs_arguments(lake_root):
    from local_aws.spark_api import _check_glue_run

    command = {"Name": "glueetl", "ScriptLocation": f"{CODE}/jobs/churn_training_set.py"}
    defaults = {"--extra-py-files": f"{CODE}/lib/churn.zip", "--enable-metrics": "true"}
    _check_glue_run(command, {**defaults, "--ds": "2026-07-01", "--lake": LAKE, "--conf": "spark.sql.shuffle.partitions=4"})
    for arguments, message in (
        ({**defaults, "--lake": "file:///etc"}, "scheme other than s3://"),
        ({**defaults, "--extra-py-files": "/tmp/evil.py"}, "--py-files entry '/tmp/evil.py' is refused"),
        ({**defaults, "--conf": "spark.sql.shuffle.partitions=4 --conf spark.jars=/tmp/x.jar"}, "--conf spark.jars is refused"),
        ({**defaults, "--conf": "x --jars /tmp/x.jar"}, "is not supported by the local runner"),
    ):
        with pytest.raises(ValueError, match=message):
            _check_glue_run(command, arguments)
    with pytest.raises(ValueError, match="entryPoint"):
        _check_glue_run({"Name": "glueetl", "ScriptLocation": "file:///tmp/evil.py"}, defaults)


def test_the_templates_glue_jobs_and_the_streaming_runs_arguments_pass(lake_s3):
    from churn_ml import stream_job

    deployed_code()  # the streaming run names the deployed code version (code/CURRENT.json)
    from local_aws.spark_api import _check_glue_run, glue_refs
    from local_aws.template import glue_job_requests

    jobs = glue_job_requests(glue_refs("http://127.0.0.1:1"))
    assert {j["Name"] for j in jobs} >= {"churn-features", "churn-training-set", "churn-monitoring", "churn-streaming"}
    for job in jobs:
        extra = stream_job.run_arguments() if job["Command"]["Name"] == "gluestreaming" else {"--lake": LAKE}
        _check_glue_run(job["Command"], {**job.get("DefaultArguments", {}), **extra})


def test_a_glue_runs_script_location_and_library_override_the_jobs_and_are_checked(lake_root, monkeypatch):
    """The local Glue runner as StartJobRun reaches it: a run's ``--scriptLocation`` and ``--extra-py-files``
    (churn_ml.artifacts.glue_code_arguments, sent by every run of this project) replace the job
    definition's ScriptLocation and --extra-py-files for that run, the request checks apply to the
    values that run, and ``--scriptLocation`` is Glue's parameter, not an argument of the script."""
    from moto.glue.exceptions import InvalidInputException

    from churn_ml import artifacts
    from local_aws import spark_api

    started: list[dict] = []
    monkeypatch.setattr(spark_api.jobs, "start", lambda kind, folder, request: started.append(request))
    old, new = "00000000000000aa", "0123456789abcdef"
    # The control plane's Glue backend, of an account that is not the local one (its state stays in memory).
    glue = spark_api.LocalGlueBackend("us-east-1", "123456789012")
    none = dict.fromkeys(("description", "log_uri", "execution_property", "non_overridable_arguments", "connections",
                          "max_retries", "allocated_capacity", "timeout", "max_capacity", "security_configuration",
                          "tags", "notification_property", "glue_version", "number_of_workers", "worker_type",
                          "code_gen_configuration_nodes", "execution_class", "source_control_details"))
    glue.create_job(**none, name="t", role="arn:aws:iam::123456789012:role/x", command={
        "Name": "glueetl", "ScriptLocation": artifacts.code_uri(old, "jobs/churn_training_set.py")},
        default_arguments={"--extra-py-files": artifacts.code_uri(old, "lib/churn.zip")})
    run = dict.fromkeys(("allocated_capacity", "max_capacity", "timeout", "worker_type", "security_configuration",
                         "number_of_workers", "notification_property", "previous_run_id"))
    script_args = {"--ds": "2026-07-01", "--lake": LAKE}
    glue.start_job_run("t", {**artifacts.glue_code_arguments(new, "churn_training_set"), **script_args}, **run)
    assert len(started) == 1
    assert started[0]["entry_point"] == f"{ARTIFACTS}/code/{new}/jobs/churn_training_set.py"
    assert started[0]["py_files"] == [f"{ARTIFACTS}/code/{new}/lib/churn.zip"]
    assert started[0]["arguments"] == ["--ds", "2026-07-01", "--lake", LAKE]  # no --scriptLocation for the script
    for location, message in (("file:///tmp/evil.py", "not an s3:// URI"), ("/tmp/evil.py", "not an s3:// URI"),
                              ("s3://other-bucket/code/x/jobs/churn_training_set.py", "neither the artifacts nor the lake")):
        with pytest.raises(InvalidInputException, match=message):
            glue.start_job_run("t", {**script_args, "--scriptLocation": location}, **run)
    with pytest.raises(InvalidInputException, match="--py-files entry '/tmp/evil.zip' is refused"):
        glue.start_job_run("t", {**artifacts.glue_code_arguments(new, "churn_training_set"), **script_args,
                                 "--extra-py-files": "/tmp/evil.zip"}, **run)
    assert len(started) == 1  # a refused run starts nothing
    assert len(glue.get_job("t").job_runs) == 1
