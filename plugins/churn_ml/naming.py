"""Deterministic job names: dag id, logical date and a hash of the request's content.

A retried or cleared task computes the same name for the same request, so it finds the job its
earlier attempt started instead of starting a second one; a changed request gets a new name.
Never derived from uuid4() or the clock.
"""

from __future__ import annotations

import hashlib
import json
import re

MAX_LEN = 63  # SageMaker job and model names; EMR Serverless and Glue accept longer ones.
TUNING_MAX_LEN = 32  # HyperParameterTuningJobName


def content_hash(payload: object, length: int = 8) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:length]


def job_name(prefix: str, dag_id: str, logical_date: str, payload: object, max_len: int = MAX_LEN) -> str:
    """``<prefix>-<yyyymmdd>-<hash>``; the hash covers dag id, logical date and the request."""
    day = re.sub(r"[^0-9]", "", logical_date)[:8]
    digest = content_hash({"dag_id": dag_id, "logical_date": logical_date, "request": payload})
    stem = re.sub(r"[^a-zA-Z0-9-]", "-", prefix).strip("-")[: max_len - len(day) - len(digest) - 2]
    return f"{stem}-{day}-{digest}"
