"""Small reads and writes of lake objects from Airflow tasks, on either target.

The one module of plugins/ that still branches on the target: on the local target ``s3://bucket/key``
is the file ``LAKE_ROOT/bucket/key``, read and written here directly; on the aws target the S3Hook
does the work. The control plane's S3 now serves that folder read-write (local_aws/lake_s3.py), so
the local branch can go (issue 25) once the tests that call these functions with only a lake folder
(the ``lake_root`` fixture, no control plane) get one. Big data never passes through here: Spark,
SageMaker and the control plane's runners move it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import quote, urlparse

from churn_ml import settings as cfg


def split_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme not in ("s3", "s3a") or not parsed.netloc:
        raise ValueError(f"expected an s3://bucket/key URI, got {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def _local_path(uri: str) -> Path:
    """Where the local target keeps ``uri``: ``LAKE_ROOT/<bucket>/<key>``, always inside LAKE_ROOT.

    Only for this module's local branch, and gone with it (see the module docstring); the emulator maps
    URIs with ``local_aws.lake_files.local_path``, whose rules these are. On S3 a key is only a name,
    and ``a/../../x`` names an object like any other; on a filesystem ``..`` climbs out of the folder.
    So a bucket or key that could lead outside the lake root is refused: ``.``/``..`` as the bucket, a
    ``..`` segment, a NUL. A leading or doubled ``/`` cannot (pathlib joins the segments below the
    bucket's folder).
    """
    bucket, key = split_uri(uri)
    problem = None
    if "\0" in uri:
        problem = "it contains a NUL character"
    elif bucket in (".", ".."):
        problem = f"its bucket is {bucket!r}"
    elif ".." in key.split("/"):
        problem = "its key has a '..' segment"
    if problem is None:
        root = cfg.lake_root()
        path = root / bucket / key
        # Belt and braces: with the rules above the normalised path is always below the root.
        inside = os.path.normpath(path)
        if inside != os.path.normpath(root / bucket) and not inside.startswith(os.path.normpath(root / bucket) + os.sep):
            problem = f"it maps to {inside}, outside the bucket's folder {root / bucket}"
    if problem:
        raise ValueError(
            f"refusing to map {uri!r} to a local lake path: {problem}, which would lead outside the lake root "
            f"{cfg.lake_root()}. Lake URIs name objects as s3://bucket/key with plain '/'-separated names; "
            "build the key without '..' (or NUL) segments"
        )
    return path


def _s3_hook(extra_args: dict | None = None):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=cfg.settings.aws_conn_id, extra_args=extra_args)


def browse_url(uri: str) -> str:
    """Where a person opens ``uri``: its file on the local target, the S3 console's page of it on AWS."""
    if cfg.is_local():
        return _local_path(uri).as_uri()
    bucket, key = split_uri(uri)
    return f"https://s3.console.aws.amazon.com/s3/object/{bucket}?prefix={quote(key)}"


def exists(uri: str) -> bool:
    if cfg.is_local():
        return _local_path(uri).exists()
    bucket, key = split_uri(uri)
    return _s3_hook().check_for_key(key, bucket_name=bucket)


def read_text(uri: str) -> str:
    if cfg.is_local():
        path = _local_path(uri)
        if not path.exists():
            raise FileNotFoundError(f"{uri} does not exist (local lake file {path})")
        return path.read_text(encoding="utf-8")
    bucket, key = split_uri(uri)
    return _s3_hook().read_key(key, bucket_name=bucket)


def read_bytes(uri: str) -> bytes:
    if cfg.is_local():
        path = _local_path(uri)
        if not path.exists():
            raise FileNotFoundError(f"{uri} does not exist (local lake file {path})")
        return path.read_bytes()
    bucket, key = split_uri(uri)
    return _s3_hook().get_key(key, bucket_name=bucket).get()["Body"].read()


def write_bytes(uri: str, data: bytes, content_type: str | None = None) -> None:
    """Write ``data`` to ``uri``; on S3 with ``content_type`` as the object's Content-Type (what a browser
    opening it from the console or a presigned URL is told it is), otherwise S3's default."""
    if cfg.is_local():
        path = _local_path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        return
    bucket, key = split_uri(uri)
    _s3_hook({"ContentType": content_type} if content_type else None).load_bytes(data, key, bucket_name=bucket,
                                                                                 replace=True)


def write_json(uri: str, payload: dict) -> None:
    text = json.dumps(payload, indent=1, sort_keys=True, default=str)
    write_bytes(uri, text.encode("utf-8"))


def read_json(uri: str) -> dict:
    return json.loads(read_text(uri))


def list_keys(prefix_uri: str) -> list[str]:
    """URIs of the objects under a prefix (recursive), sorted."""
    if cfg.is_local():
        root = _local_path(prefix_uri)
        if not root.exists():
            return []
        bucket, _ = split_uri(prefix_uri)
        base = cfg.lake_root() / bucket
        return sorted(f"s3://{bucket}/{p.relative_to(base).as_posix()}" for p in root.rglob("*") if p.is_file())
    bucket, key = split_uri(prefix_uri)
    return [f"s3://{bucket}/{k}" for k in sorted(_s3_hook().list_keys(bucket_name=bucket, prefix=key) or [])]


def delete_prefix(prefix_uri: str) -> int:
    """Delete every object under a prefix; returns how many were deleted."""
    if not prefix_uri.endswith("/"):
        raise ValueError(f"refusing to delete {prefix_uri!r}: a prefix must end with '/'")
    keys = list_keys(prefix_uri)
    if cfg.is_local():
        shutil.rmtree(_local_path(prefix_uri), ignore_errors=True)
        return len(keys)
    if keys:
        bucket, _ = split_uri(prefix_uri)
        _s3_hook().delete_objects(bucket=bucket, keys=[split_uri(k)[1] for k in keys])
    return len(keys)


def is_marker(uri: str) -> bool:
    """``_SUCCESS``, ``_manifest.json`` and other ``_``/``.`` names: bookkeeping, not data (Spark and Hive skip them too)."""
    return uri.rstrip("/").rsplit("/", 1)[-1].startswith(("_", "."))


def publish(moves: dict[str, str], prefix_uri: str, keep: tuple[str, ...] = ("_SUCCESS",)) -> int:
    """Make ``prefix_uri`` hold exactly the staged objects of ``moves`` (staged URI -> final URI).

    The write-aside-then-swap of a partition: the new objects were written somewhere else first (a
    failed job leaves the published partition as it was); here each is moved over its final name,
    which readers see change from the old object to the new one, never to nothing (a rename on the
    local target, a PUT-copy on S3), and only then are the objects the new set does not have deleted.
    Objects named in ``keep`` (the partition's marker, rewritten by the caller afterwards) stay.
    Returns how many objects were published.
    """
    if not prefix_uri.endswith("/"):
        raise ValueError(f"refusing to publish into {prefix_uri!r}: a prefix must end with '/'")
    outside = [dest for dest in moves.values() if not dest.startswith(prefix_uri)]
    if outside:
        raise ValueError(f"{outside[0]} is not under {prefix_uri}: publish moves objects into one prefix")
    missing = [src for src in moves if not exists(src)]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} staged object(s) to publish into {prefix_uri} do not exist, e.g. {missing[0]}: "
            "the job that writes them did not finish; rerun it"
        )
    stale = [k for k in list_keys(prefix_uri) if k not in moves.values() and k.rsplit("/", 1)[-1] not in keep]
    if cfg.is_local():
        for src, dest in moves.items():
            target = _local_path(dest)
            target.parent.mkdir(parents=True, exist_ok=True)
            _local_path(src).replace(target)
        for key in stale:
            _local_path(key).unlink(missing_ok=True)
        return len(moves)
    hook = _s3_hook()
    for src, dest in moves.items():
        hook.copy_object(source_bucket_key=src, dest_bucket_key=dest)
    by_bucket: dict[str, list[str]] = {}
    for uri in [*stale, *moves]:
        bucket, key = split_uri(uri)
        by_bucket.setdefault(bucket, []).append(key)
    for bucket, keys in by_bucket.items():
        hook.delete_objects(bucket=bucket, keys=keys)
    return len(moves)
