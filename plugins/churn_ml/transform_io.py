"""A SageMaker batch transform's inputs and outputs, as the service resolves them.

Shared by the batch-scoring DAG (which writes the manifest and publishes the outputs), the transform
operator (which checks a completed job's outputs before re-attaching to it) and the local runner.

- ``S3Prefix``: every object under the prefix, the ``_SUCCESS`` marker included (SageMaker would
  send it to the model as an empty input); so the DAG passes a ``ManifestFile`` of the data objects.
- ``ManifestFile``: ``[{"prefix": "s3://bucket/prefix/"}, "relative/key", ...]``.
- Each input gives ``<S3OutputPath>/<input relative to the base prefix>.out``.
"""

from __future__ import annotations

import json

from churn_ml import lake


def write_manifest(prefix_uri: str, manifest_uri: str) -> list[str]:
    """Write the manifest of the data objects under ``prefix_uri`` (markers left out); returns their URIs."""
    prefix = prefix_uri if prefix_uri.endswith("/") else prefix_uri + "/"
    objects = [uri for uri in lake.list_keys(prefix) if not lake.is_marker(uri)]
    if not objects:
        raise FileNotFoundError(f"no data objects under {prefix} (only markers, or nothing): nothing to transform")
    lake.write_bytes(manifest_uri, json.dumps([{"prefix": prefix}, *(u[len(prefix):] for u in objects)]).encode())
    return objects


def read_manifest(uri: str, store=lake) -> tuple[str, list[str]]:
    """(prefix, object URIs) of a SageMaker manifest file, read from ``store`` (``churn_ml.lake``, S3; the
    local transform runner passes ``local_aws.lake_files``, the files the emulated service reads)."""
    try:
        entries = json.loads(store.read_text(uri))
        prefix, keys = entries[0]["prefix"], entries[1:]
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise ValueError(
            f'manifest {uri} is not a SageMaker manifest file ([{{"prefix": "s3://bucket/prefix/"}}, "relative/key", ...]): '
            f"{err}"
        ) from err
    if not isinstance(prefix, str) or not all(isinstance(k, str) for k in keys):
        raise ValueError(f"manifest {uri}: the prefix and every key must be strings")
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    return prefix, [prefix + key for key in keys]


def input_objects(source: dict, store=lake) -> tuple[str, list[str]]:
    """(base prefix, input object URIs) of a TransformInput's ``S3DataSource``, listed in ``store``
    (as ``read_manifest``)."""
    if source["S3DataType"] == "ManifestFile":
        return read_manifest(source["S3Uri"], store)
    prefix = source["S3Uri"]
    base = prefix if prefix.endswith("/") else prefix.rsplit("/", 1)[0] + "/"
    return base, store.list_keys(prefix)


def output_uri(output_path: str, base: str, input_uri: str) -> str:
    return f"{output_path.rstrip('/')}/{input_uri[len(base):]}.out"


def outputs(job: dict) -> dict[str, str]:
    """Input URI -> output URI for a transform job's description (or request)."""
    base, objects = input_objects(job["TransformInput"]["DataSource"]["S3DataSource"])
    return {uri: output_uri(job["TransformOutput"]["S3OutputPath"], base, uri) for uri in objects}


def outputs_present(job: dict) -> bool:
    """Whether every output of a completed job is still where it wrote it (not yet published or cleared)."""
    try:
        return all(lake.exists(out) for out in outputs(job).values())
    except (FileNotFoundError, ValueError):
        return False


def publish_predictions(transform: dict, partition: str, *, run_id: str | None, model_package_version: object,
                        job_identity: dict | None) -> dict:
    """Check that each input has its ``.out`` with one row per input record, then swap the outputs into
    ``partition`` (``lake.publish``) and write its ``_SUCCESS``: rows, the run, the transform job, the
    model version that scored the date (churn_monitoring's realized quality is per version) and the code
    version and inputs of the job (``job_identity``, the transform task's XCom)."""
    rows, moves = 0, {}
    for source, out in outputs(transform).items():
        if not lake.exists(out):
            raise FileNotFoundError(f"batch transform left no output {out} for input {source}")
        expected = sum(1 for line in lake.read_text(source).splitlines() if line.strip())
        got = sum(1 for line in lake.read_text(out).splitlines() if line.strip())
        if got != expected:
            raise ValueError(f"{out} has {got} predictions for {expected} input records")
        rows += got
        moves[out] = partition + out.rsplit("/", 1)[-1]
    lake.publish(moves, partition)
    identity = job_identity or {}
    lake.write_json(f"{partition}_SUCCESS", {
        "rows": rows, "objects": len(moves), "run_id": run_id, "transform_job": transform["TransformJobName"],
        "model_package_version": model_package_version, "code_version": identity.get("code_version"),
        "inputs_digest": (identity.get("inputs") or {}).get("digest"),
    })
    return {"rows": rows, "objects": len(moves), "uri": partition}
