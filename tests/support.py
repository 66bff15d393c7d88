"""Helpers the tests share: small training channels and a CreateTrainingJob request for them."""

from __future__ import annotations

import socket

from churn_ml import lake

FEATURES = ["f1", "f2", "f3"]


def write_channel(root, name, rng, rows=400):
    x = rng.normal(size=(rows, 3))
    y = (x[:, 0] + 0.5 * rng.normal(size=rows) > 0.8).astype(int)
    path = lake.local_path(f"s3://churn-lake/ts/{name}/part-00000.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["churned_30d," + ",".join(FEATURES)] + [f"{a}," + ",".join(f"{v:.5f}" for v in row) for a, row in zip(y, x)]
    path.write_text("\n".join(lines) + "\n")


def training_request(**hyperparameters):
    hps = {"num_round": "20", "max_depth": "3", "early_stopping_rounds": "0", **hyperparameters}
    return {
        "TrainingJobName": "test-train",
        "AlgorithmSpecification": {
            "TrainingImage": "xgboost:1.7-1",
            "TrainingInputMode": "File",
            "MetricDefinitions": [
                {"Name": "holdout:auc", "Regex": r"^holdout:auc: ([0-9.]+)"},
                {"Name": "validation:auc", "Regex": r"validation-auc:([0-9.]+)"},
            ],
        },
        "HyperParameters": {
            **hps,
            "sagemaker_program": "churn_train.py",
            "sagemaker_submit_directory": "s3://churn-artifacts/sagemaker/sourcedir.tar.gz",
        },
        "InputDataConfig": [
            {"ChannelName": c, "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://churn-lake/ts/{c}/"}}}
            for c in ("train", "validation", "holdout")
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://churn-lake/models/test/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "RoleArn": "arn:aws:iam::000000000000:role/x",
        "StoppingCondition": {"MaxRuntimeInSeconds": 300},
    }


def model_request(name: str, model_data_url: str) -> dict:
    """CreateModel for the framework container with this repository's inference handlers."""
    return {
        "ModelName": name,
        "ExecutionRoleArn": "arn:aws:iam::000000000000:role/x",
        "PrimaryContainer": {
            "Image": "xgboost:1.7-1",
            "ModelDataUrl": model_data_url,
            "Environment": {
                "SAGEMAKER_PROGRAM": "inference.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": "s3://churn-artifacts/sagemaker/sourcedir.tar.gz",
            },
        },
    }


# The training DAG's DeploymentConfig shape: a canary of one instance, then the rest; rollback alarms.
BLUE_GREEN_CANARY = {
    "BlueGreenUpdatePolicy": {
        "TrafficRoutingConfiguration": {"Type": "CANARY", "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
                                        "WaitIntervalInSeconds": 600},
        "TerminationWaitInSeconds": 600,
        "MaximumExecutionTimeoutInSeconds": 3600,
    },
    "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "churn-xgboost-invocation-errors"}]},
}


def free_port() -> int:
    """A port nothing listens on at the moment, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
