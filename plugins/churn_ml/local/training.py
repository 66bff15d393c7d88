"""Local runner for SageMaker training jobs (script mode), with the container's contract.

From a CreateTrainingJob request it lays out an ``/opt/ml``-shaped folder (``input/config/*.json``,
``input/data/<channel>/`` copied from the lake, ``model/``, ``output/``), unpacks the
``sagemaker_submit_directory`` bundle into ``code/``, runs ``sagemaker_program`` with the user
hyperparameters as ``--name value`` arguments and the ``SM_*`` environment, parses the metrics
with the request's MetricDefinitions, packs ``model.tar.gz`` / ``output.tar.gz`` to
``<S3OutputPath>/<job>/output/`` and returns a DescribeTrainingJob-shaped response.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

from churn_ml import lake
from churn_ml.local.common import (
    LocalJobError,
    arn,
    control_plane,
    now,
    publish_artifacts,
    python,
    read_state,
    stream,
    tail,
    write_state,
)

REQUIRED = ("TrainingJobName", "AlgorithmSpecification", "RoleArn", "OutputDataConfig", "ResourceConfig", "StoppingCondition")
FRAMEWORK_PREFIX = "sagemaker_"


def validate_request(request: dict) -> None:
    """The checks CreateTrainingJob would do on what this runner relies on; fail before any work."""
    missing = [k for k in REQUIRED if k not in request]
    if missing:
        raise ValueError(f"training request is missing {missing}; see the CreateTrainingJob API")
    hps = request.get("HyperParameters", {})
    not_str = {k: type(v).__name__ for k, v in hps.items() if not isinstance(v, str)}
    if not_str:
        raise ValueError(f"HyperParameters values must be strings (the API takes a map of strings): {not_str}")
    for key in ("sagemaker_program", "sagemaker_submit_directory"):
        if key not in hps:
            raise ValueError(f"script mode needs the hyperparameter {key!r}")
    if not isinstance(request["StoppingCondition"].get("MaxRuntimeInSeconds"), int):
        raise ValueError("StoppingCondition.MaxRuntimeInSeconds must be an integer")
    for channel in request.get("InputDataConfig", []):
        source = channel.get("DataSource", {}).get("S3DataSource", {})
        if source.get("S3DataType") != "S3Prefix":
            raise ValueError(f"channel {channel.get('ChannelName')}: only S3DataType S3Prefix is supported locally")


def _copy_prefix(uri: str, dest: Path) -> int:
    """Copy every object under an S3 prefix into ``dest``, keeping the key below the prefix."""
    source = lake.local_path(uri)
    if not source.exists():
        raise LocalJobError(f"input channel {uri} has no objects (local path {source})")
    dest.mkdir(parents=True, exist_ok=True)
    if source.is_file():
        shutil.copy2(source, dest / source.name)
        return 1
    count = 0
    for path in sorted(source.rglob("*")):
        if path.is_file():
            target = dest / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            count += 1
    return count


def _pack(folder: Path, archive: Path) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(f".{archive.name}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(folder).as_posix())
    tmp.replace(archive)


def parse_metrics(lines: list[str], definitions: list[dict]) -> list[dict]:
    """Last value of each MetricDefinitions regex in the job output, as in FinalMetricDataList."""
    final = []
    for definition in definitions:
        pattern = re.compile(definition["Regex"])
        value = None
        for line in lines:
            for match in pattern.finditer(line):
                try:
                    value = float(match.group(1))
                except (IndexError, ValueError):
                    continue
        if value is not None:
            final.append({"MetricName": definition["Name"], "Value": value, "Timestamp": now()})
    return final


def run_training_job(request: dict, log: logging.Logger) -> dict:
    validate_request(request)
    name = request["TrainingJobName"]
    job_dir = control_plane("sagemaker", "training-jobs", name)
    state_file = job_dir / "describe.json"
    previous = read_state(state_file)
    if previous and previous.get("TrainingJobStatus") == "Completed":
        log.info("training job %s already completed: re-attaching to it", name)
        return previous

    publish_artifacts()
    hps = request.get("HyperParameters", {})
    opt_ml = job_dir / "opt_ml"
    for sub in ("input", "model", "output", "code"):
        shutil.rmtree(opt_ml / sub, ignore_errors=True)
    config_dir, data_dir = opt_ml / "input" / "config", opt_ml / "input" / "data"
    model_dir, output_dir = opt_ml / "model", opt_ml / "output"
    code_dir = opt_ml / "code"
    for folder in (config_dir, data_dir, model_dir, output_dir / "data", code_dir):
        folder.mkdir(parents=True, exist_ok=True)

    bundle = lake.local_path(hps["sagemaker_submit_directory"])
    if not bundle.exists():
        raise LocalJobError(f"sagemaker_submit_directory {hps['sagemaker_submit_directory']} not found ({bundle})")
    with tarfile.open(bundle) as tar:
        tar.extractall(code_dir, filter="data")
    program = hps["sagemaker_program"]
    if not (code_dir / program).exists():
        raise LocalJobError(f"sagemaker_program {program!r} is not in the source bundle {bundle}")

    channels = {}
    for channel in request.get("InputDataConfig", []):
        cname = channel["ChannelName"]
        count = _copy_prefix(channel["DataSource"]["S3DataSource"]["S3Uri"], data_dir / cname)
        channels[cname] = str(data_dir / cname)
        log.info("channel %s: %d objects", cname, count)
    resource = {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "lo"}
    user_hps = {k: v for k, v in hps.items() if not k.startswith(FRAMEWORK_PREFIX)}
    (config_dir / "hyperparameters.json").write_text(json.dumps(hps))
    (config_dir / "resourceconfig.json").write_text(json.dumps(resource))
    (config_dir / "inputdataconfig.json").write_text(
        json.dumps({c["ChannelName"]: {k: v for k, v in c.items() if k != "ChannelName"} for c in request.get("InputDataConfig", [])})
    )

    env = {
        **os.environ,
        "SM_MODEL_DIR": str(model_dir),
        "SM_OUTPUT_DIR": str(output_dir),
        "SM_OUTPUT_DATA_DIR": str(output_dir / "data"),
        "SM_INPUT_DIR": str(opt_ml / "input"),
        "SM_INPUT_CONFIG_DIR": str(config_dir),
        "SM_CHANNELS": json.dumps(sorted(channels)),
        "SM_HPS": json.dumps(user_hps),
        "SM_USER_ARGS": json.dumps([a for k, v in user_hps.items() for a in (f"--{k}", v)]),
        "SM_CURRENT_HOST": "algo-1",
        "SM_HOSTS": json.dumps(["algo-1"]),
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_NUM_GPUS": "0",
        "SM_MODULE_DIR": hps["sagemaker_submit_directory"],
        "SM_FAILURE_FILE": str(output_dir / "failure"),
        "PYTHONPATH": str(code_dir),
        "PYTHONUNBUFFERED": "1",
    }
    env.update({f"SM_CHANNEL_{c.upper()}": path for c, path in channels.items()})
    argv = [python(), program] + [a for k, v in user_hps.items() for a in (f"--{k}", v)]

    describe = {
        "TrainingJobName": name,
        "TrainingJobArn": arn("sagemaker", "training-job", name.lower()),
        "TrainingJobStatus": "InProgress",
        "SecondaryTrainingStatus": "Training",
        "HyperParameters": hps,
        "AlgorithmSpecification": request["AlgorithmSpecification"],
        "RoleArn": request["RoleArn"],
        "InputDataConfig": request.get("InputDataConfig", []),
        "OutputDataConfig": request["OutputDataConfig"],
        "ResourceConfig": request["ResourceConfig"],
        "StoppingCondition": request["StoppingCondition"],
        "EnableManagedSpotTraining": request.get("EnableManagedSpotTraining", False),
        "CreationTime": now(),
        "TrainingStartTime": now(),
    }
    write_state(state_file, describe)
    started = time.monotonic()
    max_runtime = request["StoppingCondition"]["MaxRuntimeInSeconds"]
    try:
        code, lines = stream(
            argv, env=env, log=log, log_file=job_dir / "training.log", timeout=max_runtime, cwd=code_dir
        )
        failure = (output_dir / "failure").read_text().strip() if (output_dir / "failure").exists() else ""
        reason = failure or (f"AlgorithmError: {program} exited with {code}" if code else "")
    except subprocess.TimeoutExpired:
        lines, reason = [], f"MaxRuntimeInSeconds ({max_runtime}) exceeded"
    elapsed = max(1, int(time.monotonic() - started))
    describe.update(
        TrainingEndTime=now(),
        TrainingTimeInSeconds=elapsed,
        BillableTimeInSeconds=elapsed,
        FinalMetricDataList=parse_metrics(lines, request["AlgorithmSpecification"].get("MetricDefinitions", [])),
    )
    if reason:
        describe.update(TrainingJobStatus="Failed", SecondaryTrainingStatus="Failed", FailureReason=reason)
        write_state(state_file, describe)
        raise LocalJobError(
            f"training job {name} failed: {reason}\nLast lines:\n{tail(lines)}\nFull log: {job_dir / 'training.log'}"
        )
    output_uri = f"{request['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{name}/output"
    _pack(model_dir, lake.local_path(f"{output_uri}/model.tar.gz"))
    _pack(output_dir / "data", lake.local_path(f"{output_uri}/output.tar.gz"))
    describe.update(
        TrainingJobStatus="Completed",
        SecondaryTrainingStatus="Completed",
        ModelArtifacts={"S3ModelArtifacts": f"{output_uri}/model.tar.gz"},
    )
    write_state(state_file, describe)
    return describe
