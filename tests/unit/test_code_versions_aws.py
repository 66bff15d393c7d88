"""churn_ml.artifacts on the aws target, against moto's S3: the pointer read at run time, and
mark_used refreshing only the objects the lifecycle rule would otherwise count as unused."""

from __future__ import annotations

import datetime as dt
import json

import boto3
import pytest
from moto import mock_aws

from churn_ml import artifacts
from churn_ml.settings import SettingsError

BUCKET, VERSION, OTHER = "churn-artifacts-aws", "0123456789abcdef", "fedcba9876543210"
OBJECTS = ["jobs/churn_features.py", "lib/churn.zip", "sagemaker/sourcedir.tar.gz"]


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("ML_TARGET", "aws")
    monkeypatch.setenv("CHURN_ARTIFACTS_BUCKET", BUCKET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # no credential lookup (instance metadata)
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws", "extra": {"region_name": "us-east-1"}}))
    artifacts.clear_cache()
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        for version in (VERSION, OTHER):
            for key in OBJECTS:
                client.put_object(Bucket=BUCKET, Key=f"code/{version}/{key}", Body=key.encode(),
                                  ContentType="text/x-python", ServerSideEncryption="aws:kms", SSEKMSKeyId="alias/data")
        yield client
    artifacts.clear_cache()


def _pointer(client, version=VERSION, objects=OBJECTS):
    client.put_object(Bucket=BUCKET, Key=artifacts.POINTER_KEY,
                      Body=json.dumps(artifacts.pointer(version, objects, written_by="test")).encode())


def _age(key: str, days: float) -> None:
    """Make ``key`` look last modified ``days`` ago (moto keeps the date on its key object)."""
    from moto.s3.models import s3_backends

    backend = s3_backends["123456789012"]["global"]
    backend.get_object(BUCKET, key).last_modified = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).replace(tzinfo=None)


def test_current_version_reads_the_pointer_and_fails_fast_when_it_or_its_objects_are_missing(s3):
    with pytest.raises(SettingsError, match="run infra/deploy_mwaa.py .*python -m local_aws.code_deploy"):
        artifacts.current_version()
    _pointer(s3)
    assert artifacts.current_version() == VERSION
    # Cached in the process: a new pointer shows after POINTER_CACHE_SECONDS (or clear_cache).
    _pointer(s3, OTHER)
    assert artifacts.current_version() == VERSION
    artifacts.clear_cache()
    assert artifacts.current_version() == OTHER
    s3.delete_object(Bucket=BUCKET, Key=f"code/{OTHER}/lib/churn.zip")
    artifacts.clear_cache()
    with pytest.raises(SettingsError, match=r"lib/churn.zip.*run infra/deploy_mwaa.py"):
        artifacts.current_version()


def test_mark_used_refreshes_only_objects_older_than_a_day_keeping_type_and_encryption(s3):
    _pointer(s3)
    old = [f"code/{VERSION}/{OBJECTS[0]}", f"code/{VERSION}/{OBJECTS[1]}", artifacts.POINTER_KEY]
    fresh = f"code/{VERSION}/{OBJECTS[2]}"
    other = f"code/{OTHER}/{OBJECTS[0]}"
    for key in [*old, other]:
        _age(key, 3)
    _age(fresh, 0.5)
    before = {k: s3.head_object(Bucket=BUCKET, Key=k) for k in [*old, fresh, other]}
    bodies = {k: s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in old}
    artifacts.mark_used(VERSION)
    after = {k: s3.head_object(Bucket=BUCKET, Key=k) for k in [*old, fresh, other]}
    for key in old:
        assert after[key]["LastModified"] > before[key]["LastModified"], key
        assert after[key]["ContentType"] == before[key]["ContentType"], key
        assert after[key].get("ServerSideEncryption") == before[key].get("ServerSideEncryption"), key
        assert after[key].get("SSEKMSKeyId") == before[key].get("SSEKMSKeyId"), key
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == bodies[key], key
    for key in (fresh, other):  # a recent object, and another version: left alone
        assert after[key]["LastModified"] == before[key]["LastModified"], key
        assert after[key]["ETag"] == before[key]["ETag"]
    refreshed = {k: after[k]["LastModified"] for k in old}
    artifacts.mark_used(VERSION)  # the same day again: nothing to do
    assert {k: s3.head_object(Bucket=BUCKET, Key=k)["LastModified"] for k in old} == refreshed


def test_mark_used_refuses_what_is_not_a_code_version_before_any_request():
    # The local target runs the same requests: tests/unit/test_artifacts_build.py.
    with pytest.raises(ValueError, match="not a code version"):
        artifacts.mark_used("latest")  # no S3 client is made: no connection configured would fail otherwise
