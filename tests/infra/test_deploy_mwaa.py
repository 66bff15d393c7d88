"""infra/deploy_mwaa.py: what it builds, and the upload + UpdateEnvironment against moto.

moto has no MWAA backend: S3 runs in moto (a versioned bucket, real VersionIds), and the
UpdateEnvironment call goes through botocore's Stubber, which validates it against the MWAA
service model and checks that it names exactly the versions S3 returned.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

REPO = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("deploy_mwaa", REPO / "infra" / "deploy_mwaa.py")
deploy = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(deploy)

SETTINGS = {
    "CHURN_LAKE_BUCKET": "churn-lake-1", "CHURN_ARTIFACTS_BUCKET": "churn-artifacts-1",
    "CHURN_SAGEMAKER_ROLE_ARN": "arn:aws:iam::111122223333:role/churn-sagemaker",
    "CHURN_XGBOOST_IMAGE_URI": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
    "CHURN_EMR_APPLICATION_ID": "00abc", "CHURN_EMR_EXECUTION_ROLE_ARN": "arn:aws:iam::111122223333:role/churn-emr",
}


@pytest.fixture
def built(tmp_path):
    return deploy.build(tmp_path / "out", SETTINGS)


def test_plugins_zip_has_the_package_at_its_root_and_imports_from_the_zip(built):
    with zipfile.ZipFile(built["plugins.zip"]) as archive:
        names = archive.namelist()
    assert "churn_ml/__init__.py" in names and "churn_ml/operators.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    # MWAA puts plugins.zip's content on sys.path: the operators must import from the zip alone.
    probe = (f"import sys; sys.path = [p for p in sys.path if 'plugins' not in p]; sys.path.insert(0, {str(built['plugins.zip'])!r}); "
             "import churn_ml.operators as o; assert '.zip' in o.__file__; print(o.SageMakerEndpointDeployOperator.__name__)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "ML_TARGET": "aws", "AIRFLOW_HOME": str(built["dags"].parent)})
    assert proc.returncode == 0 and "SageMakerEndpointDeployOperator" in proc.stdout, proc.stderr[-2000:]


def test_build_has_the_dags_the_ignore_file_requirements_startup_script_and_artifacts(built):
    assert sorted(p.name for p in built["dags"].iterdir()) == [
        ".airflowignore", "churn_batch_scoring.py", "churn_features.py", "churn_streaming.py", "churn_training.py"]
    assert "apache-airflow-providers-amazon[aiobotocore]==9.34.0" in built["requirements.txt"].read_text()
    startup = built["startup.sh"].read_text()
    assert startup.startswith("#!/bin/sh") and "export ML_TARGET=aws" in startup
    assert "export CHURN_SAGEMAKER_ROLE_ARN=arn:aws:iam::111122223333:role/churn-sagemaker" in startup
    assert {p.relative_to(built["artifacts"]).as_posix() for p in built["artifacts"].rglob("*") if p.is_file()} >= {
        "jobs/churn_features.py", "jobs/churn_training_set.py", "jobs/churn_streaming.py", "lib/churn.zip",
        "sagemaker/sourcedir.tar.gz"}


def test_missing_or_malformed_settings_are_refused_with_the_names():
    with pytest.raises(deploy.DeployError, match="CHURN_XGBOOST_IMAGE_URI"):
        deploy.check_settings({k: v for k, v in SETTINGS.items() if k != "CHURN_XGBOOST_IMAGE_URI"})
    with pytest.raises(deploy.DeployError, match="CHURN_GLUE_ROLE_NAME"):
        deploy.check_settings({**SETTINGS, "CHURN_SPARK_BACKEND": "glue"})
    with pytest.raises(deploy.DeployError, match="expected CHURN_NAME=value"):
        deploy.parse_settings(["lake=x"])
    assert deploy.parse_settings(["CHURN_LAKE_BUCKET=a=b"]) == {"CHURN_LAKE_BUCKET": "a=b"}


@mock_aws
def test_upload_syncs_dags_and_the_environment_gets_the_new_versions(built, tmp_path):
    s3 = boto3.client("s3", region_name="us-east-1")
    for bucket in ("airflow-churn-1", "churn-artifacts-1"):
        s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket="airflow-churn-1", VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket="airflow-churn-1", Key="dags/retired_dag.py", Body=b"# removed from the repository")

    versions = deploy.upload(s3, built, "airflow-churn-1", "churn-artifacts-1")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="airflow-churn-1")["Contents"]}
    assert "dags/retired_dag.py" not in keys and "dags/churn_training.py" in keys and "dags/.airflowignore" in keys
    assert {"plugins.zip", "requirements.txt", "startup.sh"} <= keys
    artifacts = {o["Key"] for o in s3.list_objects_v2(Bucket="churn-artifacts-1")["Contents"]}
    assert {"jobs/churn_features.py", "lib/churn.zip", "sagemaker/sourcedir.tar.gz"} <= artifacts
    for name, version in versions.items():
        assert s3.head_object(Bucket="airflow-churn-1", Key=name)["VersionId"] == version

    mwaa = boto3.client("mwaa", region_name="us-east-1")
    with Stubber(mwaa) as stub:
        stub.add_response("update_environment", {"Arn": "arn:aws:airflow:us-east-1:111122223333:environment/churn"}, {
            "Name": "churn",
            "PluginsS3Path": "plugins.zip", "PluginsS3ObjectVersion": versions["plugins.zip"],
            "RequirementsS3Path": "requirements.txt", "RequirementsS3ObjectVersion": versions["requirements.txt"],
            "StartupScriptS3Path": "startup.sh", "StartupScriptS3ObjectVersion": versions["startup.sh"],
        })
        deploy.update_environment(mwaa, "churn", versions)
        stub.assert_no_pending_responses()

    # Every deploy uploads new versions, and MWAA is told to install exactly those.
    assert deploy.upload(s3, built, "airflow-churn-1", "churn-artifacts-1")["plugins.zip"] != versions["plugins.zip"]


@mock_aws
def test_an_unversioned_mwaa_bucket_is_refused(built):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="airflow-churn-1")
    with pytest.raises(deploy.DeployError, match="versioning"):
        deploy.upload(s3, built, "airflow-churn-1", "churn-artifacts-1")


def test_requirements_resolve_with_airflow_3_3_1_and_the_provider_pins(tmp_path):
    """pip resolves requirements.txt together with apache-airflow==3.3.1 under the repository's lock
    of Airflow 3.3.1 on Python 3.12 (constraints-local.txt). The constraints URL MWAA uses is on
    GitHub, which CI cannot reach; the file must still name it, for MWAA."""
    lines = (REPO / "requirements.txt").read_text().splitlines()
    assert '--constraint "https://raw.githubusercontent.com/apache/airflow/constraints-3.3.1/constraints-3.12.txt"' in lines
    packages = tmp_path / "requirements.txt"
    packages.write_text("\n".join(line for line in lines if line.strip() and not line.startswith(("#", "--"))) + "\n")
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
         "apache-airflow==3.3.1", "-r", str(packages), "-c", str(REPO / "constraints-local.txt")],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    resolved = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    assert resolved["apache-airflow"] == "3.3.1" and resolved["apache-airflow-providers-amazon"] == "9.34.0"
    assert "aiobotocore" in resolved  # the deferrable operators' triggers need it


def test_mwaa_and_the_local_environment_pin_the_same_provider():
    def provider(path: Path) -> str:
        return next(line for line in path.read_text().splitlines() if line.startswith("apache-airflow-providers-amazon"))

    assert provider(REPO / "requirements.txt") == provider(REPO / "requirements-local.txt")
