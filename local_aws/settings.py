"""The local target's own settings: what its resources are called, and how the emulator behaves.

``deployment_environment()`` is the local counterpart of what infra/deploy_mwaa.py sets on AWS from
the stack's outputs: the EMR Serverless application, the roles, the XGBoost image, the alerts topic
and the data key, as the control plane creates them (``local_aws.control_plane.serve``). The plugins
read them from the environment on both targets (``churn_ml.settings``), with no default of their own,
so a deployment that forgot one fails with the variable's name instead of using a local value.
scripts/env.sh exports them (``python -m local_aws.settings``), the test suite's conftest puts them in
its environment, and docker-compose.yaml sets the same values (a test compares them).
"""

from __future__ import annotations

import os
import shlex
import sys

LOCAL_ACCOUNT = "000000000000"
LOCAL_REGION = "us-east-1"  # the region of the local AWS connection (scripts/env.sh)
EMR_APPLICATION_ID = "00local0000000000"
DATA_KEY_ALIAS = "alias/churn-data"  # the template's DataKey, as the control plane creates it
XGBOOST_IMAGE_URI = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"


def deployment_environment() -> dict[str, str]:
    """The settings the local stack's resources give the DAGs (the aws target's come from the stack outputs)."""
    return {
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
