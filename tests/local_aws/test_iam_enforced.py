"""The control plane checks each S3 request of a role against the role's policies (local_aws.iam), as S3 does.

A task signs as MWAA's execution role (scripts/env.sh's connection): here what every job-starting task
does with the code version (``artifacts.mark_used``: a listing of the version's objects under ``code/``,
allowed by the role's conditional ListBucket, and copies in place, allowed by its copy-only PutObject)
runs with that role's key against the session's control plane and succeeds; the role may not write raw
data; then the role loses one grant in the control plane's IAM (the listing of ``code/``) and the same
call fails with S3's AccessDenied, at once, as it would on AWS. The lake's own key is not restricted.
"""

from __future__ import annotations

import json
import os

import boto3
import pytest
from botocore.exceptions import ClientError

from churn_ml import artifacts
from local_aws import iam


def _client(service: str, url: str, connection: dict):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id=connection["login"],
                        aws_secret_access_key=connection["password"])


def test_a_task_runs_with_its_roles_grants_and_fails_with_one_grant_fewer(aws_local, monkeypatch):
    url = aws_local
    admin = json.loads(os.environ["AIRFLOW_CONN_AWS_DEFAULT"])  # the lake's own key (tests/conftest.py)
    as_mwaa = {**admin, **dict(zip(("login", "password"), iam.role_credentials(admin["password"], iam.MWAA_ROLE)))}
    admin = _client("iam", url, admin)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(as_mwaa))

    artifacts.clear_cache()
    version = artifacts.current_version()  # what the session's control plane deployed (tests/conftest.py)
    artifacts.mark_used(version)

    # The role may not write raw data: the control plane says so in S3's words, without a retry.
    s3 = _client("s3", url, as_mwaa)
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket="churn-lake", Key="raw/customers/dt=2026-07-06/x.csv", Body=b"id\n1\n")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert refused.value.response["ResponseMetadata"]["RetryAttempts"] == 0
    assert "churn-mwaa" in str(refused.value) and "s3:PutObject" in str(refused.value)

    original = admin.get_role_policy(RoleName=iam.MWAA_ROLE, PolicyName="lake")["PolicyDocument"]
    document = json.loads(original) if isinstance(original, str) else original
    reduced = {**document, "Statement": [st for st in document["Statement"] if st.get("Sid") != "CodeList"]}
    assert len(reduced["Statement"]) == len(document["Statement"]) - 1
    try:
        admin.put_role_policy(RoleName=iam.MWAA_ROLE, PolicyName="lake", PolicyDocument=json.dumps(reduced))
        with pytest.raises(ClientError, match=r"\(AccessDenied\) when calling the ListObjectsV2 operation.*s3:ListBucket"):
            artifacts.mark_used(version)
    finally:
        admin.put_role_policy(RoleName=iam.MWAA_ROLE, PolicyName="lake", PolicyDocument=json.dumps(document))
    artifacts.mark_used(version)  # the grant is back
