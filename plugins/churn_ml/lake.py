"""Small reads and writes of lake objects from Airflow tasks, through the S3 hook, on both targets.

One code path: on AWS the S3Hook talks to S3, on the local target to the control plane's S3, which
is the lake folder (local_aws/lake_s3.py), with the same answers, grants (the MWAA role's, enforced:
local_aws/iam.py) and errors. Mapping an ``s3://`` URI to a file happens in the emulator only
(local_aws/lake_files.py). Big data never passes through here: Spark, SageMaker and the control
plane's runners move it.
"""

from __future__ import annotations

import json
from urllib.parse import quote, urlparse

from churn_ml import settings as cfg


def quiet_logs() -> None:
    """For a command that prints its results (scripts/summarize_run.py, ``python -m churn_ml.lineage.cli``): no
    S3 hook "credentials retrieved" lines among them. Call it before anything imports Airflow (its logging
    reads AIRFLOW__LOGGING__NAMESPACE_LEVELS when it is first configured); never from a task."""
    import os
    import warnings

    os.environ["AIRFLOW__LOGGING__NAMESPACE_LEVELS"] = " ".join(
        filter(None, [os.environ.get("AIRFLOW__LOGGING__NAMESPACE_LEVELS", ""), "airflow.providers.amazon=WARNING"]))
    # The Amazon provider 9.34.0's own use of an Airflow 3.3 deprecation (base_aws.py), not the command's.
    warnings.filterwarnings("ignore", message="ProvidersManager.hooks is deprecated")


def split_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme not in ("s3", "s3a") or not parsed.netloc:
        raise ValueError(f"expected an s3://bucket/key URI, got {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def _s3_hook(extra_args: dict | None = None):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=cfg.settings.aws_conn_id, extra_args=extra_args)


def browse_url(uri: str) -> str:
    """The S3 console's page of ``uri`` (on the local target the object is the file ``<LAKE_ROOT>/<bucket>/<key>``)."""
    bucket, key = split_uri(uri)
    return f"https://s3.console.aws.amazon.com/s3/object/{bucket}?prefix={quote(key)}"


def exists(uri: str) -> bool:
    bucket, key = split_uri(uri)
    return _s3_hook().check_for_key(key, bucket_name=bucket)


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def read_bytes(uri: str) -> bytes:
    """The object's bytes; FileNotFoundError when there is none (S3's NoSuchKey)."""
    from botocore.exceptions import ClientError

    bucket, key = split_uri(uri)
    try:
        return _s3_hook().get_conn().get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise FileNotFoundError(f"{uri} does not exist") from err
        raise


def write_bytes(uri: str, data: bytes, content_type: str | None = None) -> None:
    """Write ``data`` to ``uri``; on S3 with ``content_type`` as the object's Content-Type (what a browser
    opening it from the console or a presigned URL is told it is), otherwise S3's default."""
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
    bucket, key = split_uri(prefix_uri)
    return [f"s3://{bucket}/{k}" for k in sorted(_s3_hook().list_keys(bucket_name=bucket, prefix=key) or [])]


def list_folders(prefix_uri: str) -> list[str]:
    """URIs (ending with "/") of the folders directly under a prefix: S3's common prefixes for the delimiter "/",
    one listing however many objects each holds (``list_keys`` would read every key below them), sorted."""
    bucket, key = split_uri(prefix_uri if prefix_uri.endswith("/") else prefix_uri + "/")
    found = _s3_hook().list_prefixes(bucket_name=bucket, prefix=key, delimiter="/") or []
    return sorted(f"s3://{bucket}/{folder}" for folder in found)


def has_data(prefix_uri: str) -> bool:
    """Whether an object under the prefix (recursive) is data, not a marker (``is_marker``); the listing stops at
    the first one, so a partition of thousands of files costs one request."""
    bucket, key = split_uri(prefix_uri)
    pages = _s3_hook().get_conn().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
    return any(not is_marker(item["Key"]) for page in pages for item in page.get("Contents", []))


def delete_prefix(prefix_uri: str) -> int:
    """Delete every object under a prefix; returns how many were deleted."""
    if not prefix_uri.endswith("/"):
        raise ValueError(f"refusing to delete {prefix_uri!r}: a prefix must end with '/'")
    return delete_objects(list_keys(prefix_uri))


def is_marker(uri: str) -> bool:
    """``_SUCCESS``, ``_manifest.json`` and other ``_``/``.`` names: bookkeeping, not data (Spark and Hive skip them too)."""
    return uri.rstrip("/").rsplit("/", 1)[-1].startswith(("_", "."))


def publish(moves: dict[str, str], prefix_uri: str, keep: tuple[str, ...] = ("_SUCCESS",)) -> int:
    """Make ``prefix_uri`` hold exactly the staged objects of ``moves`` (staged URI -> final URI).

    The write-aside-then-swap of a partition: the new objects were written somewhere else first (a
    failed job leaves the published partition as it was); here each is moved over its final name,
    which readers see change from the old object to the new one, never to nothing (a PUT-copy), and
    only then are the objects the new set does not have deleted.
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
    hook = _s3_hook()
    for src, dest in moves.items():
        hook.copy_object(source_bucket_key=src, dest_bucket_key=dest)
    delete_objects([*stale, *moves])
    return len(moves)


def delete_objects(uris: list[str]) -> int:
    """Delete these objects (``s3://`` URIs, any buckets; DeleteObjects per bucket); returns how many."""
    by_bucket: dict[str, list[str]] = {}
    for uri in uris:
        bucket, key = split_uri(uri)
        by_bucket.setdefault(bucket, []).append(key)
    hook = _s3_hook()
    for bucket, keys in by_bucket.items():
        hook.delete_objects(bucket=bucket, keys=keys)
    return len(uris)
