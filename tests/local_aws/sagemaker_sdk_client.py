"""The SageMaker Python SDK (2.x, requirements-sdk.txt, in .venv-sdk) as a client of the local target.

Run by tests/local_aws/test_sagemaker_sdk.py under .venv-sdk's Python, never imported by the project
(the SDK is not on MWAA and its pins conflict with Airflow's). It prints its result as JSON on a line that starts with ``RESULT``.

``image-uris REGION=ACCOUNT...``: the SDK's XGBoost 1.7-1 image for each region, and whether its
registry account is the one given (the template's SageMakerXGBoostImage map).

``train``: an ``Estimator`` of the project's image and ``churn_train.py`` from ``SOURCE_DIR``, uploaded by
the SDK itself, on managed spot with a checkpoint URI, ``fit`` on the lake's ``TRAINING_SET``, then
``deploy`` with inference.py of the same bundle and a ``Predictor`` call. The endpoints come from the
environment as botocore reads them (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``), so
every client the SDK builds (SageMaker, S3, Logs, STS, the Runtime) talks to the local target.
"""

from __future__ import annotations

import json
import os
import sys

RESULT = "sdk-client-result: "


def image_uris(pairs: list[str]) -> dict:
    from sagemaker import image_uris as uris

    found = {}
    for pair in pairs:
        region, _, account = pair.partition("=")
        uri = uris.retrieve("xgboost", region, "1.7-1")
        found[region] = {"uri": uri, "account_matches": uri.split(".", 1)[0] == account}
    return found


def train() -> dict:
    import boto3
    from sagemaker.deserializers import CSVDeserializer
    from sagemaker.estimator import Estimator
    from sagemaker.inputs import TrainingInput
    from sagemaker.serializers import CSVSerializer

    import sagemaker

    env = os.environ
    region = env["AWS_DEFAULT_REGION"]
    # TelemetryOptOut: the SDK would otherwise report each call to a bucket of AWS's, off this machine.
    config = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
    session = sagemaker.Session(boto_session=boto3.Session(region_name=region), default_bucket=env["BUCKET"],
                                sagemaker_config=config)
    image = sagemaker.image_uris.retrieve("xgboost", region, "1.7-1")
    prefix = f"s3://{env['BUCKET']}/{env['PREFIX']}"
    estimator = Estimator(
        image_uri=image,
        role=env["ROLE_ARN"],
        instance_count=1,
        instance_type="ml.m5.large",
        entry_point="churn_train.py",
        source_dir=env["SOURCE_DIR"],
        code_location=f"{prefix}/code",
        output_path=f"{prefix}/models",
        hyperparameters={"num_round": 30, "max_depth": 3, "eta": 0.3, "early_stopping_rounds": 0, "checkpoint_every": 10},
        use_spot_instances=True,
        max_run=600,
        max_wait=1200,
        checkpoint_s3_uri=f"{prefix}/checkpoints",
        sagemaker_session=session,
    )
    channels = {
        name: TrainingInput(f"{env['TRAINING_SET']}/{name}/", content_type="text/csv")
        for name in ("train", "validation", "holdout")
    }
    estimator.fit(channels, job_name=env["JOB_NAME"], wait=True, logs=env["SDK_LOGS"])
    described = estimator.latest_training_job.describe()
    bucket, key = estimator.model_data.removeprefix("s3://").split("/", 1)
    artifact_bytes = session.boto_session.client("s3").head_object(Bucket=bucket, Key=key)["ContentLength"]
    predictor = estimator.deploy(
        initial_instance_count=1,
        instance_type="ml.m5.large",
        endpoint_name=env["ENDPOINT_NAME"],
        # The XGBoost container's serving in script mode: the same bundle's inference.py.
        env={"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": estimator.uploaded_code.s3_prefix},
        serializer=CSVSerializer(),
        deserializer=CSVDeserializer(),
    )
    try:
        scores = predictor.predict([[2.0, 0.0, 0.0], [-2.0, 0.0, 0.0]])
    finally:
        deleted = _delete(predictor)
    return {
        "image_uri": image,
        "status": described["TrainingJobStatus"],
        "hyperparameters": described["HyperParameters"],
        "spot": described["EnableManagedSpotTraining"],
        "checkpoint": described.get("CheckpointConfig", {}),
        "stopping": described["StoppingCondition"],
        "source": estimator.uploaded_code.s3_prefix,
        "model_data": estimator.model_data,
        "artifact_bytes": artifact_bytes,
        "endpoint": predictor.endpoint_name,
        "scores": scores,
        "deleted": deleted,
    }


def _delete(predictor) -> bool:
    """Delete the endpoint, its config and model, as a notebook ends: its processes stop with it. A failure is
    said on stderr and in the result (the test is about training and predicting, not about deleting)."""
    from botocore.exceptions import ClientError

    try:
        predictor.delete_model()  # first: the SDK finds the model through the endpoint config, which delete_endpoint deletes
        predictor.delete_endpoint()
    except ClientError as err:
        print(f"could not delete endpoint {predictor.endpoint_name}: {err}", file=sys.stderr)
        return False
    return True


def main(argv: list[str]) -> int:
    command, rest = argv[0], argv[1:]
    result = image_uris(rest) if command == "image-uris" else train() if command == "train" else None
    if result is None:
        print(f"unknown command {command!r}: expected image-uris or train", file=sys.stderr)
        return 2
    print(f"\n{RESULT}{json.dumps(result)}")  # on a line of its own: the SDK prints progress dots without one
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
