"""Local runner for SageMaker batch transform (with CreateModel), same semantics as the service.

``SplitType`` Line splits each input object into records; ``BatchStrategy`` MultiRecord packs as
many records as fit in ``MaxPayloadInMB`` into one request to the inference handlers
(SingleRecord: one each); ``DataProcessing`` applies ``InputFilter`` before inference,
``JoinSource`` Input appends the prediction to the original record, and ``OutputFilter`` selects
the output columns. Each input object ``<key>`` gives one ``<S3OutputPath>/<key relative to the
input prefix>.out``, written only when the whole object succeeded. The handlers run in a separate
process (the "container"), loaded from the file ``SAGEMAKER_PROGRAM`` names inside the model's
``SAGEMAKER_SUBMIT_DIRECTORY`` bundle (``sandbox.load_handlers``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from churn_ml import naming
from churn_ml.transform_io import input_objects, output_uri
from local_aws import lake_files, sandbox
from local_aws import settings as local_settings
from local_aws.common import (
    RUNNER_PATH,
    LocalJobError,
    arn,
    completed_job,
    control_plane,
    now,
    path_segment,
    python,
    read_state,
    stream,
    tail,
    write_state,
)
from local_aws.models import create_model, describe_model, unpack_model, validate_model

# --- JSONPath subset for CSV records, as SageMaker documents it for InputFilter / OutputFilter ---

_INDEX = re.compile(r"^\$\[(.+)\]$")


def parse_csv_filter(expression: str | None) -> list | None:
    """Parse ``$``, ``$[i]``, ``$[i,j,...]`` or ``$[a:b]`` (negative indexes allowed); None keeps all."""
    if expression is None or expression.strip() == "$":
        return None
    match = _INDEX.match(expression.strip())
    if not match:
        raise ValueError(
            f"unsupported filter {expression!r} for CSV data: use '$', '$[i]', '$[i,j,...]' or '$[a:b]'"
        )
    inner = match.group(1)
    try:
        if ":" in inner:
            if "," in inner:
                raise ValueError(inner)
            start, _, stop = inner.partition(":")
            return [slice(int(start) if start.strip() else None, int(stop) if stop.strip() else None)]
        return [int(part) for part in inner.split(",")]
    except ValueError as err:
        raise ValueError(f"filter {expression!r}: indexes must be integers ({err})") from err


def apply_csv_filter(fields: list[str], selectors: list | None) -> list[str]:
    if selectors is None:
        return fields
    out: list[str] = []
    for selector in selectors:
        if isinstance(selector, slice):
            out.extend(fields[selector])
        else:
            try:
                out.append(fields[selector])
            except IndexError as err:
                raise ValueError(f"filter index {selector} is out of range for a record of {len(fields)} fields") from err
    return out


# --- the runner ------------------------------------------------------------------------------

def validate_request(model: dict | None, transform: dict) -> None:
    for key in ("TransformJobName", "ModelName", "TransformInput", "TransformOutput", "TransformResources"):
        if key not in transform:
            raise ValueError(f"transform request is missing {key!r}; see the CreateTransformJob API")
    source = transform["TransformInput"]["DataSource"]["S3DataSource"]
    if source.get("S3DataType") not in ("S3Prefix", "ManifestFile"):
        raise ValueError("TransformInput.DataSource.S3DataSource.S3DataType must be S3Prefix or ManifestFile")
    sandbox.check_lake_uri(source.get("S3Uri"), "TransformInput.DataSource.S3DataSource.S3Uri")
    sandbox.check_lake_uri(transform["TransformOutput"].get("S3OutputPath"), "TransformOutput.S3OutputPath")
    if transform["TransformInput"].get("SplitType", "None") not in ("Line", "None"):
        raise ValueError("TransformInput.SplitType must be Line or None locally")
    if transform["TransformInput"].get("CompressionType", "None") != "None":
        raise ValueError("TransformInput.CompressionType: only None is supported locally")
    if transform.get("BatchStrategy", "MultiRecord") not in ("MultiRecord", "SingleRecord"):
        raise ValueError("BatchStrategy must be MultiRecord or SingleRecord")
    payload = transform.get("MaxPayloadInMB", 6)
    if not isinstance(payload, int) or not 0 <= payload <= 100:
        raise ValueError(f"MaxPayloadInMB must be an integer within [0, 100], got {payload!r}")
    processing = transform.get("DataProcessing", {})
    if processing.get("JoinSource", "None") not in ("Input", "None"):
        raise ValueError("DataProcessing.JoinSource must be Input or None")
    parse_csv_filter(processing.get("InputFilter"))
    parse_csv_filter(processing.get("OutputFilter"))
    if model is not None:
        validate_model(model)


def describe_transform_job(name: str) -> dict | None:
    """DescribeTransformJob of a local job, or None when there is none of that name."""
    return read_state(control_plane("sagemaker", "transform-jobs") / path_segment(name) / "describe.json")


def run_transform_job(config: dict, log: logging.Logger) -> dict:
    """Run ``{"Model": CreateModel, "Transform": CreateTransformJob}`` (or just the transform)."""
    model_request = config.get("Model")
    transform = config.get("Transform", config)
    validate_request(model_request, transform)
    name = naming.check_name(transform.get("TransformJobName"), "sagemaker", "CreateTransformJob", "TransformJobName")
    job_dir, previous = completed_job("transform-jobs", name, "TransformJobStatus", log)
    if previous:
        return {"Model": describe_model(previous["ModelName"]), "Transform": previous}
    state_file = job_dir / "describe.json"

    if model_request:
        create_model(model_request, log)
    model = describe_model(transform["ModelName"])
    model_dir, code_dir, env = unpack_model(model, job_dir)
    try:  # a model created before CreateModel checked its program is held to the same rule here
        sandbox.program_path(code_dir, env["SAGEMAKER_PROGRAM"], "SAGEMAKER_PROGRAM")
    except ValueError as err:
        raise LocalJobError(f"ClientError: model {model['ModelName']}: {err}") from None

    base, objects = input_objects(transform["TransformInput"]["DataSource"]["S3DataSource"], lake_files)
    if not objects:
        raise LocalJobError(f"no input objects in {transform['TransformInput']['DataSource']['S3DataSource']['S3Uri']}")
    output_prefix = transform["TransformOutput"]["S3OutputPath"].rstrip("/")
    processing = transform.get("DataProcessing", {})
    spec = {
        "program": env["SAGEMAKER_PROGRAM"],
        "model_dir": str(model_dir),
        "code_dir": str(code_dir),
        "content_type": transform["TransformInput"].get("ContentType", "text/csv"),
        "accept": transform["TransformOutput"].get("Accept", "text/csv"),
        "split_type": transform["TransformInput"].get("SplitType", "None"),
        "batch_strategy": transform.get("BatchStrategy", "MultiRecord"),
        "max_payload_bytes": (transform.get("MaxPayloadInMB", 6) or 100) * 1024 * 1024,
        "input_filter": processing.get("InputFilter"),
        "output_filter": processing.get("OutputFilter"),
        "join_source": processing.get("JoinSource", "None"),
        "objects": [
            {
                "input": str(lake_files.local_path(uri)),
                "output": str(lake_files.local_path(output_uri(output_prefix, base, uri))),
            }
            for uri in objects
        ],
    }
    # MaxConcurrentTransforms: parallel requests per instance; here, worker processes (at most one
    # per core), each with its share of the objects, the largest objects dealt out first.
    workers = max(1, min(int(transform.get("MaxConcurrentTransforms") or 1), os.cpu_count() or 1, len(objects)))
    shares: list[list[dict]] = [[] for _ in range(workers)]
    loads = [0] * workers
    for item in sorted(spec.pop("objects"), key=lambda o: -Path(o["input"]).stat().st_size):
        least = loads.index(min(loads))
        shares[least].append(item)
        loads[least] += Path(item["input"]).stat().st_size
    for index, share in enumerate(shares):
        (job_dir / f"spec-{index}.json").write_text(json.dumps({**spec, "objects": share}, indent=1))
    describe = {
        "TransformJobName": name,
        "TransformJobArn": arn("sagemaker", "transform-job", name.lower()),
        "TransformJobStatus": "InProgress",
        "ModelName": transform["ModelName"],
        "BatchStrategy": spec["batch_strategy"],
        "MaxPayloadInMB": transform.get("MaxPayloadInMB", 6),
        "TransformInput": transform["TransformInput"],
        "TransformOutput": transform["TransformOutput"],
        "TransformResources": transform["TransformResources"],
        "DataProcessing": processing,
        "CreationTime": now(),
        "TransformStartTime": now(),
    }
    write_state(state_file, describe)
    proc_env = {
        **os.environ,
        # The model's bundle first (as in the container), then this repository's runner and its
        # request batching (churn.scoring, shared with the Spark jobs' endpoint client).
        "PYTHONPATH": os.pathsep.join([str(code_dir), *RUNNER_PATH, str(local_settings.include_dir())]),
        "PYTHONUNBUFFERED": "1",
        # What SageMaker tells a batch-transform container about the job.
        "SAGEMAKER_BATCH": "true",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(transform.get("MaxPayloadInMB", 6)),
        **env,
    }
    threads = str(max(1, (os.cpu_count() or 1) // workers))

    def run_worker(index: int) -> tuple[int, list[str], dict]:
        code, lines = stream(
            [python(), "-m", "local_aws.transform_worker", str(job_dir / f"spec-{index}.json"),
             str(job_dir / f"result-{index}.json")],
            env={**proc_env, "OMP_NUM_THREADS": threads}, log=log, log_file=job_dir / f"transform-{index}.log", cwd=code_dir,
        )
        return code, lines, read_state(job_dir / f"result-{index}.json") or {}

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(run_worker, range(workers)))
    failed = [(i, o) for i, o in enumerate(outcomes) if o[0] != 0]
    code, lines, result = failed[0][1] if failed else outcomes[0]
    describe.update(
        TransformEndTime=now(), LocalSeconds=round(time.monotonic() - started, 2), LocalWorkers=workers,
        LocalRecordCounts={k: v for o in outcomes for k, v in o[2].get("records", {}).items()},
        LocalScoringSeconds=max((o[2].get("scoring_seconds") or 0) for o in outcomes),
    )
    if code != 0:
        reason = result.get("error") or f"ClientError: the inference container exited with {code}"
        describe.update(TransformJobStatus="Failed", FailureReason=reason)
        write_state(state_file, describe)
        raise LocalJobError(
            f"transform job {name} failed: {reason}\nLast lines:\n{tail(lines)}\n"
            f"Full log: {job_dir / f'transform-{failed[0][0]}.log'}"
        )
    describe["TransformJobStatus"] = "Completed"
    write_state(state_file, describe)
    return {"Model": model, "Transform": describe}
