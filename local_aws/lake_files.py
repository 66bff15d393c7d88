"""Where the local target keeps an S3 object: ``s3://bucket/key`` is the file ``LAKE_ROOT/bucket/key``.

The one place an ``s3://`` URI becomes a local path. Only the emulator needs it: the control plane's
S3 serves the lake folder (``local_aws/lake_s3.py``), and the local runners hand local Spark and the
SageMaker sandbox ``file://`` paths. The Airflow tasks never do: they read and write the lake
through the S3 API on both targets (``churn_ml.lake``).
"""

from __future__ import annotations

import os
from pathlib import Path

from churn_ml import settings as cfg
from churn_ml.lake import split_uri


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
