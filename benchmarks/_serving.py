"""Shared by the serving benchmarks: the published model, scoring rows, and a local endpoint for them.

Everything runs in a temporary lake with its own runtime port, so a benchmark never touches the
lake or the endpoint `make run` left behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for sub in ("include/sagemaker", "include", "plugins"):
    sys.path.insert(0, str(REPO / sub))

LOG = logging.getLogger("benchmark")
ENDPOINT = "churn-bench"


def source_lake() -> Path:
    return Path(os.environ.get("LAKE_ROOT", REPO / ".lake")).resolve()


def published_model(lake: Path) -> Path:
    """The model.tar.gz `make run` published (the production pointer, dag_support.MODEL_POINTER_KEY)."""
    import json

    from churn_ml.dag_support import MODEL_POINTER_KEY

    pointer = lake / "churn-lake" / MODEL_POINTER_KEY
    if not pointer.exists():
        raise SystemExit(f"no published model at {pointer}: run `make run` first")
    url = json.loads(pointer.read_text())["model_data_url"]
    return lake / url.removeprefix("s3://")


def scoring_rows(lake: Path, rows: int) -> list[str]:
    """``customer_id,<features>`` lines from the sample's scoring input, repeated up to ``rows``."""
    files = sorted((lake / "churn-lake/scoring_input").glob("dt=*/*.csv"))
    if not files:
        raise SystemExit("no scoring input: run `make run` first")
    base = [line for line in files[-1].read_text().splitlines() if line.strip()]
    return [f"{base[i % len(base)].split(',', 1)[0]}-{i}," + base[i % len(base)].split(",", 1)[1] for i in range(rows)]


def booster(model_tar: Path):
    import xgboost as xgb

    with tarfile.open(model_tar) as tar:
        model = xgb.Booster()
        model.load_model(bytearray(tar.extractfile("xgboost-model.json").read()))
    return model


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def temporary_lake(model_tar: Path):
    """A fresh LAKE_ROOT holding the model at s3://churn-lake/models/bench/model.tar.gz."""
    with tempfile.TemporaryDirectory(prefix="churn-bench-") as folder:
        saved = {k: os.environ.get(k) for k in ("LAKE_ROOT", "CHURN_LOCAL_RUNTIME_PORT", "ML_TARGET")}
        os.environ.update(LAKE_ROOT=folder, CHURN_LOCAL_RUNTIME_PORT=str(free_port()), ML_TARGET="local")
        target = Path(folder) / "churn-lake/models/bench/model.tar.gz"
        target.parent.mkdir(parents=True)
        shutil.copy(model_tar, target)
        try:
            yield Path(folder), "s3://churn-lake/models/bench/model.tar.gz"
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def model_request(name: str, model_data_url: str) -> dict:
    """A CreateModel request for the code version of include/ deployed into the current lake (``code_deploy``)."""
    from churn_ml import artifacts
    from local_aws import code_deploy

    code = artifacts.code_uri(code_deploy.deploy()).rstrip("/")
    return {
        "ModelName": name,
        "PrimaryContainer": {
            "Image": "xgboost:1.7-1",
            "ModelDataUrl": model_data_url,
            "Environment": {"SAGEMAKER_PROGRAM": "inference.py",
                            "SAGEMAKER_SUBMIT_DIRECTORY": f"{code}/sagemaker/sourcedir.tar.gz"},
        },
    }


@contextlib.contextmanager
def local_endpoint(model_tar: Path, instances: int = 2):
    """Deploy the model to a local endpoint in a temporary lake; yields (runtime URL, endpoint name)."""
    from local_aws import endpoints

    with temporary_lake(model_tar) as (_, uri):
        request = {
            "Model": model_request("bench-model", uri),
            "EndpointConfig": {"EndpointConfigName": "bench-config", "ProductionVariants": [
                {"VariantName": "primary", "ModelName": "bench-model", "InitialInstanceCount": instances}]},
            "Endpoint": {"EndpointName": ENDPOINT, "EndpointConfigName": "bench-config"},
        }
        os.environ["CHURN_LOCAL_ENDPOINT_MAX_INSTANCES"] = str(instances)
        endpoints.deploy(request, LOG)
        try:
            yield endpoints.runtime_url(), ENDPOINT
        finally:
            endpoints.main(["delete", "--all"])
