"""Build include/ into immutable, content-addressed code versions of the artifacts bucket, and say
which version the DAGs use.

Layout of the artifacts bucket (``s3://<CHURN_ARTIFACTS_BUCKET>/``; on the local target the folder
``<LAKE_ROOT>/<bucket>/``):

| object | from | used by |
|---|---|---|
| `code/<version>/jobs/<name>.py` | include/jobs/ | EMR Serverless entryPoint / Glue `--scriptLocation` |
| `code/<version>/lib/churn.zip` | include/churn/ | `--py-files` / `--extra-py-files` |
| `code/<version>/sagemaker/sourcedir.tar.gz` | include/sagemaker/ | training (`sagemaker_submit_directory`) and inference (`SAGEMAKER_SUBMIT_DIRECTORY`) |
| `code/CURRENT.json` | the deploy | which version the DAGs use: `{"version", "published_at", "objects", "written_by"}` |

``<version>`` is ``fingerprint(include)``: a hash of the paths and bytes of include/'s sources, so
the same code always lands under the same prefix and any change of it under a new one. A version,
once written, is never modified: building a version that exists does nothing, and a request that
names ``code/<version>/...`` runs exactly that code for as long as the version is kept, whatever is
deployed meanwhile. Older versions stay beside the new ones (the local target keeps all of them;
on AWS a lifecycle rule expires the versions no DAG run used for ``CodeRetentionDays``, see
``mark_used`` and docs/infrastructure.md).

Which version runs is decided at run time, never at parse time: ``current_version()`` (through the
template macro ``{{ churn.code }}``, ``settings.settings.code``). On AWS it reads ``code/CURRENT.json``,
which ``infra/deploy_mwaa.py`` writes after it uploaded the version's objects (and after the MWAA
update). On the local target ``python -m local_aws.code_deploy`` does the same (``publish_local``:
``scripts/stack.sh start``, ``make run`` and ``make deploy-local`` run it); ``current_version()``
reads the pointer through S3 on both targets, and nothing builds code on the way to a job.

Building into a local bucket folder: a deploy may run while tasks read the folder through the
control plane's S3, and two deploys may overlap. So builds are serialised by an OS file lock (``flock`` on ``.<bucket>.lock`` beside
the bucket's folder), held around the "is the version there? else build it" check, and a build
writes into a staging folder beside the bucket (``.<bucket>.staging/``) and renames the finished
version folder to ``code/<version>`` with one ``rename(2)``: a reader finds the version whole or
not at all. The pointer is replaced the same way (written aside, renamed over). A lake built with
the earlier layout (the bucket folder a symlink to the one build, overwritten in place) is moved to
this layout once, under the lock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

CODE_PREFIX = "code/"
POINTER_KEY = f"{CODE_PREFIX}CURRENT.json"
JOBS = "jobs/"
SPARK_LIB = "lib/churn.zip"
SAGEMAKER_SOURCEDIR = "sagemaker/sourcedir.tar.gz"
# How long current_version() on the aws target trusts the pointer it read (a task renders its
# templates several times; a deploy's switch reaches running workers within this).
POINTER_CACHE_SECONDS = 30.0
# mark_used refreshes an object at most this often (the lifecycle rule counts days).
REFRESH_AFTER = dt.timedelta(days=1)
_VERSION = re.compile(r"[0-9a-f]{16}")
# What a SettingsError about the deployed code tells a person to run, on either target.
DEPLOY = ("Deploy include/: run infra/deploy_mwaa.py (aws target), or python -m local_aws.code_deploy "
          "(local target; scripts/stack.sh start and make deploy-local run it)")

log = logging.getLogger(__name__)


def _is_source(path: Path) -> bool:
    """Python files, and requirements.txt (the SageMaker container pip-installs it from the bundle)."""
    return (
        (path.suffix == ".py" or path.name == "requirements.txt")
        and "__pycache__" not in path.parts and not path.name.startswith(".")
    )


def _sources(include: Path) -> list[Path]:
    return sorted(p for p in include.rglob("*") if p.is_file() and _is_source(p))


def fingerprint(include: Path) -> str:
    """The code version of ``include``: 16 hex digits of a SHA-256 over its sources' paths and bytes."""
    digest = hashlib.sha256()
    for path in _sources(Path(include)):
        digest.update(path.relative_to(include).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _check_version(version: object) -> str:
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise ValueError(f"{version!r} is not a code version (16 lowercase hex digits, artifacts.fingerprint)")
    return version


def code_uri(version: str, relative: str = "") -> str:
    """``s3://<artifacts bucket>/code/<version>/<relative>``: an object (or the prefix) of one code version."""
    from churn_ml.settings import settings

    return f"{settings.artifacts}/{CODE_PREFIX}{_check_version(version)}/{relative.lstrip('/')}"


def glue_code_arguments(version: str, job: str) -> dict[str, str]:
    """The StartJobRun Arguments that make a Glue run run ``version``'s ``jobs/<job>.py`` with its library.

    A Glue job's ScriptLocation and DefaultArguments are the template's and cannot change per run;
    Glue's special parameter ``--scriptLocation`` and ``--extra-py-files`` in a run's Arguments override
    them for that run. Every run this project starts sends both (the template's values are only a
    fallback for a run started by hand)."""
    return {"--scriptLocation": code_uri(version, f"{JOBS}{job}.py"), "--extra-py-files": code_uri(version, SPARK_LIB)}


def version_of(uri: str) -> str | None:
    """The code version a URI of the artifacts bucket names (``.../code/<version>/...``), else None."""
    match = re.search(rf"(?:^|/){CODE_PREFIX}({_VERSION.pattern})(?:/|$)", uri or "")
    return match.group(1) if match else None


def _deterministic_tar(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or not _is_source(path):
                continue
            info = tar.gettarinfo(path, arcname=path.relative_to(folder).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    return buffer.getvalue()


def _write(include: Path, folder: Path) -> None:
    """Write the objects of one version of ``include`` into the empty ``folder``."""
    (folder / "jobs").mkdir(parents=True)
    for job in sorted((include / "jobs").glob("*.py")):
        shutil.copy2(job, folder / "jobs" / job.name)
    (folder / "lib").mkdir()
    with zipfile.ZipFile(folder / SPARK_LIB, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted((include / "churn").rglob("*.py")):
            if "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(include).as_posix())
    (folder / "sagemaker").mkdir()
    (folder / SAGEMAKER_SOURCEDIR).write_bytes(_deterministic_tar(include / "sagemaker"))


def version_objects(folder: Path) -> list[str]:
    """The keys of a built version folder, relative to it (``jobs/x.py``, ``lib/churn.zip``, ...), sorted."""
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file())


def _lock_file(root: Path) -> Path:
    return root.with_name(f".{root.name}.lock")


def _staging_dir(root: Path) -> Path:
    return root.with_name(f".{root.name}.staging")


@contextlib.contextmanager
def build_lock(root: Path) -> Iterator[None]:
    """Hold the exclusive build lock of the bucket folder ``root`` (``flock`` on ``.<name>.lock`` beside it).

    Each call opens its own descriptor, and flock locks belong to the open file description, so
    this serialises threads of one process as well as separate processes. Not reentrant: do not
    call it again while holding it. The lock file is never deleted (deleting it would let two
    holders lock two different files).
    """
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with _lock_file(root).open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def version_dir(root: Path, version: str) -> Path:
    """The folder of ``version`` below the bucket folder ``root``: ``root/code/<version>``."""
    return Path(root) / CODE_PREFIX / _check_version(version)


def _migrate_earlier_layout(root: Path) -> None:
    """The earlier layout made the bucket folder a symlink to its one build (``.<name>.builds/<v>``),
    rebuilt in place. Under the lock: the link goes, a real folder takes its place, the builds go."""
    if root.is_symlink():
        root.unlink()
        shutil.rmtree(root.with_name(f".{root.name}.builds"), ignore_errors=True)
        log.info("moved %s from the earlier artifacts layout (one build, overwritten) to code/<version>/", root)
    root.mkdir(parents=True, exist_ok=True)


def _build_locked(include: Path, root: Path) -> str:
    _migrate_earlier_layout(root)
    version = fingerprint(include)
    final = version_dir(root, version)
    if final.is_dir():
        return version  # immutable: an existing version is never written again
    staging = _staging_dir(root)
    staging.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{version}-", dir=staging))
    try:
        folder.chmod(0o755)  # mkdtemp makes it private; a version folder is an ordinary one
        _write(include, folder)
        if fingerprint(include) != version:
            # include/ changed while it was being copied: the objects may mix two states. Start over
            # (the caller's next call builds the new state under its own version).
            raise RuntimeError(f"include/ ({include}) changed during the build of version {version}; build again")
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(folder, final)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    log.info("built code version %s of %s into %s", version, include, final)
    return version


def build(include: Path, root: Path) -> str:
    """Write the version of ``include`` to ``root/code/<version>/`` unless it is there; returns the version.

    ``root`` is a bucket folder (the local artifacts bucket, or the deploy's staging of it). The
    version folder appears whole, by one rename under the build lock; other versions are untouched.
    """
    include, root = Path(include), Path(root)
    with build_lock(root):
        return _build_locked(include, root)


def pointer(version: str, objects: list[str], written_by: str) -> dict:
    """The content of ``code/CURRENT.json`` for ``version`` (``objects``: its keys, relative to the version)."""
    return {"version": _check_version(version), "published_at": dt.datetime.now(dt.UTC).isoformat(),
            "objects": sorted(objects), "written_by": written_by}


def _read_local_pointer(root: Path) -> str | None:
    try:
        return json.loads((Path(root) / POINTER_KEY).read_text())["version"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def publish_local(include: Path, root: Path, written_by: str) -> str:
    """The local target's deploy (``local_aws.code_deploy``): build ``include`` into the bucket folder
    ``root`` when its version is missing and point ``root/code/CURRENT.json`` at it, recording
    ``written_by``; returns the version. Cheap when both are already so (no lock)."""
    include, root = Path(include), Path(root)
    version = fingerprint(include)
    if not root.is_symlink() and version_dir(root, version).is_dir() and _read_local_pointer(root) == version:
        return version
    with build_lock(root):
        version = _build_locked(include, root)
        if _read_local_pointer(root) != version:
            content = pointer(version, version_objects(version_dir(root, version)), written_by=written_by)
            path = root / POINTER_KEY
            tmp = _staging_dir(root) / f"CURRENT-{uuid.uuid4().hex}.json"
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(content, indent=1, sort_keys=True))
            os.replace(tmp, path)
    return version


_cache: dict[str, tuple[float, str]] = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget the pointer read (tests; a process that must see a deploy at once)."""
    with _cache_lock:
        _cache.clear()


def current_version() -> str:
    """The code version the DAGs use now. Call it at run time (templates, ``execute``), never at parse.

    ``code/CURRENT.json`` of the artifacts bucket, read through S3 on both targets and trusted for
    ``POINTER_CACHE_SECONDS`` in this process. A missing pointer, or a version whose objects are gone
    (expired by the lifecycle rule), raises ``SettingsError`` saying to deploy: no retry can fix either.
    An edit of include/ runs once it is deployed (infra/deploy_mwaa.py on AWS,
    ``python -m local_aws.code_deploy`` on the local target).
    """
    from churn_ml import lake
    from churn_ml import settings as cfg

    uri = f"{cfg.settings.artifacts}/{POINTER_KEY}"
    with _cache_lock:
        cached = _cache.get(uri)
    if cached and time.monotonic() - cached[0] < POINTER_CACHE_SECONDS:
        return cached[1]
    if not lake.exists(uri):
        raise cfg.SettingsError(
            f"{uri} does not exist: no code version has been deployed to this artifacts bucket "
            f"(CHURN_ARTIFACTS_BUCKET). {DEPLOY}, which uploads include/ and writes the pointer")
    try:
        content = json.loads(lake.read_text(uri))
        version, objects = _check_version(content["version"]), list(content["objects"])
    except (ValueError, KeyError, TypeError) as err:
        raise cfg.SettingsError(f"{uri} is not a code pointer a deploy wrote ({err}). {DEPLOY} to write it again"
                                ) from err
    present = {k[len(code_uri(version)):] for k in lake.list_keys(code_uri(version))}
    missing = sorted(set(objects) - present)
    if missing:
        raise cfg.SettingsError(
            f"code version {version} (named by {uri}) is incomplete in the artifacts bucket: {len(missing)} of its "
            f"{len(objects)} objects are missing, e.g. {code_uri(version, missing[0])}. Unused versions expire after "
            f"CodeRetentionDays (infra/cloudformation/churn.yaml). {DEPLOY} to upload it again")
    with _cache_lock:
        _cache[uri] = (time.monotonic(), version)
    return version


def mark_used(version: str) -> None:
    """Record that a DAG run uses ``version`` now, so the lifecycle rule keeps it.

    S3 expiration counts from an object's LastModified, so "used" must move it: each object of the
    version (and the pointer, which the same rule covers) that was last modified more than
    ``REFRESH_AFTER`` ago is copied onto itself (CopyObject, MetadataDirective REPLACE with the same
    content type, metadata and SSE-KMS settings). At most one copy per object a day; the copy is
    conditioned on the ETag listed, so an object a deploy replaced meanwhile is left as the deploy
    wrote it. The same requests on both targets: the local target has no lifecycle rule (it keeps every
    version), but its S3 answers them as AWS's does, so this path runs wherever a version is a day old.
    """
    from churn_ml import lake
    from churn_ml import settings as cfg

    _check_version(version)
    from botocore.exceptions import ClientError

    bucket = cfg.settings.artifacts_bucket
    client = lake._s3_hook().get_conn()
    listed = []
    for prefix in (f"{CODE_PREFIX}{version}/", POINTER_KEY):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            listed += [o for o in page.get("Contents", []) if prefix.endswith("/") or o["Key"] == prefix]
    threshold = dt.datetime.now(dt.UTC) - REFRESH_AFTER
    refreshed = 0
    for entry in listed:
        if entry["LastModified"] >= threshold:
            continue
        head = client.head_object(Bucket=bucket, Key=entry["Key"])
        kwargs = {"MetadataDirective": "REPLACE", "Metadata": head.get("Metadata", {}),
                  "ContentType": head.get("ContentType", "binary/octet-stream")}
        if head.get("ServerSideEncryption"):
            kwargs["ServerSideEncryption"] = head["ServerSideEncryption"]
        if head.get("SSEKMSKeyId"):
            kwargs["SSEKMSKeyId"] = head["SSEKMSKeyId"]
        if head.get("BucketKeyEnabled"):
            kwargs["BucketKeyEnabled"] = True
        try:
            client.copy_object(Bucket=bucket, Key=entry["Key"], CopySourceIfMatch=entry["ETag"],
                               CopySource={"Bucket": bucket, "Key": entry["Key"]}, **kwargs)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412"):
                raise
            continue  # replaced since the listing: it is new anyway
        refreshed += 1
    log.info("code version %s: %d of %d objects refreshed for the lifecycle rule (older than %s)",
             version, refreshed, len(listed), REFRESH_AFTER)
