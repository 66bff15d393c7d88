"""register_model's rerun with the orchestration role's lake grant, as S3 enforces it (issue 23).

The local target checks no IAM, and tests/infra/test_lake_access.py compares the template's policies with
``LAKE_ACCESS``, not with what S3 makes of them. Here moto enforces IAM: a user holds exactly the MWAA
role's statements on the lake bucket (from infra/cloudformation/churn.yaml, resolved for a bucket
``churn-lake``) and SageMaker at large (the registry's calls are not what is checked here), and runs
``registry.register`` again for a training job it registered before, as a retried ``register_model``
does. S3 authorizes a HEAD as s3:GetObject: with PutObject alone on ``registry/`` it answers 403 for the
card that exists, and the S3 hook re-raises it; the last test shows that on the grant as it was.
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from cfn_template import as_list, load, role_statements
from moto import mock_aws
from moto.core.authorization import enable_iam_authentication

from churn_ml import dag_support as ds
from local_aws.template import resolve

BUCKET = "churn-lake"
JOB = "churn-xgb-20260706-aaaa"
ENV = {
    "ML_TARGET": "aws",
    "CHURN_LAKE_BUCKET": BUCKET,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AIRFLOW_CONN_AWS_DEFAULT": '{"conn_type": "aws"}',
    "CHURN_MODEL_PACKAGE_GROUP": "churn-xgboost",
}


def mwaa_lake_statements(without_read_of: str | None = None) -> list[dict]:
    """The MWAA role's statements on the lake bucket, resolved; ``without_read_of`` drops that prefix from
    its s3:GetObject statement (the grant before this fix, for ``registry/``)."""
    statements = []
    for statement in role_statements(load(), "MwaaExecutionRole"):
        if "LakeBucket" not in str(statement["Resource"]):
            continue
        resolved = resolve({k: v for k, v in statement.items() if k != "Sid"},
                           {"LakeBucket.Arn": f"arn:aws:s3:::{BUCKET}"})
        if without_read_of and as_list(resolved["Action"]) == ["s3:GetObject"]:
            resolved["Resource"] = [r for r in as_list(resolved["Resource"]) if not r.endswith(f"/{without_read_of}*")]
        statements.append(resolved)
    return statements


def register():
    from churn_ml import registry

    return registry.register(
        data_date="2026-07-06", tuning_job_name="hpo-a", image_uri="xgboost:1.7-1", training_job_name=JOB,
        model_data_url=f"s3://{BUCKET}/{ds.MODELS}{JOB}/output/model.tar.gz", approval="Approved", reason="ok",
        metrics={"holdout:auc": 0.8}, card={"features": ["f1"], "metrics": {"holdout:auc": 0.8}}, card_plot=None,
        evaluation_uri=f"s3://{BUCKET}/{ds.MODELS}{JOB}/output/evaluation.json",
    )


@pytest.fixture
def registered(monkeypatch):
    """A version registered (with its card) by a first attempt, and the keys of a user with the MWAA role's
    lake statements; yields a function that rebinds the credentials to a user with the given statements."""
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        first = register()
        iam = boto3.client("iam")

        def as_user(statements: list[dict]) -> None:
            name = f"mwaa-{len(iam.list_users()['Users'])}"
            iam.create_user(UserName=name)
            policy = {"Version": "2012-10-17", "Statement": [
                *statements, {"Effect": "Allow", "Action": "sagemaker:*", "Resource": "*"}]}
            iam.put_user_policy(UserName=name, PolicyName="churn-dags", PolicyDocument=json.dumps(policy))
            key = iam.create_access_key(UserName=name)["AccessKey"]
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])

        yield first, as_user


def card_key(first: dict) -> str:
    from churn_ml import registry

    return f"{registry.version_prefix('churn-xgboost', first['ModelPackageVersion'])}/card.json".split(f"{BUCKET}/", 1)[1]


def test_a_rerun_finds_its_version_and_its_card_with_the_roles_grant(registered):
    first, as_user = registered
    as_user(mwaa_lake_statements())
    with enable_iam_authentication():
        again = register()
    assert again["ModelPackageVersion"] == first["ModelPackageVersion"]


def test_a_rerun_whose_first_attempt_died_before_the_card_writes_it_with_the_roles_grant(registered):
    first, as_user = registered
    boto3.client("s3").delete_object(Bucket=BUCKET, Key=card_key(first))
    as_user(mwaa_lake_statements())
    with enable_iam_authentication():
        register()
    card = json.loads(boto3.client("s3").get_object(Bucket=BUCKET, Key=card_key(first))["Body"].read())
    assert card["training_job_name"] == JOB and card["version"] == first["ModelPackageVersion"]


def test_without_read_on_the_registry_the_rerun_is_refused_as_it_was_on_aws(registered):
    """The grant before the fix (PutObject only under registry/): the HEAD of the existing card is a 403."""
    _, as_user = registered
    as_user(mwaa_lake_statements(without_read_of=ds.REGISTRY))
    with enable_iam_authentication(), pytest.raises(ClientError, match=r"\((AccessDenied|403)\) when calling the HeadObject"):
        register()
    assert "r" in ds.LAKE_ACCESS["churn_training"]["register_model"][ds.MWAA][ds.REGISTRY]
