"""The framework containers' training contract (local_aws.training_toolkit) as sagemaker-containers 2.8.6
(the XGBoost 1.7-1 image's toolkit) implements it, and the local training runner applying it."""

from __future__ import annotations

import io
import json
import logging
import tarfile

import numpy as np
import pytest

from local_aws import lake_files, training_toolkit
from local_aws.training import check_request_paths, run_training_job
from support import training_request, write_channel

LOG = logging.getLogger("test")


def test_values_are_json_decoded_and_kept_as_they_are_when_not_json():
    raw = {
        "sagemaker_submit_directory": '"s3://churn-lake/code/x/sourcedir.tar.gz"',  # the SDK's encoding
        "sagemaker_program": "churn_train.py",  # not JSON: the string itself
        "num_round": "600", "eta": "0.05", "flag": "true", "nested": '{"b": 2, "a": "x"}', "items": "[1, 2]",
        "empty": "", "quoted_number": '"7"', "null": "null",
    }
    assert training_toolkit.decode_hyperparameters(raw) == {
        "sagemaker_submit_directory": "s3://churn-lake/code/x/sourcedir.tar.gz",
        "sagemaker_program": "churn_train.py",
        "num_round": 600, "eta": 0.05, "flag": True, "nested": {"b": 2, "a": "x"}, "items": [1, 2],
        "empty": "", "quoted_number": "7", "null": None,
    }


def test_framework_hyperparameters_are_taken_out_of_the_scripts():
    framework, user = training_toolkit.split_hyperparameters({
        "sagemaker_program": "t.py", "sagemaker_submit_directory": "s3://b/k", "sagemaker_region": "us-east-1",
        "sagemaker_container_log_level": 20, "sagemaker_estimator_class_name": "Estimator",
        "_tuning_objective_metric": "validation:auc", "num_round": 600,
    })
    assert user == {"num_round": 600}
    assert set(framework) == {"sagemaker_program", "sagemaker_submit_directory", "sagemaker_region",
                              "sagemaker_container_log_level", "sagemaker_estimator_class_name",
                              "_tuning_objective_metric"}


def test_script_arguments_are_sorted_and_formatted_as_the_toolkit_does():
    args = training_toolkit.to_cmd_args(
        {"num_round": 600, "eta": 0.05, "a": 1, "flag": True, "opts": {"z": 1, "b": "x"}, "none": None, "s": "text"}
    )
    assert args == ["-a", "1", "--eta", "0.05", "--flag", "True", "--none", "", "--num_round", "600",
                    "--opts", "b=x,z=1", "-s", "text"]


def test_the_projects_plain_strings_reach_the_script_as_the_same_text():
    """The DAGs send unencoded strings (training_requests): on the container each value the script reads
    decodes to a number, or stays the string, whose str() is the text sent, so its arguments are unchanged."""
    from churn_ml.training_requests import STATIC_HYPERPARAMETERS

    sent = {k: str(v) for k, v in STATIC_HYPERPARAMETERS.items()} | {
        # tuned values as the tuning job reports them (%.6g) and as a rendered DAG param gives them
        "eta": "0.0123457", "reg_lambda": "1.5e-05", "subsample": "0.5", "max_depth": "5", "nthread": "2",
        "sagemaker_program": "churn_train.py", "sagemaker_submit_directory": "s3://b/code/0123abcd/sagemaker/sourcedir.tar.gz",
    }
    _, user = training_toolkit.split_hyperparameters(training_toolkit.decode_hyperparameters(sent))
    args = training_toolkit.to_cmd_args(user)
    assert dict(zip(args[::2], args[1::2])) == {f"--{k}": v for k, v in sent.items() if not k.startswith("sagemaker_")}


def test_a_program_in_a_subfolder_is_refused_as_python_m_cannot_run_it():
    assert training_toolkit.check_program("churn_train.py") == "churn_train.py"
    assert training_toolkit.module_name("churn_train.py") == "churn_train"
    with pytest.raises(ValueError, match="python -m sub/x"):
        training_toolkit.check_program("sub/x.py")
    with pytest.raises(ValueError, match="decodes to int"):
        training_toolkit.check_program(5)


def test_request_paths_are_checked_on_the_decoded_values():
    request = training_request()
    request["HyperParameters"] = {k: json.dumps(v) for k, v in request["HyperParameters"].items()}  # as the SDK
    check_request_paths(request)
    request["HyperParameters"]["sagemaker_submit_directory"] = json.dumps("file:///etc/passwd")
    with pytest.raises(ValueError, match="must be an s3://bucket/key URI, got 'file:///etc/passwd'"):
        check_request_paths(request)


def test_environment_variables_are_the_toolkits(tmp_path):
    opt_ml = tmp_path / "opt_ml"
    request = training_request()
    inputs = training_toolkit.input_data_config(request)
    resources = training_toolkit.resource_config(request)
    hps = {"num_round": '"20"', "eta": "0.1", "sagemaker_program": '"churn_train.py"',
           "sagemaker_submit_directory": '"s3://churn-lake/code/v/sourcedir.tar.gz"',
           "sagemaker_container_log_level": "20", "sagemaker_job_name": '"job-1"', "sagemaker_region": '"eu-west-1"',
           "sagemaker_estimator_class_name": '"Estimator"'}
    env = training_toolkit.training_env(opt_ml, hps, inputs, resources, "job-1")
    assert inputs["train"] == {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated",
                               "RecordWrapperType": "None"}
    assert env["SM_HPS"] == '{"eta":0.1,"num_round":"20"}'  # '"20"' is the string 20
    assert json.loads(env["SM_USER_ARGS"]) == ["--eta", "0.1", "--num_round", "20"]
    assert env["SM_HP_NUM_ROUND"] == "20" and env["SM_HP_ETA"] == "0.1"
    assert env["SM_CHANNELS"] == '["holdout","train","validation"]'
    assert env["SM_CHANNEL_TRAIN"] == str(opt_ml / "input/data/train")
    assert env["SM_MODULE_NAME"] == "churn_train" and env["SM_USER_ENTRY_POINT"] == "churn_train.py"
    assert env["SM_MODULE_DIR"] == "s3://churn-lake/code/v/sourcedir.tar.gz"
    assert env["SM_FRAMEWORK_PARAMS"] == '{"sagemaker_estimator_class_name":"Estimator"}'
    assert env["SM_FRAMEWORK_MODULE"] == "sagemaker_xgboost_container.training:main"
    assert (env["SM_LOG_LEVEL"], env["SM_NUM_GPUS"], env["SM_CURRENT_HOST"], env["SM_HOSTS"]) == (
        "20", "0", "algo-1", '["algo-1"]')
    assert env["SM_NUM_CPUS"].isdigit() and int(env["SM_NUM_CPUS"]) >= 1
    assert env["SM_MODEL_DIR"] == str(opt_ml / "model") and env["SM_OUTPUT_DATA_DIR"] == str(opt_ml / "output/data")
    assert env["SM_INPUT_CONFIG_DIR"] == str(opt_ml / "input/config") and env["SM_OUTPUT_DIR"] == str(opt_ml / "output")
    assert env["SM_OUTPUT_INTERMEDIATE_DIR"] == str(opt_ml / "output/intermediate")
    assert json.loads(env["SM_INPUT_DATA_CONFIG"]) == inputs and json.loads(env["SM_RESOURCE_CONFIG"]) == resources
    assert json.loads(env["SM_RESOURCE_CONFIG"])["current_instance_type"] == "ml.m5.large"
    assert (env["TRAINING_JOB_NAME"], env["SAGEMAKER_JOB_NAME"], env["SAGEMAKER_REGION"]) == ("job-1", "job-1", "eu-west-1")
    training_env = json.loads(env["SM_TRAINING_ENV"])
    assert training_env["hyperparameters"] == {"eta": 0.1, "num_round": "20"}
    assert training_env["channel_input_dirs"]["holdout"] == str(opt_ml / "input/data/holdout")
    assert training_env["job_name"] == "job-1" and training_env["is_master"] is True
    assert training_env["additional_framework_parameters"] == {"sagemaker_estimator_class_name": "Estimator"}


def _probe_bundle(uri: str) -> None:
    """A source bundle whose entry point writes what it was given (argv, SM_* variables) as its model."""
    script = (
        b"import json, os, sys\n"
        b"out = {'argv': sys.argv[1:], 'main': __name__, 'env': {k: v for k, v in os.environ.items()"
        b" if k.startswith(('SM_', 'TRAINING_JOB'))}}\n"
        b"open(os.path.join(os.environ['SM_MODEL_DIR'], 'seen.json'), 'w').write(json.dumps(out))\n"
    )
    path = lake_files.local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("probe.py")
        info.size = len(script)
        tar.addfile(info, io.BytesIO(script))


def test_the_runner_runs_the_entry_point_as_the_container_does(lake_root):
    rng = np.random.default_rng(0)
    for name in ("train", "validation", "holdout"):
        write_channel(lake_root, name, rng, rows=20)
    bundle = "s3://churn-lake/code/probe/sourcedir.tar.gz"
    _probe_bundle(bundle)
    request = training_request()
    request["HyperParameters"] = {  # as the SageMaker Python SDK sends them: every value JSON-encoded
        "sagemaker_program": json.dumps("probe.py"), "sagemaker_submit_directory": json.dumps(bundle),
        "sagemaker_container_log_level": "20", "sagemaker_region": json.dumps("us-east-1"),
        "num_round": json.dumps(20), "eta": json.dumps(0.3), "m": json.dumps("x y"),
        "_tuning_objective_metric": "validation:auc",
    }
    described = run_training_job(request, LOG)
    with tarfile.open(lake_files.local_path(described["ModelArtifacts"]["S3ModelArtifacts"])) as tar:
        seen = json.loads(tar.extractfile("seen.json").read())
    assert seen["main"] == "__main__"
    assert seen["argv"] == ["--eta", "0.3", "-m", "x y", "--num_round", "20"]
    assert seen["env"]["SM_HPS"] == '{"eta":0.3,"m":"x y","num_round":20}'
    assert seen["env"]["SM_MODULE_DIR"] == bundle and seen["env"]["SM_MODULE_NAME"] == "probe"
    assert seen["env"]["TRAINING_JOB_NAME"] == "test-train"
    assert described["HyperParameters"] == request["HyperParameters"]  # Describe shows what was sent


def test_the_sdks_encoding_of_the_project_request_trains(lake_root):
    """churn_train.py with every hyperparameter JSON-encoded, as Estimator.fit sends them."""
    rng = np.random.default_rng(1)
    for name in ("train", "validation", "holdout"):
        write_channel(lake_root, name, rng)
    request = training_request()
    request["HyperParameters"] = {k: json.dumps(v) for k, v in request["HyperParameters"].items()}
    described = run_training_job(request, LOG)
    assert described["TrainingJobStatus"] == "Completed"
    assert {m["MetricName"] for m in described["FinalMetricDataList"]} == {"holdout:auc", "validation:auc"}
