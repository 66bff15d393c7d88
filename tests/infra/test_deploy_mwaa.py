"""infra/deploy_mwaa.py: what it builds, and the upload + UpdateEnvironment against moto.

moto has no MWAA backend: S3 and STS run in moto (a versioned bucket, real VersionIds), and the
GetEnvironment and UpdateEnvironment calls go through botocore's Stubber, which validates them
against the MWAA service model; UpdateEnvironment must name exactly the versions S3 returned.
moto ignores ExpectedBucketOwner, so a botocore event hook records what every S3 call sent.

The security review (issue 17) found the build following symlinks out of the repository and
shipping untracked files, no check of the buckets' owner or of the environment's source bucket,
and a dags/ sync that deleted objects the command had not written; the tests below pin each fix.
"""

from __future__ import annotations

import importlib.util
import json
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
    "CHURN_CAPTURE_KMS_KEY_ID": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
}


ACCOUNT = "123456789012"  # moto's account: what STS GetCallerIdentity returns under mock_aws
MWAA_BUCKET, ARTIFACTS_BUCKET = "airflow-churn-1", "churn-artifacts-1"


@pytest.fixture
def built(tmp_path):
    return deploy.build(tmp_path / "out", SETTINGS)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def small_repo(tmp_path) -> Path:
    """A git checkout with the layout the build reads, every file added to the index."""
    repo = tmp_path / "repo"
    files = {
        "dags/churn_small.py": "# a DAG\n", "dags/.airflowignore": "",
        "plugins/churn_ml/__init__.py": "", "plugins/churn_ml/operators.py": "X = 1\n",
        "include/churn/__init__.py": "", "include/jobs/job.py": "print('job')\n",
        "include/sagemaker/churn_train.py": "print('train')\n", "requirements.txt": "apache-airflow-providers-amazon\n",
    }
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    return repo


@pytest.fixture
def outside(tmp_path) -> Path:
    """A file outside the repository, with content that must never reach a build."""
    secret = tmp_path / "elsewhere" / "credentials"
    secret.parent.mkdir()
    secret.write_text("aws_secret_access_key = OUTSIDE-SECRET\n")
    return secret


def _built_bytes(out: Path) -> bytes:
    """Everything the build wrote, the archives' members included."""
    data = b""
    for path in (p for p in out.rglob("*") if p.is_file()):
        data += path.read_bytes()
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                data += b"".join(archive.read(n) for n in archive.namelist())
    return data


# Run on a bare interpreter: sys.path is the standard library, site-packages and plugins.zip (not the
# repository, so no local_aws), and an import hook refuses any top-level module that neither the
# standard library nor the distributions requirements.txt installs (with their dependencies) provide.
PROBE = """
import importlib, re, sys, zipfile
from importlib import metadata

archive = sys.argv[1]
sys.path = [p for p in sys.path if p and "site-packages" in p or p.endswith((".zip", "lib-dynload")) or "/lib/python" in p]
sys.path.insert(0, archive)

def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()

wanted = ["apache-airflow", "apache-airflow-providers-amazon", "aiobotocore",  # requirements.txt + what MWAA ships
          "apache-airflow-providers-openlineage"]
seen, stack = set(), list(wanted)
while stack:
    name = canonical(stack.pop())
    if name in seen:
        continue
    seen.add(name)
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        continue
    stack += [re.split(r"[ ;<>=!~\\[(]", r, maxsplit=1)[0] for r in dist.requires or [] if "extra ==" not in r]
allowed = {m for m, dists in metadata.packages_distributions().items() if any(canonical(d) in seen for d in dists)}

class OnlyRequirements:
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in allowed or top in sys.stdlib_module_names or top == "churn_ml" or top.startswith("_"):
            return None
        raise ModuleNotFoundError(f"{name}: not installed by requirements.txt (plugins.zip must not import it)", name=name)

sys.meta_path.insert(0, OnlyRequirements())
modules = sorted(n[:-3].replace("/", ".").removesuffix(".__init__") for n in zipfile.ZipFile(archive).namelist()
                 if n.endswith(".py"))
for module in modules:
    loaded = importlib.import_module(module)
    assert ".zip" in loaded.__file__, loaded.__file__
try:
    import local_aws  # noqa: F401
except ImportError:
    print("imported", len(modules), "modules; no local_aws")
"""


def test_plugins_zip_holds_no_local_runner_and_imports_with_only_what_requirements_install(built, tmp_path):
    with zipfile.ZipFile(built["plugins.zip"]) as archive:
        names = archive.namelist()
    assert "churn_ml/__init__.py" in names and "churn_ml/operators/__init__.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert not [n for n in names if not n.startswith("churn_ml/")], "only the churn_ml package goes to MWAA"
    # MWAA puts plugins.zip's content on sys.path: every module must import from the zip alone.
    proc = subprocess.run([sys.executable, "-c", PROBE, str(built["plugins.zip"])], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "ML_TARGET": "aws", "AIRFLOW_HOME": str(built["dags"].parent)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no local_aws" in proc.stdout and f"imported {sum(n.endswith('.py') for n in names)} modules" in proc.stdout


def test_build_has_the_dags_the_ignore_file_requirements_startup_script_and_artifacts(built):
    assert sorted(p.name for p in built["dags"].iterdir()) == [
        ".airflowignore", "churn_batch_scoring.py", "churn_features.py", "churn_monitoring.py", "churn_streaming.py",
        "churn_training.py"]
    assert "apache-airflow-providers-amazon[aiobotocore]==9.34.0" in built["requirements.txt"].read_text()
    startup = built["startup.sh"].read_text()
    assert startup.startswith("#!/bin/sh") and "export ML_TARGET=aws" in startup
    assert "export CHURN_SAGEMAKER_ROLE_ARN=arn:aws:iam::111122223333:role/churn-sagemaker" in startup
    version = deploy.code_version(built)
    assert {p.relative_to(built["artifacts"]).as_posix() for p in built["artifacts"].rglob("*") if p.is_file()} == {
        f"code/{version}/{key}" for key in (
            "jobs/churn_features.py", "jobs/churn_training_set.py", "jobs/churn_monitoring.py",
            "jobs/churn_stream_scoring.py", "lib/churn.zip", "sagemaker/sourcedir.tar.gz")}


def test_missing_or_malformed_settings_are_refused_with_the_names():
    with pytest.raises(deploy.DeployError, match="CHURN_XGBOOST_IMAGE_URI"):
        deploy.check_settings({k: v for k, v in SETTINGS.items() if k != "CHURN_XGBOOST_IMAGE_URI"})
    with pytest.raises(deploy.DeployError, match="CHURN_EMR_APPLICATION_ID"):
        deploy.check_settings({k: v for k, v in SETTINGS.items() if k != "CHURN_EMR_APPLICATION_ID"})
    deploy.check_settings({**SETTINGS, "CHURN_SPARK_BACKEND": "glue"})  # the Glue jobs carry their own role
    with pytest.raises(deploy.DeployError, match="expected CHURN_NAME=value"):
        deploy.parse_settings(["lake=x"])
    assert deploy.parse_settings(["CHURN_LAKE_BUCKET=a=b"]) == {"CHURN_LAKE_BUCKET": "a=b"}


DATA_KEY = SETTINGS["CHURN_CAPTURE_KMS_KEY_ID"]
OUTPUTS = {"LakeBucket": "churn-lake-1", "DataKeyArn": DATA_KEY, "EnvironmentName": "churn"}


@pytest.mark.parametrize("given", [{}, {"CHURN_CAPTURE_KMS_KEY_ID": ""}, {"CHURN_CAPTURE_KMS_KEY_ID": DATA_KEY},
                                   {"CHURN_CAPTURE_KMS_KEY_ID": DATA_KEY.rsplit("/", 1)[1]}],
                         ids=["unset", "empty", "the-key-arn", "the-key-id"])
def test_the_capture_is_encrypted_with_the_stacks_data_key_unless_told_the_same_key(given):
    """Unset or empty means the template's data key (stack output DataKeyArn), not "no key"."""
    settings = deploy.stack_settings(OUTPUTS, given)
    assert settings["CHURN_CAPTURE_KMS_KEY_ID"] == (given.get("CHURN_CAPTURE_KMS_KEY_ID") or DATA_KEY)
    assert settings["CHURN_LAKE_BUCKET"] == "churn-lake-1"
    assert "export CHURN_CAPTURE_KMS_KEY_ID=" + (given.get("CHURN_CAPTURE_KMS_KEY_ID") or DATA_KEY) in \
        deploy.startup_script(settings)


def test_a_capture_key_the_sagemaker_role_may_not_use_is_refused_and_a_missing_one_named():
    with pytest.raises(deploy.DeployError, match="not the stack's data key .*SageMaker role"):
        deploy.stack_settings(OUTPUTS, {"CHURN_CAPTURE_KMS_KEY_ID": "alias/someone-elses"})
    # Without a stack the key must be given: an empty one would mean no key at all.
    with pytest.raises(deploy.DeployError, match="CHURN_CAPTURE_KMS_KEY_ID"):
        deploy.check_settings(deploy.stack_settings({}, {**SETTINGS, "CHURN_CAPTURE_KMS_KEY_ID": ""}))
    # Another setting given empty (no stack value to keep) stays empty, and is reported missing.
    with pytest.raises(deploy.DeployError, match="CHURN_XGBOOST_IMAGE_URI"):
        deploy.check_settings(deploy.stack_settings(OUTPUTS, {**SETTINGS, "CHURN_XGBOOST_IMAGE_URI": ""}))


def test_the_template_outputs_the_data_key_for_the_capture_setting():
    from cfn_template import load

    outputs = load()["Outputs"]
    assert deploy.OUTPUT_SETTINGS["DataKeyArn"] == outputs["DataKeyArn"]["Description"] == "CHURN_CAPTURE_KMS_KEY_ID"
    assert outputs["DataKeyArn"]["Value"] == {"!GetAtt": "DataKey.Arn"}
    assert all(outputs[name]["Description"] == setting for name, setting in deploy.OUTPUT_SETTINGS.items())


def test_a_symlink_to_a_file_outside_the_repository_is_refused_naming_it(small_repo, outside, tmp_path):
    link = small_repo / "plugins/churn_ml/settings_local.py"
    link.symlink_to(outside)
    _git(small_repo, "add", "plugins/churn_ml/settings_local.py")  # git tracks the link itself
    with pytest.raises(deploy.DeployError) as refused:
        deploy.build(tmp_path / "out", SETTINGS, repo=small_repo)
    message = str(refused.value)
    assert f"plugins/churn_ml/settings_local.py is a symbolic link (-> {outside})" in message
    assert "Replace each link with a real file" in message
    assert b"OUTSIDE-SECRET" not in _built_bytes(tmp_path / "out")
    assert not (tmp_path / "out" / "plugins.zip").exists()


def test_a_tracked_file_below_a_symlinked_folder_is_refused(small_repo, outside, tmp_path):
    """The folder include/churn replaced by a link to a folder elsewhere: the tracked names still match."""
    elsewhere = outside.parent / "churn"
    (small_repo / "include/churn").rename(elsewhere)
    (elsewhere / "__init__.py").write_text("SECRET = 'OUTSIDE-SECRET'\n")
    (small_repo / "include/churn").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(deploy.DeployError, match=r"include/churn/__init__.py lies below include/churn, which is a "
                                                  r"symbolic link \(->"):
        deploy.build(tmp_path / "out", SETTINGS, repo=small_repo)
    assert b"OUTSIDE-SECRET" not in _built_bytes(tmp_path / "out")


@pytest.mark.parametrize("name", ["plugins/.env", "dags/scratch_dag.py", "include/jobs/link_to_secret.py"])
def test_an_untracked_file_or_link_is_refused_with_what_to_do(small_repo, outside, tmp_path, name):
    path = small_repo / name
    if "link" in name:
        path.symlink_to(outside)
    else:
        path.write_text("AWS_SECRET_ACCESS_KEY=OUTSIDE-SECRET\n")
    with pytest.raises(deploy.DeployError) as refused:
        deploy.build(tmp_path / "out", SETTINGS, repo=small_repo)
    assert f"untracked files under dags/, plugins/, include/: {name}." in str(refused.value)
    assert "The deploy ships only what git tracks: `git add`" in str(refused.value)
    assert b"OUTSIDE-SECRET" not in _built_bytes(tmp_path / "out")


def test_only_tracked_files_are_built_and_git_ignored_ones_are_left_out(small_repo, tmp_path):
    (small_repo / ".gitignore").write_text(".env\n__pycache__/\n")
    (small_repo / "plugins/.env").write_text("AWS_SECRET_ACCESS_KEY=IGNORED-SECRET\n")
    (small_repo / "plugins/churn_ml/__pycache__").mkdir()
    (small_repo / "plugins/churn_ml/__pycache__/operators.cpython-312.pyc").write_bytes(b"IGNORED-SECRET")
    built = deploy.build(tmp_path / "out", SETTINGS, repo=small_repo)
    with zipfile.ZipFile(built["plugins.zip"]) as archive:
        assert archive.namelist() == ["churn_ml/__init__.py", "churn_ml/operators.py"]
    assert sorted(p.name for p in built["dags"].iterdir()) == [".airflowignore", "churn_small.py"]
    assert b"IGNORED-SECRET" not in _built_bytes(tmp_path / "out")


def test_this_repository_builds_from_exactly_the_files_git_tracks(built):
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "plugins"], capture_output=True, text=True,
                             check=True).stdout.split("\0")
    with zipfile.ZipFile(built["plugins.zip"]) as archive:
        assert sorted(archive.namelist()) == sorted(n.removeprefix("plugins/") for n in tracked if n)
    assert not any(p.is_symlink() for p in built["source"].rglob("*"))


def _buckets(s3) -> None:
    for bucket in (MWAA_BUCKET, ARTIFACTS_BUCKET):
        s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=MWAA_BUCKET, VersioningConfiguration={"Status": "Enabled"})


def _record_s3_calls(s3) -> list[tuple[str, dict]]:
    """Every S3 operation the client sends with its parameters (moto does not check ExpectedBucketOwner)."""
    calls: list[tuple[str, dict]] = []
    s3.meta.events.register("provide-client-params.s3.*",
                            lambda params, model, **_: calls.append((model.name, dict(params))))
    return calls


def _mwaa(source_bucket: str = MWAA_BUCKET, dag_path: str = "dags"):
    """An MWAA client (Stubber: moto has no MWAA) whose environment reads from ``source_bucket``."""
    client = boto3.client("mwaa", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_response("get_environment", {"Environment": {
        "Name": "churn", "SourceBucketArn": f"arn:aws:s3:::{source_bucket}", "DagS3Path": dag_path}}, {"Name": "churn"})
    return client, stub


def _deploy(s3, built, mwaa=None):
    client, stub = mwaa or _mwaa()
    sent = []
    client.meta.events.register("provide-client-params.mwaa.UpdateEnvironment", lambda params, **_: sent.append(params))
    stub.add_response("update_environment", {"Arn": "arn:aws:airflow:us-east-1:123456789012:environment/churn"})
    with stub:
        versions = deploy.deploy(s3=s3, mwaa=client, sts=boto3.client("sts", region_name="us-east-1"), built=built,
                                 environment="churn", mwaa_bucket=MWAA_BUCKET, artifacts_bucket=ARTIFACTS_BUCKET)
        stub.assert_no_pending_responses()
    return versions, sent[0]


def _keys(s3, bucket: str) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


@mock_aws
def test_upload_and_the_environment_gets_the_new_versions(built):
    s3 = boto3.client("s3", region_name="us-east-1")
    _buckets(s3)
    versions, update = _deploy(s3, built)
    keys = _keys(s3, MWAA_BUCKET)
    assert {"dags/churn_training.py", "dags/.airflowignore", "plugins.zip", "requirements.txt", "startup.sh"} <= keys
    code = f"code/{deploy.code_version(built)}"
    assert {f"{code}/jobs/churn_features.py", f"{code}/lib/churn.zip", f"{code}/sagemaker/sourcedir.tar.gz",
            "code/CURRENT.json"} <= _keys(s3, ARTIFACTS_BUCKET)
    for name, version in versions.items():
        assert s3.head_object(Bucket=MWAA_BUCKET, Key=name)["VersionId"] == version
    assert update == {
        "Name": "churn",
        "PluginsS3Path": "plugins.zip", "PluginsS3ObjectVersion": versions["plugins.zip"],
        "RequirementsS3Path": "requirements.txt", "RequirementsS3ObjectVersion": versions["requirements.txt"],
        "StartupScriptS3Path": "startup.sh", "StartupScriptS3ObjectVersion": versions["startup.sh"],
    }
    # Every deploy uploads new versions, and MWAA is told to install exactly those.
    assert _deploy(s3, built)[0]["plugins.zip"] != versions["plugins.zip"]


@mock_aws
def test_a_foreign_object_under_dags_survives_and_only_dag_files_the_deploy_wrote_are_deleted(built):
    s3 = boto3.client("s3", region_name="us-east-1")
    _buckets(s3)
    s3.put_object(Bucket=MWAA_BUCKET, Key="dags/other_team_dag.py", Body=b"# not from this repository")
    s3.put_object(Bucket=MWAA_BUCKET, Key="dags/configs/other_team.json", Body=b"{}")
    (built["dags"] / "retired_dag.py").write_text("# in this build, gone from the next one\n")
    _deploy(s3, built)
    manifest = json.loads(s3.get_object(Bucket=MWAA_BUCKET, Key=deploy.MANIFEST_KEY)["Body"].read())
    assert "dags/retired_dag.py" in manifest["dags"] and "dags/other_team_dag.py" not in manifest["dags"]

    (built["dags"] / "retired_dag.py").unlink()
    _deploy(s3, built)
    keys = _keys(s3, MWAA_BUCKET)
    assert "dags/retired_dag.py" not in keys  # this command wrote it: managed, and deleted once it left the build
    assert {"dags/other_team_dag.py", "dags/configs/other_team.json", "dags/churn_training.py"} <= keys
    manifest = json.loads(s3.get_object(Bucket=MWAA_BUCKET, Key=deploy.MANIFEST_KEY)["Body"].read())
    assert manifest["dags"] == sorted(f"dags/{p.name}" for p in built["dags"].iterdir())


@mock_aws
def test_a_first_deploy_deletes_nothing_under_dags(built):
    """No manifest yet (or one this command did not write): nothing under dags/ is known to be its own."""
    s3 = boto3.client("s3", region_name="us-east-1")
    _buckets(s3)
    s3.put_object(Bucket=MWAA_BUCKET, Key="dags/retired_dag.py", Body=b"# uploaded by hand")
    _deploy(s3, built)
    assert "dags/retired_dag.py" in _keys(s3, MWAA_BUCKET)


@mock_aws
def test_expected_bucket_owner_is_the_callers_account_on_every_s3_call(built):
    s3 = boto3.client("s3", region_name="us-east-1")
    _buckets(s3)
    calls = _record_s3_calls(s3)
    (built["dags"] / "retired_dag.py").write_text("# deleted by the second deploy\n")
    _deploy(s3, built)
    (built["dags"] / "retired_dag.py").unlink()
    _deploy(s3, built)
    operations = {name for name, _ in calls}
    assert {"HeadBucket", "GetBucketVersioning", "PutObject", "GetObject", "ListObjectsV2", "DeleteObject"} <= operations
    without = [(name, params.get("Bucket"), params.get("Key")) for name, params in calls
               if params.get("ExpectedBucketOwner") != ACCOUNT]
    assert not without, f"S3 calls without ExpectedBucketOwner={ACCOUNT}: {without}"


def test_a_bucket_of_another_account_is_refused_before_any_upload(built):
    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(s3) as stub:
        stub.add_client_error("head_bucket", service_error_code="403", http_status_code=403,
                              expected_params={"Bucket": MWAA_BUCKET, "ExpectedBucketOwner": "111122223333"})
        with pytest.raises(deploy.DeployError, match=f"s3://{MWAA_BUCKET} is not owned by account 111122223333"):
            deploy.upload(s3, built, MWAA_BUCKET, ARTIFACTS_BUCKET, "111122223333")
        stub.assert_no_pending_responses()  # and no PutObject was attempted (the Stubber would have failed it)


@mock_aws
@pytest.mark.parametrize("source_bucket, dag_path, message", [
    ("airflow-someone-else", "dags",
     f"reads its code from arn:aws:s3:::airflow-someone-else, not from s3://{MWAA_BUCKET}"),
    (MWAA_BUCKET, "team-a/dags", f"reads DAGs from s3://{MWAA_BUCKET}/team-a/dags/"),
])
def test_an_environment_reading_from_another_bucket_is_refused_before_any_upload(built, source_bucket, dag_path,
                                                                                   message):
    s3 = boto3.client("s3", region_name="us-east-1")
    _buckets(s3)
    client, stub = _mwaa(source_bucket, dag_path)
    with stub, pytest.raises(deploy.DeployError, match=message):
        deploy.deploy(s3=s3, mwaa=client, sts=boto3.client("sts", region_name="us-east-1"), built=built,
                      environment="churn", mwaa_bucket=MWAA_BUCKET, artifacts_bucket=ARTIFACTS_BUCKET)
    assert not _keys(s3, MWAA_BUCKET) and not _keys(s3, ARTIFACTS_BUCKET)


@mock_aws
def test_an_unversioned_mwaa_bucket_is_refused(built):
    s3 = boto3.client("s3", region_name="us-east-1")
    for bucket in (MWAA_BUCKET, ARTIFACTS_BUCKET):
        s3.create_bucket(Bucket=bucket)
    with pytest.raises(deploy.DeployError, match="versioning"):
        deploy.upload(s3, built, MWAA_BUCKET, ARTIFACTS_BUCKET, ACCOUNT)


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


@mock_aws
def test_a_code_version_goes_beside_the_old_ones_unchanged_and_the_pointer_is_written_last(built, tmp_path):
    """Objects of a version already there are skipped (never overwritten); the pointer switches after
    everything else, UpdateEnvironment included, so no run reads a version still being uploaded."""
    s3 = boto3.client("s3", region_name="us-east-1")
    _buckets(s3)
    old_key = "code/0000000000000001/jobs/churn_features.py"
    s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=old_key, Body=b"older code")
    version = deploy.code_version(built)
    kept = f"code/{version}/lib/churn.zip"  # as an interrupted earlier deploy of this version left it
    s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=kept, Body=b"uploaded before")
    calls = []
    s3.meta.events.register("provide-client-params.s3.*", lambda params, model, **_: calls.append(
        (model.name, params.get("Bucket"), params.get("Key"))))
    client, stub = _mwaa()
    client.meta.events.register("provide-client-params.mwaa.UpdateEnvironment",
                                lambda **_: calls.append(("UpdateEnvironment", None, None)))
    _deploy(s3, built, (client, stub))
    writes = [(op, key) for op, bucket, key in calls if op in ("PutObject", "UpdateEnvironment", "DeleteObject")]
    assert writes[-1] == ("PutObject", "code/CURRENT.json"), writes[-3:]
    assert ("PutObject", kept) not in writes
    assert s3.get_object(Bucket=ARTIFACTS_BUCKET, Key=kept)["Body"].read() == b"uploaded before"
    assert s3.get_object(Bucket=ARTIFACTS_BUCKET, Key=old_key)["Body"].read() == b"older code"
    pointer = json.loads(s3.get_object(Bucket=ARTIFACTS_BUCKET, Key="code/CURRENT.json")["Body"].read())
    assert pointer["version"] == version and pointer["written_by"] == "infra/deploy_mwaa.py"
    assert f"code/{version}/jobs/churn_features.py".split("/", 2)[2] in pointer["objects"]
    # A second deploy of the same code uploads no object of the version, and writes the pointer again.
    calls.clear()
    _deploy(s3, built)
    assert not [k for op, b, k in calls if op == "PutObject" and b == ARTIFACTS_BUCKET and k != "code/CURRENT.json"]


def test_the_startup_script_defines_the_athena_connection_of_the_sql_checks_in_the_environments_region():
    settings = deploy.stack_settings({**OUTPUTS, "AthenaWorkGroup": "churn-wg", "LakeDatabase": "churn_db"}, {})
    script = deploy.startup_script(settings)
    out = subprocess.run(["sh", "-c", script + 'printf %s "$AIRFLOW_CONN_ATHENA_DEFAULT"'], capture_output=True,
                         text=True, check=True, env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "eu-west-1"}).stdout
    assert json.loads(out) == {"conn_type": "athena", "schema": "churn_db",
                               "extra": {"work_group": "churn-wg", "region_name": "eu-west-1"}}
    assert "AIRFLOW_CONN_" not in deploy.startup_script(deploy.stack_settings(OUTPUTS, {}))  # a stack without them
    with pytest.raises(deploy.DeployError, match="CHURN_ATHENA_WORKGROUP"):
        deploy.startup_script({**settings, "CHURN_ATHENA_WORKGROUP": 'wg"; rm -rf /'})
