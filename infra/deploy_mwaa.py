"""Deploy this repository to Amazon MWAA: build, upload, point the environment at the new versions.

    .venv/bin/python infra/deploy_mwaa.py --stack churn \\
        --setting CHURN_XGBOOST_IMAGE_URI=683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1

reads the buckets and settings from the CloudFormation stack's outputs (infra/cloudformation/churn.yaml);
or give them yourself: ``--environment churn --mwaa-bucket airflow-churn-... --artifacts-bucket
churn-artifacts-... --setting CHURN_LAKE_BUCKET=... --setting CHURN_SAGEMAKER_ROLE_ARN=... ...``.

What it does, in order (``--dry-run`` stops after the build and prints the plan):

1. builds into a temporary folder from the files git tracks (``git ls-files``) under dags/, plugins/
   and include/, plus requirements.txt, and nothing else: it refuses to go on when one of them is a
   symbolic link, lies below one, is not a regular file, or resolves outside the repository, and when
   an untracked (not git-ignored) file sits under those folders (commit it or remove it). Git-ignored
   files (``__pycache__``...) are never shipped. The build: ``dags/`` (the DAG files and
   ``.airflowignore``), ``plugins.zip`` (``churn_ml/`` at the zip's root, as MWAA puts plugins.zip's
   content on the path), ``requirements.txt``, ``startup.sh`` (exports ``ML_TARGET=aws`` and the
   ``CHURN_*`` settings: MWAA sets environment variables only through the startup script), and the
   code version of include/ (``code/<version>/``: Spark scripts, ``lib/churn.zip`` for ``--py-files``,
   the SageMaker source bundle; churn_ml.artifacts);
2. checks the target before writing anything: the caller's account (STS GetCallerIdentity) is sent as
   ``ExpectedBucketOwner`` on every S3 call, so a bucket of another account is never read or written,
   and the environment's source bucket (MWAA GetEnvironment, ``SourceBucketArn``) must be the MWAA
   bucket it uploads to (and its DAG folder ``dags``);
3. uploads the code version beside the older ones in the artifacts bucket (``code/<version>/``;
   objects already there are skipped, never overwritten: a version is immutable) and the rest to the
   MWAA bucket. Under ``dags/`` it deletes only DAG files it uploaded itself on an earlier deploy and
   that are gone from the build: the keys it manages are listed in ``deploy/dags-manifest.json``
   (outside ``dags/``), rewritten on every deploy; anything else under ``dags/`` is left alone;
4. calls UpdateEnvironment with the new object versions of plugins.zip, requirements.txt and
   startup.sh (the bucket is versioned), so MWAA installs exactly what was uploaded;
5. last, writes ``code/CURRENT.json``, the pointer the DAGs read when a task runs: from then on new
   runs use the new code version (runs already started keep theirs). A deploy that fails before this
   step leaves the DAGs on the version they used.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

from churn_ml import artifacts  # noqa: E402

# Stack output -> the setting it provides (plugins/churn_ml/settings.py).
OUTPUT_SETTINGS = {
    "LakeBucket": "CHURN_LAKE_BUCKET",
    "LakeDatabase": "CHURN_GLUE_DATABASE",
    "AthenaWorkGroup": "CHURN_ATHENA_WORKGROUP",
    "ArtifactsBucket": "CHURN_ARTIFACTS_BUCKET",
    "SageMakerRoleArn": "CHURN_SAGEMAKER_ROLE_ARN",
    "EmrApplicationId": "CHURN_EMR_APPLICATION_ID",
    "EmrExecutionRoleArn": "CHURN_EMR_EXECUTION_ROLE_ARN",
    "AlertsTopicArn": "CHURN_ALERTS_TOPIC_ARN",
    # The endpoint's data capture is encrypted with the template's data key, the only key the SageMaker role
    # may use: an empty or missing setting means that key, never "no key" (see stack_settings).
    "DataKeyArn": "CHURN_CAPTURE_KMS_KEY_ID",
}
REQUIRED = ("CHURN_LAKE_BUCKET", "CHURN_ARTIFACTS_BUCKET", "CHURN_SAGEMAKER_ROLE_ARN", "CHURN_XGBOOST_IMAGE_URI",
            "CHURN_CAPTURE_KMS_KEY_ID")
BACKEND_REQUIRED = {
    "emr_serverless": ("CHURN_EMR_APPLICATION_ID", "CHURN_EMR_EXECUTION_ROLE_ARN"),
    "glue": (),  # the template's Glue jobs carry their role; the DAGs only start runs
}
SETTING = re.compile(r"^(CHURN_[A-Z0-9_]+|AWS_DEFAULT_REGION)=(.*)$")
# What the build reads from the repository: the files git tracks under these folders, and these files.
SOURCE_FOLDERS = ("dags", "plugins", "include")
SOURCE_FILES = ("requirements.txt",)
DAGS_PREFIX = "dags/"
# The DAG keys this command uploaded (and so may delete later), outside dags/: MWAA syncs only dags/.
MANIFEST_KEY = "deploy/dags-manifest.json"


class DeployError(RuntimeError):
    """The deployment cannot go on; the message says what is missing."""


def parse_settings(pairs: list[str]) -> dict[str, str]:
    settings: dict[str, str] = {}
    for pair in pairs:
        match = SETTING.match(pair)
        if not match:
            raise DeployError(f"--setting {pair!r}: expected CHURN_NAME=value (see plugins/churn_ml/settings.py)")
        settings[match.group(1)] = match.group(2)
    return settings


def stack_settings(outputs: dict[str, str], given: dict[str, str]) -> dict[str, str]:
    """The settings of the stack's ``outputs`` (``OUTPUT_SETTINGS``) with the ``--setting``s ``given`` over them.

    An empty ``given`` value of a setting the stack provides keeps the stack's (``--setting
    CHURN_CAPTURE_KMS_KEY_ID=`` means the data key, not "no key"). A capture key other than the stack's
    data key is refused: the SageMaker role may use that key only, and SageMaker would fail to write the
    capture without failing the endpoint, so monitoring would silently lose the capture source.
    """
    settings = {OUTPUT_SETTINGS[k]: v for k, v in outputs.items() if k in OUTPUT_SETTINGS}
    settings.update({name: value for name, value in given.items() if value or name not in settings})
    data_key = outputs.get("DataKeyArn")
    capture_key = settings.get("CHURN_CAPTURE_KMS_KEY_ID", "")
    if data_key and capture_key not in (data_key, data_key.rsplit("/", 1)[-1]):
        raise DeployError(
            f"CHURN_CAPTURE_KMS_KEY_ID={capture_key} is not the stack's data key {data_key}: the SageMaker role "
            "(infra/cloudformation/churn.yaml, SageMakerRole) may encrypt with that key only, so the endpoint's data "
            "capture would not be written. Leave the setting empty (the data key), or grant the role "
            "kms:GenerateDataKey on your key in the template first"
        )
    return settings


def check_settings(settings: dict[str, str]) -> None:
    backend = settings.get("CHURN_SPARK_BACKEND", "emr_serverless")
    if backend not in BACKEND_REQUIRED:
        raise DeployError(f"CHURN_SPARK_BACKEND must be emr_serverless or glue, got {backend!r}")
    missing = [name for name in (*REQUIRED, *BACKEND_REQUIRED[backend]) if not settings.get(name)]
    if missing:
        raise DeployError(f"missing settings for the aws target: {', '.join(missing)}; pass --setting NAME=value "
                          "or --stack with the stack that provides them")


_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def athena_connection_line(settings: dict[str, str]) -> list[str]:
    """The Athena connection of the DAGs' SQL checks (``CHURN_ATHENA_CONN_ID``, default athena_default), when the
    stack names its workgroup and database: conn_type athena, the lake's database as its schema, the workgroup
    (which holds the encrypted results location) and the environment's region; no key (the execution role's)."""
    workgroup, database = settings.get("CHURN_ATHENA_WORKGROUP"), settings.get("CHURN_GLUE_DATABASE")
    if not (workgroup and database):
        return []
    conn_id = settings.get("CHURN_ATHENA_CONN_ID") or "athena_default"
    for name, value in (("CHURN_ATHENA_WORKGROUP", workgroup), ("CHURN_GLUE_DATABASE", database),
                        ("CHURN_ATHENA_CONN_ID", conn_id)):
        if not _NAME.fullmatch(value):
            raise DeployError(f"{name}={value!r}: expected a name of letters, digits, '_', '.' or '-'")
    variable = "AIRFLOW_CONN_" + conn_id.upper().replace(".", "_").replace("-", "_")
    # The region is the environment's own (MWAA sets AWS_DEFAULT_REGION in its containers), read when it starts.
    return [f'export {variable}="{{\\"conn_type\\": \\"athena\\", \\"schema\\": \\"{database}\\", '
            f'\\"extra\\": {{\\"work_group\\": \\"{workgroup}\\", \\"region_name\\": \\"${{AWS_DEFAULT_REGION:-$AWS_REGION}}\\"}}}}"']


def startup_script(settings: dict[str, str]) -> str:
    lines = ["#!/bin/sh", "# Generated by infra/deploy_mwaa.py: the settings of the churn DAGs on this environment.",
             "export ML_TARGET=aws"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in sorted(settings.items())]
    lines += athena_connection_line(settings)
    return "\n".join(lines) + "\n"


def _git(repo: Path, *args: str) -> list[str]:
    """``git -C repo args`` with NUL-separated output (no quoting of unusual names)."""
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], check=False, capture_output=True, timeout=120)
    except FileNotFoundError as err:
        raise DeployError("git not found: the deploy builds from the files git tracks, so it needs git on PATH") from err
    if proc.returncode != 0:
        raise DeployError(f"{repo} is not a git checkout (git {' '.join(args[:2])}: "
                          f"{proc.stderr.decode(errors='replace').strip()}): the deploy builds from the files git "
                          "tracks; run it from a clone of the repository")
    return [name for name in proc.stdout.decode("utf-8", errors="surrogateescape").split("\0") if name]


def tracked_sources(repo: Path) -> list[str]:
    """The repository-relative paths the build reads: what git tracks under dags/, plugins/ and include/,
    and requirements.txt."""
    tracked = _git(repo, "ls-files", "-z", "--cached", "--", *SOURCE_FOLDERS, *SOURCE_FILES)
    missing = [name for name in SOURCE_FILES if name not in tracked]
    if missing:
        raise DeployError(f"{', '.join(missing)} not tracked by git in {repo}: commit it, then deploy again")
    return sorted(set(tracked))


def refuse_untracked(repo: Path) -> None:
    """Refuse when an untracked, not git-ignored file sits under dags/, plugins/ or include/: it would not
    be deployed, and it is either work that is not committed or something (a ``.env``, a scratch file, a
    link to a file elsewhere) that must not be near the build at all. Git-ignored files are left out."""
    untracked = _git(repo, "ls-files", "-z", "--others", "--exclude-standard", "--", *SOURCE_FOLDERS)
    if untracked:
        raise DeployError(
            f"untracked files under {', '.join(f + '/' for f in SOURCE_FOLDERS)}: {', '.join(sorted(untracked))}. "
            "The deploy ships only what git tracks: `git add` (and commit) what belongs to the deployment, delete "
            "the rest or list it in .gitignore, then deploy again"
        )


def _source_problem(repo: Path, relative: str) -> str | None:
    """Why ``repo/relative`` must not be shipped, or None for a regular file inside the repository."""
    parts = Path(relative).parts
    if not parts or Path(relative).is_absolute() or ".." in parts:
        return "is not a plain path inside the repository"
    for depth in range(1, len(parts) + 1):
        path = repo.joinpath(*parts[:depth])
        try:
            info = path.lstat()
        except FileNotFoundError:
            return ("is tracked by git but missing from the working tree (restore it with `git checkout -- "
                    f"{relative}` or commit its deletion)")
        if stat.S_ISLNK(info.st_mode):
            where = "is" if depth == len(parts) else f"lies below {Path(*parts[:depth]).as_posix()}, which is"
            return f"{where} a symbolic link (-> {os.readlink(path)})"
    if not stat.S_ISREG(repo.joinpath(relative).lstat().st_mode):
        return "is not a regular file"
    if not repo.joinpath(relative).resolve().is_relative_to(repo.resolve()):
        return f"resolves outside the repository ({repo.joinpath(relative).resolve()})"
    return None


def stage_sources(repo: Path, target: Path) -> list[str]:
    """Copy the tracked sources (``tracked_sources``) into ``target`` as regular files; returns their paths.

    Refuses, naming every offending path, when one is a symbolic link or lies below one (a link can point
    anywhere: its target's content would be uploaded), is not a regular file, is missing, or resolves
    outside the repository; then when there are untracked files (``refuse_untracked``). Files are opened
    with O_NOFOLLOW, so a link swapped in after the check fails too.
    """
    repo = Path(repo).resolve()
    names = tracked_sources(repo)
    problems = [f"{name} {problem}" for name in names if (problem := _source_problem(repo, name))]
    if problems:
        raise DeployError(
            "refusing to build: the deploy ships only regular files git tracks inside the repository, and\n  "
            + "\n  ".join(problems)
            + "\nReplace each link with a real file (git rm --cached <path>, copy the content in, git add <path>), "
              "restore what is missing, or remove it from the repository (git rm), then deploy again"
        )
    refuse_untracked(repo)
    for name in names:
        source, destination = repo / name, target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(descriptor, "rb") as reader, destination.open("wb") as writer:
            shutil.copyfileobj(reader, writer)
            os.chmod(destination, stat.S_IMODE(os.fstat(reader.fileno()).st_mode))
    return names


def build_plugins_zip(target: Path, plugins: Path) -> list[str]:
    """plugins.zip with the package at its root (``churn_ml/__init__.py``), no caches; returns the names."""
    names = []
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(plugins.rglob("*")):
            relative = path.relative_to(plugins)
            if path.is_file() and not path.is_symlink() and "__pycache__" not in relative.parts and path.suffix != ".pyc":
                archive.write(path, relative.as_posix())
                names.append(relative.as_posix())
    return names


def build(out: Path, settings: dict[str, str], repo: Path = REPO) -> dict[str, Path]:
    """Everything to upload, under ``out``: {"dags": folder, "plugins.zip": ..., "requirements.txt": ...,
    "startup.sh": ..., "artifacts": folder, "source": the staged tracked sources it was built from}."""
    source = out / "source"
    stage_sources(repo, source)
    dags = out / "dags"
    dags.mkdir(parents=True)
    for path in sorted((source / "dags").iterdir()) if (source / "dags").is_dir() else []:
        if path.is_file() and (path.suffix == ".py" or path.name == ".airflowignore"):
            shutil.copy2(path, dags / path.name)
    build_plugins_zip(out / "plugins.zip", source / "plugins")
    shutil.copy2(source / "requirements.txt", out / "requirements.txt")
    (out / "startup.sh").write_text(startup_script(settings))
    artifacts.build(source / "include", out / "artifacts")  # out/artifacts/code/<version>/...
    return {"dags": dags, "plugins.zip": out / "plugins.zip", "requirements.txt": out / "requirements.txt",
            "startup.sh": out / "startup.sh", "artifacts": out / "artifacts", "source": source}


def caller_account(sts) -> str:
    """The account the credentials belong to: every S3 call names it as ``ExpectedBucketOwner``."""
    return sts.get_caller_identity()["Account"]


def check_environment(mwaa, environment: str, mwaa_bucket: str) -> None:
    """Refuse unless the MWAA environment reads its DAGs and plugins from ``mwaa_bucket`` (``SourceBucketArn``)."""
    from botocore.exceptions import ClientError

    try:
        found = mwaa.get_environment(Name=environment)["Environment"]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise DeployError(f"MWAA environment {environment!r} not found with these credentials and region: "
                              "pass --environment (and --region) of the environment to deploy to") from err
        raise
    arn = found.get("SourceBucketArn") or ""
    source_bucket = arn.split(":::", 1)[1] if arn.startswith("arn:") and ":::" in arn else arn
    if source_bucket != mwaa_bucket:
        raise DeployError(
            f"MWAA environment {environment!r} reads its code from {arn or 'no source bucket'}, not from "
            f"s3://{mwaa_bucket}: uploading there would not change what the environment runs, and the bucket may "
            f"belong to something else. Pass --mwaa-bucket {source_bucket or '<its source bucket>'} (or the "
            "--environment that uses this bucket)"
        )
    dag_path = (found.get("DagS3Path") or "").strip("/")
    if dag_path and f"{dag_path}/" != DAGS_PREFIX:
        raise DeployError(f"MWAA environment {environment!r} reads DAGs from s3://{mwaa_bucket}/{dag_path}/, but this "
                          f"command uploads them to {DAGS_PREFIX}: set the environment's DagS3Path to 'dags' "
                          "(infra/cloudformation/churn.yaml does)")


def _check_bucket(s3, bucket: str, owner: str) -> None:
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=owner)
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code"))
        if code in ("404", "NoSuchBucket"):
            raise DeployError(f"bucket s3://{bucket} does not exist: check --stack / the bucket names") from err
        if code in ("403", "AccessDenied"):
            raise DeployError(f"bucket s3://{bucket} is not owned by account {owner} (the caller's, from STS), or "
                              "these credentials may not use it: refusing to upload there. Deploy with credentials of "
                              "the account that owns the stack's buckets") from err
        raise


def _put(s3, bucket: str, key: str, body: bytes, owner: str) -> str | None:
    return s3.put_object(Bucket=bucket, Key=key, Body=body, ExpectedBucketOwner=owner).get("VersionId")


def _managed_dags(s3, bucket: str, owner: str) -> set[str]:
    """The dags/ keys the previous deploy wrote (its manifest); none on a first deploy."""
    from botocore.exceptions import ClientError

    try:
        body = s3.get_object(Bucket=bucket, Key=MANIFEST_KEY, ExpectedBucketOwner=owner)["Body"].read()
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return set()
        raise
    try:
        keys = json.loads(body)["dags"]
        return {k for k in keys if isinstance(k, str) and k.startswith(DAGS_PREFIX) and ".." not in k.split("/")}
    except (ValueError, KeyError, TypeError):
        print(f"warning: s3://{bucket}/{MANIFEST_KEY} is not a manifest this command wrote; deleting nothing under "
              f"{DAGS_PREFIX} this time", file=sys.stderr)
        return set()


def _write_manifest(s3, bucket: str, keys: set[str], owner: str) -> None:
    manifest = {"written_by": "infra/deploy_mwaa.py", "dags": sorted(keys),
                "note": f"the {DAGS_PREFIX} objects the deploy command manages; it deletes no other {DAGS_PREFIX} object"}
    _put(s3, bucket, MANIFEST_KEY, json.dumps(manifest, indent=1).encode(), owner)


def _files(folder: Path) -> list[tuple[str, Path]]:
    return [(p.relative_to(folder).as_posix(), p) for p in sorted(folder.rglob("*")) if p.is_file()]


def code_version(built: dict[str, Path]) -> str:
    """The code version of the build (``artifacts.fingerprint`` of the staged include/)."""
    return artifacts.fingerprint(built["source"] / "include")


def _exists(s3, bucket: str, key: str, owner: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key, ExpectedBucketOwner=owner)
    except ClientError as err:
        if str(err.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def upload_code(s3, built: dict[str, Path], artifacts_bucket: str, owner: str) -> list[str]:
    """Upload the build's code version beside the older ones; returns the keys it wrote.

    A version is immutable: an object of it already in the bucket (an earlier deploy of the same
    code, or an interrupted one) is skipped, never overwritten. The pointer is not written here.
    """
    version = code_version(built)
    folder = artifacts.version_dir(built["artifacts"], version)
    written = []
    for relative, path in _files(folder):
        key = f"{artifacts.CODE_PREFIX}{version}/{relative}"
        if _exists(s3, artifacts_bucket, key, owner):
            continue
        _put(s3, artifacts_bucket, key, path.read_bytes(), owner)
        written.append(key)
    print(f"code version {version}: {len(written)} objects uploaded to s3://{artifacts_bucket}/"
          f"{artifacts.CODE_PREFIX}{version}/ ({len(_files(folder)) - len(written)} already there)")
    return written


def write_code_pointer(s3, built: dict[str, Path], artifacts_bucket: str, owner: str) -> dict:
    """Point ``code/CURRENT.json`` at the build's version (what the DAGs run from their next task on)."""
    version = code_version(built)
    content = artifacts.pointer(version, [r for r, _ in _files(artifacts.version_dir(built["artifacts"], version))],
                                written_by="infra/deploy_mwaa.py")
    s3.put_object(Bucket=artifacts_bucket, Key=artifacts.POINTER_KEY, Body=json.dumps(content, indent=1).encode(),
                  ContentType="application/json", ExpectedBucketOwner=owner)
    return content


def upload(s3, built: dict[str, Path], mwaa_bucket: str, artifacts_bucket: str, owner: str) -> dict[str, str]:
    """Upload; returns the new VersionId of plugins.zip, requirements.txt and startup.sh.

    Every S3 call carries ``ExpectedBucketOwner=owner``. The code version goes beside the older ones
    (``upload_code``); the pointer to it is written by ``deploy``, last. Under dags/ only keys of the
    previous deploy's manifest that the build no longer has are deleted; other objects there are not
    this command's.
    """
    for bucket in dict.fromkeys((mwaa_bucket, artifacts_bucket)):
        _check_bucket(s3, bucket, owner)
    versioning = s3.get_bucket_versioning(Bucket=mwaa_bucket, ExpectedBucketOwner=owner).get("Status")
    if versioning != "Enabled":
        raise DeployError(f"bucket {mwaa_bucket} must have versioning enabled (MWAA pins object versions)")
    upload_code(s3, built, artifacts_bucket, owner)
    previous = _managed_dags(s3, mwaa_bucket, owner)
    dags = {f"{DAGS_PREFIX}{name}": path for name, path in _files(built["dags"])}
    # Recorded before the upload: an interrupted deploy still knows the keys it may have written.
    _write_manifest(s3, mwaa_bucket, previous | set(dags), owner)
    for key, path in dags.items():
        _put(s3, mwaa_bucket, key, path.read_bytes(), owner)
    present = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=mwaa_bucket, Prefix=DAGS_PREFIX, ExpectedBucketOwner=owner) for o in page.get("Contents", [])}
    for key in sorted((previous - set(dags)) & present):
        s3.delete_object(Bucket=mwaa_bucket, Key=key, ExpectedBucketOwner=owner)
        print(f"deleted s3://{mwaa_bucket}/{key} (uploaded by an earlier deploy, gone from the repository)")
    _write_manifest(s3, mwaa_bucket, set(dags), owner)
    return {name: _put(s3, mwaa_bucket, name, built[name].read_bytes(), owner)
            for name in ("plugins.zip", "requirements.txt", "startup.sh")}


def deploy(*, s3, mwaa, sts, built: dict[str, Path], environment: str, mwaa_bucket: str,
           artifacts_bucket: str) -> dict[str, str]:
    """Check the target (the caller's account, the environment's source bucket), upload, UpdateEnvironment,
    and last point ``code/CURRENT.json`` at the uploaded code version."""
    owner = caller_account(sts)
    check_environment(mwaa, environment, mwaa_bucket)
    versions = upload(s3, built, mwaa_bucket, artifacts_bucket, owner)
    update_environment(mwaa, environment, versions)
    pointer = write_code_pointer(s3, built, artifacts_bucket, owner)
    print(f"s3://{artifacts_bucket}/{artifacts.POINTER_KEY} now names code version {pointer['version']} "
          "(new task runs use it; older versions stay until the lifecycle rule expires them)")
    return versions


def update_environment(mwaa, environment: str, versions: dict[str, str]) -> dict:
    return mwaa.update_environment(
        Name=environment,
        PluginsS3Path="plugins.zip", PluginsS3ObjectVersion=versions["plugins.zip"],
        RequirementsS3Path="requirements.txt", RequirementsS3ObjectVersion=versions["requirements.txt"],
        StartupScriptS3Path="startup.sh", StartupScriptS3ObjectVersion=versions["startup.sh"],
    )


def stack_outputs(cloudformation, stack: str) -> dict[str, str]:
    found = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="infra/deploy_mwaa.py", description=__doc__.split("\n")[0])
    parser.add_argument("--stack", help="CloudFormation stack created from infra/cloudformation/churn.yaml")
    parser.add_argument("--environment", help="MWAA environment name (default: the stack's EnvironmentName)")
    parser.add_argument("--mwaa-bucket", help="the environment's source bucket (default: the stack's MwaaBucket)")
    parser.add_argument("--artifacts-bucket", help="default: the stack's ArtifactsBucket")
    parser.add_argument("--setting", action="append", default=[], help="CHURN_NAME=value for startup.sh (repeatable)")
    parser.add_argument("--region")
    parser.add_argument("--dry-run", action="store_true", help="build and print the plan, upload nothing")
    args = parser.parse_args(argv)
    import boto3

    session = boto3.session.Session(region_name=args.region)
    try:
        outputs = stack_outputs(session.client("cloudformation"), args.stack) if args.stack else {}
        settings = stack_settings(outputs, parse_settings(args.setting))
        check_settings(settings)
        environment = args.environment or outputs.get("EnvironmentName")
        mwaa_bucket = args.mwaa_bucket or outputs.get("MwaaBucket")
        artifacts_bucket = args.artifacts_bucket or settings["CHURN_ARTIFACTS_BUCKET"]
        if not (environment and mwaa_bucket):
            raise DeployError("give --stack, or --environment and --mwaa-bucket")
        with tempfile.TemporaryDirectory(prefix="mwaa-deploy-") as folder:
            built = build(Path(folder), settings)
            print(f"built {sorted(p.name for p in built['dags'].iterdir())}, plugins.zip, requirements.txt, startup.sh, "
                  f"code version {code_version(built)} from the files git tracks")
            if args.dry_run:
                print(f"would upload to s3://{mwaa_bucket}/ and s3://{artifacts_bucket}/, then update {environment}")
                print(built["startup.sh"].read_text())
                return 0
            versions = deploy(s3=session.client("s3"), mwaa=session.client("mwaa"), sts=session.client("sts"),
                              built=built, environment=environment, mwaa_bucket=mwaa_bucket,
                              artifacts_bucket=artifacts_bucket)
    except DeployError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"updated MWAA environment {environment}: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
