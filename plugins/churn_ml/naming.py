"""Deterministic job names: dag id, logical date and a hash of the request's content.

A retried or cleared task computes the same name for the same request, so it finds the job its
earlier attempt started instead of starting a second one; a changed request gets a new name.
Never derived from uuid4() or the clock. ``check_name`` holds names to the service's own rule.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re

MAX_LEN = 63  # SageMaker job and model names; EMR Serverless and Glue accept longer ones.
TUNING_MAX_LEN = 32  # HyperParameterTuningJobName


def content_hash(payload: object, length: int = 8) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:length]


def job_name(prefix: str, dag_id: str, logical_date: str, payload: object, max_len: int = MAX_LEN) -> str:
    """``<prefix>-<yyyymmdd>-<hash>`` (``<prefix>-<hash>`` without a date, for resources shared by
    runs); the hash covers dag id, logical date and the request."""
    day = re.sub(r"[^0-9]", "", logical_date)[:8]
    digest = content_hash({"dag_id": dag_id, "logical_date": logical_date, "request": payload})
    tail = f"-{day}-{digest}" if day else f"-{digest}"
    stem = re.sub(r"[^a-zA-Z0-9-]", "-", prefix).strip("-")[: max_len - len(tail)]
    return f"{stem}{tail}"


@functools.cache
def _constraint(service: str, operation: str, member: str) -> tuple[re.Pattern, int, str]:
    # botocore is imported here, not at module level: DAG files import this module and parse light.
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    shape = model.operation_model(operation).input_shape.members[member]
    pattern = shape.metadata.get("pattern", ".*")
    return re.compile(pattern.removeprefix("^").removesuffix("$")), int(shape.metadata.get("max", 1 << 20)), pattern


def check_name(value: object, service: str = "sagemaker-runtime", operation: str = "InvokeEndpoint",
               member: str = "EndpointName") -> str:
    """``value`` if the service would accept it as ``member`` of ``operation`` (its pattern and length
    from botocore's service model), else ValueError with the service's ValidationException wording."""
    regex, longest, pattern = _constraint(service, operation, member)
    field = member[0].lower() + member[1:]
    if not isinstance(value, str):
        raise ValueError(f"1 validation error detected: Value at '{field}' must be a string, got {type(value).__name__}")
    shown = value if len(value) <= 80 else value[:80] + "..."
    if len(value) > longest:
        raise ValueError(
            f"1 validation error detected: Value '{shown}' at '{field}' failed to satisfy constraint: "
            f"Member must have length less than or equal to {longest}"
        )
    if not regex.fullmatch(value):
        raise ValueError(
            f"1 validation error detected: Value '{shown}' at '{field}' failed to satisfy constraint: "
            f"Member must satisfy regular expression pattern: {pattern}"
        )
    return value
