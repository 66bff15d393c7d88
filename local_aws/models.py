"""Local SageMaker models: CreateModel / DescribeModel / DeleteModel, and unpacking a model for its container.

A model is the container definition (image, ``ModelDataUrl``, environment with
``SAGEMAKER_PROGRAM`` and ``SAGEMAKER_SUBMIT_DIRECTORY``) kept in the control plane; batch
transform and endpoints both start their "container" from it.
"""

from __future__ import annotations

import logging
import shutil
import tarfile
from pathlib import Path

from churn_ml import naming
from local_aws import lake_files, sandbox
from local_aws.common import LocalJobError, arn, control_plane, create_once, created, path_segment


def validate_model(model: dict) -> None:
    naming.check_name(model.get("ModelName"), "sagemaker", "CreateModel", "ModelName")
    container = model.get("PrimaryContainer") or {}
    for key in ("Image", "ModelDataUrl"):
        if key not in container:
            raise ValueError(f"model request is missing PrimaryContainer.{key}")
    env = container.get("Environment", {})
    for key in ("SAGEMAKER_PROGRAM", "SAGEMAKER_SUBMIT_DIRECTORY"):
        if key not in env:
            raise ValueError(f"model PrimaryContainer.Environment needs {key} for the framework container")
    # What becomes a path here: the handlers' file inside the bundle, the archives in the lake.
    sandbox.check_program(env["SAGEMAKER_PROGRAM"], "PrimaryContainer.Environment.SAGEMAKER_PROGRAM")
    sandbox.check_lake_uri(env["SAGEMAKER_SUBMIT_DIRECTORY"], "PrimaryContainer.Environment.SAGEMAKER_SUBMIT_DIRECTORY")
    sandbox.check_lake_uri(container["ModelDataUrl"], "PrimaryContainer.ModelDataUrl")


def create_model(model: dict, log: logging.Logger) -> dict:
    """CreateModel: keep the model definition in the local control plane (idempotent for the same request)."""
    validate_model(model)
    create_once("models", model["ModelName"], model, log)
    return describe_model(model["ModelName"])


def describe_model(name: str) -> dict:
    state = created("models", name)
    if state is None:
        raise LocalJobError(f"Could not find model {name}: create it first (the request's 'Model' part)")
    model = state["request"]
    return {
        "ModelName": name,
        "ModelArn": arn("sagemaker", "model", name.lower()),
        "PrimaryContainer": model["PrimaryContainer"],
        "ExecutionRoleArn": model.get("ExecutionRoleArn"),
        "CreationTime": state["CreationTime"],
    }


def delete_model(name: str, log: logging.Logger) -> None:
    """DeleteModel: forget the model definition. Transform jobs and endpoints started from it keep
    running (they unpacked it), as on SageMaker."""
    path = control_plane("sagemaker", "models") / f"{path_segment(name)}.json"
    if not path.exists():
        raise LocalJobError(f"Could not find model {name}.")
    path.unlink()
    log.info("deleted model %s", name)


def unpack_model(model: dict, folder: Path) -> tuple[Path, Path, dict]:
    """Extract the model artifact to ``folder/model`` and the source bundle to ``folder/code``, as
    the framework container does; returns (model dir, code dir, container environment)."""
    container = model["PrimaryContainer"]
    env = container.get("Environment", {})
    model_dir, code_dir = folder / "model", folder / "code"
    for path in (model_dir, code_dir):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    for uri, dest in ((container["ModelDataUrl"], model_dir), (env["SAGEMAKER_SUBMIT_DIRECTORY"], code_dir)):
        archive = lake_files.local_path(uri)
        if not archive.exists():
            raise LocalJobError(f"{uri} not found (local file {archive})")
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(dest, filter="data")
        except tarfile.TarError as err:
            raise LocalJobError(f"{uri} is not a readable tar.gz archive: {err}") from err
    return model_dir, code_dir, env
