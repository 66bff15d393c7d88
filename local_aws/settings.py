"""The local target's own settings: what its resources are called, and how the emulator behaves.

Nothing in plugins/ (which ships to MWAA) reads these; the emulator's knobs are here, read from the
environment each time they are asked for:

| variable | default | meaning |
|---|---|---|
| LAKE_ROOT | <repo>/.lake | the lake folder: every bucket of the control plane's S3 is a folder of it (`s3://b/k` is the file `LAKE_ROOT/b/k`), and the control plane's state is under its `.control-plane/` |
| CHURN_INCLUDE_DIR | <repo>/include | the include/ folder `python -m local_aws.code_deploy` deploys |
| CHURN_LOCAL_SPARK_MEMORY | 4g | Spark driver memory of the local Spark runner |
| CHURN_LOCAL_RUNTIME_PORT | 18080 | port of the SageMaker Runtime router on 127.0.0.1 |
| CHURN_LOCAL_AWS_PORT | 4566 | port of the control plane (AWS APIs, Kinesis included) on 127.0.0.1 (local_aws.control_plane) |
| CHURN_LOCAL_BIND_HOST | 127.0.0.1 | the address the control plane and the endpoints' router listen on (docker-compose's control-plane container: 0.0.0.0, its network only) |
| CHURN_LOCAL_SERVER_NAMES | - | host names, besides 127.0.0.1 and localhost, that the control plane and the router answer to (comma list; docker-compose's: `control-plane`); any other Host header is refused (DNS rebinding) |
| CHURN_LOCAL_KEY_FILE | - | a credentials file whose key a new lake gets instead of a random one (`<lake>/.control-plane/credentials`, local_aws.common.credentials); the test suite sets one for all its lakes |
| CHURN_LOCAL_BAKE_SECONDS | 5 | seconds each traffic step bakes under the alarms (the request's WaitIntervalInSeconds is meant for AWS) |
| CHURN_LOCAL_ENDPOINT_MAX_INSTANCES | 2 | cap on container processes per variant |
| CHURN_LOCAL_CAPTURE_FLUSH_SECONDS | 5 | how often the endpoints' router writes the data capture it buffered (a new file each time, and at shutdown) |
| CHURN_LOCAL_SPOT_INTERRUPTIONS | - | simulated spot interruptions of training jobs (not tuning trials): comma list of rounds, `random`, and `<round>:kill` for SIGKILL without notice, e.g. `40,random` |
| CHURN_LOCAL_SPOT_NOTICE_SECONDS | 120 | seconds between SIGTERM and SIGKILL of an interruption |
| CHURN_LOCAL_SPOT_RESTART_SECONDS | 2 | simulated wait for spot capacity before a restart |

``deployment_environment()`` is the local counterpart of what infra/deploy_mwaa.py sets on AWS from
the stack's outputs: the EMR Serverless application, the roles, the XGBoost image, the alerts topic
and the data key, as the control plane creates them (``local_aws.control_plane.serve``); and of what MWAA
sets in its containers itself: ``AIRFLOW_ENV_NAME``, the environment's name (the control plane creates the
template's MWAA environment under it, ``local_aws.mwaa``; the run notes are set through it). The plugins
read them from the environment on both targets (``churn_ml.settings``), with no default of their own,
so a deployment that forgot one fails with the variable's name instead of using a local value.
scripts/env.sh exports them (``python -m local_aws.settings``), the test suite's conftest puts them in
its environment, and docker-compose.yaml sets the same values (a test compares them).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

LOCAL_ACCOUNT = "000000000000"
LOCAL_REGION = "us-east-1"  # the region of the local AWS connection (scripts/env.sh)
EMR_APPLICATION_ID = "00local0000000000"
DATA_KEY_ALIAS = "alias/churn-data"  # the template's DataKey, as the control plane creates it
XGBOOST_IMAGE_URI = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
MWAA_ENVIRONMENT_NAME = "churn-local"  # the template's MWAA environment on the local target (local_aws.mwaa)
REPO_ROOT = Path(__file__).resolve().parents[1]


class LocalSettingsError(ValueError):
    """A CHURN_LOCAL_* setting is invalid; the message names it."""


def _get(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def lake_root() -> Path:
    """The lake folder: every bucket of the local S3 is a folder of it (LAKE_ROOT, default .lake/)."""
    return Path(_get("LAKE_ROOT", str(REPO_ROOT / ".lake"))).resolve()


def include_dir() -> Path:
    """The include/ folder ``python -m local_aws.code_deploy`` deploys (CHURN_INCLUDE_DIR, default the repository's)."""
    return Path(_get("CHURN_INCLUDE_DIR", str(REPO_ROOT / "include"))).resolve()


def spark_memory() -> str:
    return _get("CHURN_LOCAL_SPARK_MEMORY", "4g")


def spot_interruptions() -> str:
    return os.environ.get("CHURN_LOCAL_SPOT_INTERRUPTIONS", "").strip()


def spot_notice_seconds() -> float:
    return float(_get("CHURN_LOCAL_SPOT_NOTICE_SECONDS", "120"))


def spot_restart_seconds() -> float:
    return float(_get("CHURN_LOCAL_SPOT_RESTART_SECONDS", "2"))


def runtime_port() -> int:
    return int(_get("CHURN_LOCAL_RUNTIME_PORT", "18080"))


def bind_host() -> str:
    return _get("CHURN_LOCAL_BIND_HOST", "127.0.0.1")


def server_names() -> list[str]:
    return [name.strip().lower() for name in os.environ.get("CHURN_LOCAL_SERVER_NAMES", "").split(",") if name.strip()]


def bake_seconds() -> float:
    return float(_get("CHURN_LOCAL_BAKE_SECONDS", "5"))


def endpoint_max_instances() -> int:
    return max(1, int(_get("CHURN_LOCAL_ENDPOINT_MAX_INSTANCES", "2")))


def capture_flush_seconds() -> float:
    value = float(_get("CHURN_LOCAL_CAPTURE_FLUSH_SECONDS", "5"))
    if not value > 0:
        raise LocalSettingsError(f"CHURN_LOCAL_CAPTURE_FLUSH_SECONDS must be a number of seconds > 0, got {value!r}")
    return value


def airflow_env_name() -> str:
    """The local MWAA environment's name: ``AIRFLOW_ENV_NAME`` (what MWAA sets in its containers to the
    environment's name; scripts/env.sh exports the local one), default ``MWAA_ENVIRONMENT_NAME``."""
    return _get("AIRFLOW_ENV_NAME", MWAA_ENVIRONMENT_NAME)


def deployment_environment() -> dict[str, str]:
    """The settings the local stack's resources give the DAGs (the aws target's come from the stack outputs,
    and AIRFLOW_ENV_NAME from MWAA itself)."""
    return {
        "AIRFLOW_ENV_NAME": MWAA_ENVIRONMENT_NAME,
        "CHURN_EMR_APPLICATION_ID": EMR_APPLICATION_ID,
        "CHURN_EMR_EXECUTION_ROLE_ARN": f"arn:aws:iam::{LOCAL_ACCOUNT}:role/churn-emr-serverless",
        "CHURN_SAGEMAKER_ROLE_ARN": f"arn:aws:iam::{LOCAL_ACCOUNT}:role/churn-sagemaker",
        "CHURN_XGBOOST_IMAGE_URI": XGBOOST_IMAGE_URI,
        "CHURN_ALERTS_TOPIC_ARN": f"arn:aws:sns:{LOCAL_REGION}:{LOCAL_ACCOUNT}:churn-model-alerts",
        "CHURN_CAPTURE_KMS_KEY_ID": f"arn:aws:kms:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{DATA_KEY_ALIAS}",
    }


def export(environ: dict | None = None) -> dict:
    """Put the local deployment settings into ``environ`` (this process's by default) where unset."""
    environ = os.environ if environ is None else environ
    for name, value in deployment_environment().items():
        if not environ.get(name, "").strip():
            environ[name] = value
    return environ


def main() -> int:
    """Print ``export NAME="${NAME:-value}"`` lines for a shell to eval (scripts/env.sh)."""
    for name, value in deployment_environment().items():
        if shlex.quote(value) != value:
            raise ValueError(f"{name}={value!r} needs shell quoting; keep the local resource names plain")
        print(f'export {name}="${{{name}:-{value}}}"')
    return 0


if __name__ == "__main__":
    sys.exit(main())
