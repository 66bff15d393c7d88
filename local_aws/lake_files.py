"""Where the local target keeps an S3 object: ``s3://bucket/key`` is the file ``LAKE_ROOT/bucket/key``.

The one place an ``s3://`` URI becomes a local path. Only the emulator needs it: the control plane's
S3 serves the lake folder (``local_aws/lake_s3.py``), and the local runners hand local Spark and the
SageMaker sandbox ``file://`` paths. The Airflow tasks never do: they read and write the lake
through the S3 API on both targets (``churn_ml.lake``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from churn_ml.lake import split_uri
from local_aws import settings as local_settings

TEMP_PREFIX = ".lake-s3-"  # temporary files of writes in progress: never listed, skipped by Spark (dot files)


def local_path(uri: str) -> Path:
    """Where the local target keeps ``uri``: ``LAKE_ROOT/<bucket>/<key>``, always inside LAKE_ROOT.

    ``local_uri``, the local runners, the control plane's S3 and Spark's ``file://`` arguments all come
    through here. On S3 a key is only a name, and ``a/../../x`` names an object like any other; on a
    filesystem ``..`` climbs out of the folder. So a bucket or key that could lead outside the lake
    root is refused: ``.``/``..`` as the bucket, a ``..`` segment, a NUL. A leading or doubled ``/``
    cannot (pathlib joins the segments below the bucket's folder).
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
        root = local_settings.lake_root()
        path = root / bucket / key
        # Belt and braces: with the rules above the normalised path is always below the root.
        inside = os.path.normpath(path)
        if inside != os.path.normpath(root / bucket) and not inside.startswith(os.path.normpath(root / bucket) + os.sep):
            problem = f"it maps to {inside}, outside the bucket's folder {root / bucket}"
    if problem:
        raise ValueError(
            f"refusing to map {uri!r} to a local lake path: {problem}, which would lead outside the lake root "
            f"{local_settings.lake_root()}. Lake URIs name objects as s3://bucket/key with plain '/'-separated names; "
            "build the key without '..' (or NUL) segments"
        )
    return path


def local_uri(uri: str) -> str:
    """``file://`` form of ``uri`` on the local target (what local Spark reads and writes)."""
    # Not Path.as_uri(): it percent-encodes "=", and Hadoop would take "dt%3D..." literally.
    return f"file://{local_path(uri)}" + ("/" if uri.endswith("/") else "")


def to_local_uris(value):
    """Map every ``s3://`` string inside ``value`` (str, list, dict) to its local ``file://`` URI."""
    if isinstance(value, str):
        return local_uri(value) if value.startswith(("s3://", "s3a://")) else value
    if isinstance(value, list):
        return [to_local_uris(v) for v in value]
    if isinstance(value, dict):
        return {k: to_local_uris(v) for k, v in value.items()}
    return value


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` aside (a ``TEMP_PREFIX`` file in the same folder), then rename it over:
    a reader (the control plane's S3, Spark) finds the old file or the new one whole, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(uri: str, data: bytes) -> None:
    """Write the object ``uri`` of the local lake as the emulated service does (the router's data capture):
    into its file, atomically (``write_atomically``)."""
    write_atomically(local_path(uri), data)


def read_text(uri: str) -> str:
    """The object ``uri`` of the local lake, as text (what the emulated service reads: a manifest)."""
    return local_path(uri).read_text(encoding="utf-8")


def list_keys(prefix_uri: str) -> list[str]:
    """URIs of the local lake's objects whose key starts with ``prefix_uri``'s key, sorted: the files below
    the prefix's folder, without writes in progress (``TEMP_PREFIX``). ``churn_ml.lake.list_keys`` of the
    emulated service (the transform runner lists its input with it)."""
    bucket, key = split_uri(prefix_uri)
    folder = local_path(f"s3://{bucket}/{key[: key.rfind('/') + 1]}")
    base = local_settings.lake_root() / bucket
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(TEMP_PREFIX)]
        for name in files:
            if name.startswith(TEMP_PREFIX):
                continue
            object_key = (Path(parent) / name).relative_to(base).as_posix()
            if object_key.startswith(key):
                found.append(f"s3://{bucket}/{object_key}")
    return sorted(found)
