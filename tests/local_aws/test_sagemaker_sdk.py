"""The SageMaker Python SDK as a real client of the local target (issue 25).

The SDK (requirements-sdk.txt) lives in .venv-sdk, which scripts/bootstrap.sh creates: its pins conflict
with Airflow's, and MWAA never has it. Each test runs tests/local_aws/sagemaker_sdk_client.py under that
venv's Python against the session's control plane, with the lake's key and the endpoints in the
environment, as a user's notebook would be set up.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest

from churn_ml import settings as cfg
from local_aws import control_plane
from local_aws.common import credentials
from support import FEATURES

REPO = Path(__file__).resolve().parents[2]
SDK_PYTHON = REPO / ".venv-sdk" / "bin" / "python"
CLIENT = Path(__file__).with_name("sagemaker_sdk_client.py")
RESULT = "sdk-client-result: "  # sagemaker_sdk_client.RESULT (that module imports the SDK's packages)
pytestmark = pytest.mark.e2e


def run_client(*args: str, env: dict | None = None, timeout: float = 60) -> dict:
    if not SDK_PYTHON.exists():
        pytest.fail(f"{SDK_PYTHON} is missing: run scripts/bootstrap.sh, which creates it from requirements-sdk.txt")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON"))}
    done = subprocess.run([str(SDK_PYTHON), str(CLIENT), *args], env={**base, "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
                          **(env or {})}, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert done.returncode == 0, f"the SDK client failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}"
    result = [line.removeprefix(RESULT) for line in done.stdout.splitlines() if line.startswith(RESULT)]
    assert len(result) == 1, f"the SDK client printed no result line:\n{done.stdout[-4000:]}"
    return {"result": json.loads(result[0]), "stdout": done.stdout, "stderr": done.stderr}


def test_the_sdks_xgboost_images_are_the_templates_for_every_region():
    """The template's SageMakerXGBoostImage map (the registry account the SageMaker role may pull from)
    and the project's image are the SDK's image_uris for XGBoost 1.7-1, region by region."""
    from local_aws.settings import XGBOOST_IMAGE_URI
    from local_aws.template import load

    mapping = load()["Mappings"]["SageMakerXGBoostImage"]
    found = run_client("image-uris", *(f"{region}={entry['Account']}" for region, entry in mapping.items()))["result"]
    wrong = {region: entry["uri"] for region, entry in found.items() if not entry["account_matches"]}
    assert not wrong, f"the template's SageMakerXGBoostImage accounts differ from the SDK's image URIs: {wrong}"
    assert set(found) == set(mapping)
    assert found["us-east-1"]["uri"] == XGBOOST_IMAGE_URI


def _put_training_set(s3, bucket: str, prefix: str) -> None:
    s3.create_bucket(Bucket=bucket)  # the session's lake starts empty; on AWS the template creates it
    rng = np.random.default_rng(5)
    for split in ("train", "validation", "holdout"):
        x = rng.normal(size=(300, 3))
        y = (x[:, 0] + 0.5 * rng.normal(size=300) > 0.8).astype(int)
        rows = ["churned_30d," + ",".join(FEATURES)] + [f"{a}," + ",".join(f"{v:.5f}" for v in row) for a, row in zip(y, x)]
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{split}/part-00000.csv", Body=("\n".join(rows) + "\n").encode())


def test_an_estimator_trains_on_managed_spot_and_its_endpoint_predicts(lake_root, aws_local):
    """lake_root: a lake of the session's key (tests/conftest.py), the key the control plane takes."""
    connection = json.loads(os.environ["AIRFLOW_CONN_AWS_DEFAULT"])  # aws_local's: the session's control plane
    key = credentials()
    bucket, run = cfg.settings.lake_bucket, uuid.uuid4().hex[:8]
    prefix = f"sdk/{run}"
    _put_training_set(control_plane.client("s3", aws_local), bucket, f"{prefix}/training_set")
    job_name, endpoint = f"sdk-train-{run}", f"sdk-endpoint-{run}"
    env = {
        # The lake's key (a developer's own, as the Airflow connection's is the MWAA role's), as credentials() reads it.
        "AWS_ACCESS_KEY_ID": key.access_key_id, "AWS_SECRET_ACCESS_KEY": key.secret_access_key,
        "AWS_DEFAULT_REGION": connection["extra"]["region_name"],
        "AWS_ENDPOINT_URL": aws_local,
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": connection["extra"]["service_config"]["sagemaker-runtime"]["endpoint_url"],
        "BUCKET": bucket, "PREFIX": prefix, "TRAINING_SET": f"s3://{bucket}/{prefix}/training_set",
        "ROLE_ARN": cfg.settings.sagemaker_role_arn, "SOURCE_DIR": str(REPO / "include" / "sagemaker"),
        "JOB_NAME": job_name, "ENDPOINT_NAME": endpoint,
        # fit(logs="All"): the SDK prints the job's secondary statuses and its stream in CloudWatch Logs
        # (/aws/sagemaker/TrainingJobs, local_aws/job_logs.py) as it follows the job.
        "SDK_LOGS": "All",
    }
    done = run_client("train", env=env, timeout=420)
    result = done["result"]
    shown = done["stdout"].splitlines()
    # The job's own lines, each once, as the SDK shows them from the log stream, then its ending.
    assert sum(line.startswith("[0]\tvalidation-logloss:") for line in shown) == 1, done["stdout"][-4000:]
    assert sum(line.startswith("holdout:auc: ") for line in shown) == 1
    assert any("Completed - Training job completed" in line for line in shown), done["stdout"][-4000:]
    assert result["image_uri"] == cfg.settings.xgboost_image_uri
    assert result["status"] == "Completed"
    # What the SDK sent and the runner decoded: its JSON-encoded hyperparameters and its own upload of the bundle.
    hps = result["hyperparameters"]
    assert hps["sagemaker_program"] == '"churn_train.py"' and hps["num_round"] == "30"
    source = json.loads(hps["sagemaker_submit_directory"])
    assert source == result["source"] and source.startswith(f"s3://{bucket}/{prefix}/code/{job_name}/")
    assert result["spot"] is True and result["stopping"] == {"MaxRuntimeInSeconds": 600, "MaxWaitTimeInSeconds": 1200}
    assert result["checkpoint"]["S3Uri"] == f"s3://{bucket}/{prefix}/checkpoints"
    assert result["model_data"] == f"s3://{bucket}/{prefix}/models/{job_name}/output/model.tar.gz"
    assert result["artifact_bytes"] > 0
    # Row 1 is far in the churning direction of feature 1, row 2 far from it.
    (high,), (low,) = result["scores"]
    assert 0.0 <= float(low) < float(high) <= 1.0
    assert result["endpoint"] == endpoint
    assert result["deleted"], f"the SDK could not delete the endpoint and model:\n{done['stderr'][-2000:]}"
