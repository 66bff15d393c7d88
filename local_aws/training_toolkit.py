"""The training contract of SageMaker's framework containers, as the local training runner applies it.

In script mode the SageMaker XGBoost 1.7-1 image (``SAGEMAKER_TRAINING_MODULE
sagemaker_xgboost_container.training:main``) hands a job to its training toolkit, sagemaker-containers
2.8.6.post2 (its ``_env.TrainingEnv``, ``_mapping`` and ``_modules.run_module``; sagemaker-training-toolkit,
its successor in the other framework images, does the same for everything below). This module is that
contract, so a request that trains here trains there:

- ``decode_hyperparameters``: ``hyperparameters.json`` holds the request's strings; each value is
  ``json.loads``-ed, and kept as the string it is when it is not JSON (``read_hyperparameters``).
  So the SDK's ``'"s3://b/k.tar.gz"'`` is ``s3://b/k.tar.gz``, ``"600"`` is ``600``, and ``churn_train.py``
  (not JSON) stays ``churn_train.py``.
- ``split_hyperparameters``: the framework's own (``SAGEMAKER_HYPERPARAMETERS`` and any ``sagemaker_``
  key) are taken out; the rest are the user's (``split_by_criteria``).
- ``to_cmd_args``: the user's, sorted by name, as ``--name value`` (``-n value`` for a one-letter name),
  a value as ``str()`` of what was decoded (``600``, ``0.1``, ``True``), a JSON object as ``k=v,k=v``.
- ``training_env``: the ``SM_*`` variables (``TrainingEnv.to_env_vars``): strings as they are, anything
  else as compact, key-sorted JSON; ``SM_TRAINING_ENV`` the whole environment; ``SM_HP_<NAME>`` per
  hyperparameter and ``SM_CHANNEL_<NAME>`` per channel, upper-cased as the toolkit does.
- ``module_name``: the entry point runs as ``python -m <sagemaker_program without .py>``
  (``_modules.run``), so the program is a file at the bundle's root.

What differs here, and only in where things are: the container's ``/opt/ml`` is the job's sandbox
folder (``SAGEMAKER_BASE_DIR``, the toolkit's own variable for a base folder elsewhere, says which), one
host (``algo-1``) on the loopback interface, and two variables of the runner's own for paths that are
fixed in the container: ``SM_CHECKPOINT_DIR`` (``CheckpointConfig.LocalPath`` in the sandbox) and
``SM_FAILURE_FILE`` (``/opt/ml/output/failure``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from local_aws.common import LOCAL_REGION

SAGEMAKER_PREFIX = "sagemaker_"
USER_PROGRAM_PARAM = "sagemaker_program"
SUBMIT_DIR_PARAM = "sagemaker_submit_directory"
LOG_LEVEL_PARAM = "sagemaker_container_log_level"
JOB_NAME_PARAM = "sagemaker_job_name"
REGION_NAME_PARAM = "sagemaker_region"
# sagemaker_containers._params.SAGEMAKER_HYPERPARAMETERS: the framework's, never the script's arguments.
SAGEMAKER_HYPERPARAMETERS = (
    USER_PROGRAM_PARAM,
    SUBMIT_DIR_PARAM,
    "sagemaker_enable_cloudwatch_metrics",
    REGION_NAME_PARAM,
    LOG_LEVEL_PARAM,
    JOB_NAME_PARAM,
    "default_user_module_name",
    "_tuning_objective_metric",
    "sagemaker_s3_output",
)
# The XGBoost 1.7-1 image's ENV (docker/1.7-1/final/Dockerfile.cpu of aws/sagemaker-xgboost-container).
TRAINING_MODULE = "sagemaker_xgboost_container.training:main"
SERVING_MODULE = "sagemaker_xgboost_container.serving:main"
CURRENT_HOST = "algo-1"
NETWORK_INTERFACE = "lo"  # SageMaker's is eth0; here every job is on this machine's loopback


def decode_hyperparameters(raw: dict[str, str]) -> dict[str, object]:
    """Each value JSON-decoded, or the value itself where it is not JSON (the toolkit's ``read_hyperparameters``)."""
    decoded: dict[str, object] = {}
    for key, value in raw.items():
        try:
            decoded[key] = json.loads(value)
        except (ValueError, TypeError):
            decoded[key] = value
    return decoded


def split_hyperparameters(decoded: dict[str, object]) -> tuple[dict[str, object], dict[str, object]]:
    """(framework's, user's): the framework's are ``SAGEMAKER_HYPERPARAMETERS`` and every ``sagemaker_`` key."""
    framework = {k: v for k, v in decoded.items() if k in SAGEMAKER_HYPERPARAMETERS or k.startswith(SAGEMAKER_PREFIX)}
    return framework, {k: v for k, v in decoded.items() if k not in framework}


def _decode(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin1")
    return str(value)


def to_cmd_args(mapping: dict[str, object]) -> list[str]:
    """The script's arguments: ``--name value`` by sorted name (``-n`` for one letter), as ``mapping.to_cmd_args``."""
    args: list[str] = []
    for key in sorted(mapping):
        name = _decode(key)
        value = mapping[key]
        args.append((f"--{name}" if len(name) > 1 else f"-{name}") if name else "")
        if isinstance(value, dict):
            args.append(",".join(f"{k}={v}" for k, v in sorted(value.items())))
        else:
            args.append(_decode(value))
    return args


def to_env_vars(mapping: dict[str, object]) -> dict[str, str]:
    """``SM_<KEY>`` for each key: strings as they are, None empty, anything else compact key-sorted JSON."""

    def value(item: object) -> str:
        if isinstance(item, bytes):
            return item.decode("latin1")
        if item is None:
            return ""
        if isinstance(item, str):
            return item
        return json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    return {f"SM_{str(k).upper()}" if k else "": value(v) for k, v in mapping.items()}


def module_name(program: str) -> str:
    """The module ``python -m`` runs for ``sagemaker_program`` (the toolkit's ``_parse_module_name``)."""
    return program[:-3] if program.endswith(".py") else program


def check_program(program: object) -> str:
    """``sagemaker_program`` as the toolkit can run it: a string naming a file at the bundle's root (``python -m``
    cannot run ``dir/x.py``; the SDK sends the entry point's base name), else ValueError."""
    if not isinstance(program, str):
        raise ValueError(
            f"HyperParameters.sagemaker_program decodes to {type(program).__name__} {program!r}, expected the entry "
            "point's file name, e.g. 'churn_train.py' or '\"churn_train.py\"' (the SDK's JSON encoding)")
    if "/" in program:
        raise ValueError(
            f"HyperParameters.sagemaker_program {program!r} is refused: the training toolkit runs it as "
            f"'python -m {module_name(program)}', which names no module; put the entry point at the root of "
            "the source bundle and name it by its file name")
    return program


def input_data_config(request: dict) -> dict[str, dict]:
    """``inputdataconfig.json`` as SageMaker writes it: per channel its ContentType (when given),
    TrainingInputMode, S3DistributionType and RecordWrapperType."""
    default_mode = request.get("AlgorithmSpecification", {}).get("TrainingInputMode", "File")
    config = {}
    for channel in request.get("InputDataConfig", []):
        source = channel.get("DataSource", {}).get("S3DataSource", {})
        entry = {"ContentType": channel["ContentType"]} if "ContentType" in channel else {}
        entry.update(
            TrainingInputMode=channel.get("InputMode", default_mode),
            S3DistributionType=source.get("S3DataDistributionType", "FullyReplicated"),
            RecordWrapperType=channel.get("RecordWrapperType", "None"),
        )
        config[channel["ChannelName"]] = entry
    return config


def resource_config(request: dict) -> dict:
    """``resourceconfig.json`` of the one local host, in SageMaker's fields (instance type of the request)."""
    instance_type = request.get("ResourceConfig", {}).get("InstanceType", "local")
    return {
        "current_host": CURRENT_HOST,
        "current_instance_type": instance_type,
        "current_group_name": "homogeneousCluster",
        "hosts": [CURRENT_HOST],
        "instance_groups": [{"instance_group_name": "homogeneousCluster", "instance_type": instance_type,
                             "hosts": [CURRENT_HOST]}],
        "network_interface_name": NETWORK_INTERFACE,
    }


def training_env(opt_ml: Path, hyperparameters: dict[str, str], inputs: dict[str, dict], resources: dict,
                 job_name: str) -> dict[str, str]:
    """The variables the container's entry point sees beyond the process's own: the image's ENV, the
    platform's (``TRAINING_JOB_NAME``) and the toolkit's (``TrainingEnv`` in ``to_env_vars``), with
    ``/opt/ml`` being ``opt_ml``. ``hyperparameters`` are the request's (strings), ``inputs`` and
    ``resources`` what ``input_data_config`` and ``resource_config`` wrote."""
    framework, user = split_hyperparameters(decode_hyperparameters(hyperparameters))
    program = framework.get(USER_PROGRAM_PARAM)
    input_dir, output_dir = opt_ml / "input", opt_ml / "output"
    channels = {name: str(input_dir / "data" / name) for name in inputs}
    log_level = framework.get(LOG_LEVEL_PARAM, logging.INFO)
    env = {
        "additional_framework_parameters": {k: v for k, v in framework.items() if k not in SAGEMAKER_HYPERPARAMETERS},
        "channel_input_dirs": channels,
        "current_host": resources["current_host"],
        "framework_module": TRAINING_MODULE,
        "hosts": resources["hosts"],
        "hyperparameters": user,
        "input_config_dir": str(input_dir / "config"),
        "input_data_config": inputs,
        "input_dir": str(input_dir),
        "is_master": resources["current_host"] == resources["hosts"][0],
        "job_name": job_name,
        "log_level": log_level,
        "master_hostname": resources["hosts"][0],
        "model_dir": str(opt_ml / "model"),
        "module_dir": str(framework.get(SUBMIT_DIR_PARAM, opt_ml / "code")),
        "module_name": module_name(str(program)),
        "network_interface_name": resources.get("network_interface_name", "eth0"),
        "num_cpus": os.cpu_count() or 1,
        "num_gpus": 0,
        "output_data_dir": str(output_dir / "data"),
        "output_dir": str(output_dir),
        "output_intermediate_dir": str(output_dir / "intermediate"),
        "resource_config": resources,
        "user_entry_point": program,
    }
    variables = {
        "hosts": env["hosts"],
        "network_interface_name": env["network_interface_name"],
        "hps": user,
        "user_entry_point": program,
        "framework_params": env["additional_framework_parameters"],
        "resource_config": resources,
        "input_data_config": inputs,
        "output_data_dir": env["output_data_dir"],
        "channels": sorted(channels),
        "current_host": env["current_host"],
        "module_name": env["module_name"],
        "log_level": log_level,
        "framework_module": TRAINING_MODULE,
        "input_dir": env["input_dir"],
        "input_config_dir": env["input_config_dir"],
        "output_dir": env["output_dir"],
        "num_cpus": env["num_cpus"],
        "num_gpus": env["num_gpus"],
        "model_dir": env["model_dir"],
        "module_dir": env["module_dir"],
        "training_env": env,
        "user_args": to_cmd_args(user),
        "output_intermediate_dir": env["output_intermediate_dir"],
        **{f"channel_{name}": path for name, path in channels.items()},
        **{f"hp_{key}": value for key, value in user.items()},
    }
    config_dir = input_dir / "config"
    return {
        # The image's ENV, its /opt/ml paths in the sandbox.
        "SM_INPUT": str(input_dir),
        "SM_INPUT_TRAINING_CONFIG_FILE": str(config_dir / "hyperparameters.json"),
        "SM_INPUT_DATA_CONFIG_FILE": str(config_dir / "inputdataconfig.json"),
        "SM_CHECKPOINT_CONFIG_FILE": str(config_dir / "checkpointconfig.json"),
        "SAGEMAKER_TRAINING_MODULE": TRAINING_MODULE,
        "SAGEMAKER_SERVING_MODULE": SERVING_MODULE,
        "SAGEMAKER_BASE_DIR": str(opt_ml),
        # The platform's and what TrainingEnv writes to os.environ before it runs the script.
        "TRAINING_JOB_NAME": job_name,
        "SAGEMAKER_JOB_NAME": _decode(framework.get(JOB_NAME_PARAM, "")),
        "CURRENT_HOST": env["current_host"],
        "SAGEMAKER_REGION": _decode(framework.get(REGION_NAME_PARAM, LOCAL_REGION)),
        **to_env_vars(variables),
    }
