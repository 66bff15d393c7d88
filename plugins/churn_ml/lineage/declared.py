"""What every task of every DAG reads and writes, for its lineage: ``LINEAGE[dag_id][task_id]``.

Each entry is a function of the finished task's run (``TaskRun``: its date, params, return value and
the XComs of the tasks before it) returning ``Declared(inputs, outputs)``, references in the
naming scheme of ``churn_ml.lineage.names`` (``s3://`` locations, a partition per date; ARNs for
the registry's versions and the endpoint). ``churn_ml.lineage.extractor`` turns them into the task's
OpenLineage inputs and outputs, merged with what an operator reports itself (the provider's SageMaker
training and transform operators).

Job-starting tasks name their inputs once already, for their identity (``churn_ml.inputs`` specs,
rendered on the operator): their lineage inputs are the partitions those specs keep, listed when the
task ends. Outputs come from what the job wrote about itself (the features job's run summary, the
training set's manifest) or from the task's return value.

Every task is here: tests/unit/test_lineage.py fails for a task of a DAG without an entry, and for a
task that touches the lake (``dag_support.LAKE_ACCESS``) whose entry declares nothing. A task that
reads and writes nothing outside Airflow (``approved``, ``decay_detected``) says so with ``NOTHING``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, NamedTuple

from churn_ml.dag_support import (
    CLEAN,
    FEATURES,
    FEATURES_RUNS,
    LABELS,
    MODEL_POINTER_KEY,
    MONITORING,
    MONITORING_REPORTS,
    PREDICTIONS,
    QUARANTINE,
    RAW,
    SCORING_INPUT,
    STREAM_PREDICTIONS,
    STREAMING_STATE,
    TRAINING_SETS,
)

LABEL_WINDOW_DAYS = 30  # include/churn/features.py LABEL_WINDOW_DAYS (a test compares them)


class Declared(NamedTuple):
    inputs: list[str]
    outputs: list[str]


NOTHING = Declared([], [])


class TaskRun:
    """A finished task's run, as its lineage needs it; built from the task instance by the extractor,
    or from plain values in tests."""

    def __init__(self, *, ds: str, lake: str, params: dict | None = None, result: Any = None,
                 xcoms: Callable[[str, str], Any] | None = None, operator: Any = None,
                 read_json: Callable[[str], dict] | None = None, partitions: Callable[[dict], list[str]] | None = None,
                 region: str = "", account: str = "") -> None:
        self.ds, self.lake, self.params, self.result = ds, lake.rstrip("/"), params or {}, result
        self.operator, self.region, self.account = operator, region, account
        self._xcoms, self._read_json, self._partitions = xcoms, read_json, partitions

    def xcom(self, task_id: str, key: str = "return_value") -> Any:
        return self._xcoms(task_id, key) if self._xcoms else None

    def read_json(self, uri: str) -> dict:
        if self._read_json is None:
            from churn_ml import lake

            return lake.read_json(uri)
        return self._read_json(uri)

    def day(self, offset: int) -> str:
        return (dt.date.fromisoformat(self.ds) + dt.timedelta(days=offset)).isoformat()

    def at(self, prefix: str, **partition: str) -> str:
        """``s3://<lake>/<prefix>dt=<value>`` (one partition), or the prefix itself without ``partition``."""
        suffix = "/".join(f"{k}={v}" for k, v in partition.items())
        return f"{self.lake}/{prefix}{suffix}".rstrip("/")

    def job_inputs(self) -> list[str]:
        """The partitions (or objects) the operator's input specs keep (``churn_ml.inputs``): those its job
        identity fingerprinted when it started (XCom ``job_identity``), or else listed now."""
        fingerprint = (self.xcom(getattr(self.operator, "task_id", ""), "job_identity") or {}).get("inputs") or {}
        if fingerprint.get("inputs") and all("partitions" in spec for spec in fingerprint["inputs"]):
            return [p for spec in fingerprint["inputs"] for p in spec["partitions"]]
        specs = getattr(self.operator, "inputs", None) or []
        if self._partitions is not None:
            return [p for spec in specs for p in self._partitions(spec)]
        from churn_ml import inputs

        return [p for spec in specs for p in inputs.partitions(spec)]

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"


def _features_job(run: TaskRun) -> Declared:
    summary = run.read_json(run.at(FEATURES_RUNS, ds=run.ds) + "/summary.json")
    cleaned = {entity: sorted(found["partitions"]) for entity, found in summary["entities"].items()}
    snapshots = sorted(summary["features"]["per_day"])
    first, last = summary["labels"]["snapshots"].split("..")
    label_days = _days(first, last)
    quarantine = {q.split("/")[1]: q for q in QUARANTINE}
    outputs = [run.at(f"{CLEAN}{entity}/", dt=day) for entity, days in cleaned.items() for day in days]
    outputs += [run.at(quarantine[entity], dt=day) for entity, days in cleaned.items() for day in days]
    outputs += [run.at(prefix, dt=day) for prefix in (FEATURES, SCORING_INPUT) for day in snapshots]
    outputs += [run.at(LABELS, dt=day) for day in label_days]
    outputs.append(run.at(FEATURES_RUNS, ds=run.ds) + "/summary.json")
    return Declared(run.job_inputs(), outputs)


def _days(first: str, last: str) -> list[str]:
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [(start + dt.timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def _training_set(run: TaskRun) -> str:
    return run.at(TRAINING_SETS, ds=run.ds)


def _training_set_job(run: TaskRun) -> Declared:
    manifest = run.read_json(f"{_training_set(run)}/_manifest.json")
    splits = [f"{_training_set(run)}/{split}" for split in sorted(manifest["splits"])]
    return Declared(run.job_inputs(), [*splits, f"{_training_set(run)}/_manifest.json"])


def _model_package(run: TaskRun, version: dict | None) -> list[str]:
    """The model package version a record names (registry versions, the production pointer)."""
    if not version:
        return []
    arn = version.get("ModelPackageArn") or version.get("model_package_arn")
    return [arn] if arn else []


def _model_artifact(record: dict | None) -> list[str]:
    if not record:
        return []
    url = record.get("model_data_url") or record.get("ModelDataUrl")
    return [url] if url else []


def _training(run: TaskRun) -> Declared:
    """The training job's channels in; its model artifact and the job itself (what the gate reads) out."""
    job = (run.result or {}).get("Training", {})
    channels = [c["DataSource"]["S3DataSource"]["S3Uri"] for c in job.get("InputDataConfig", [])]
    artifact = job.get("ModelArtifacts", {}).get("S3ModelArtifacts")
    name = job.get("TrainingJobName")
    return Declared(channels, [*([artifact] if artifact else []),
                               *([run.arn("sagemaker", f"training-job/{name.lower()}")] if name else [])])


def _tuning(run: TaskRun) -> Declared:
    tuning = (run.result or {}).get("Tuning", {})
    name = tuning.get("HyperParameterTuningJobName")
    channels = [c["DataSource"]["S3DataSource"]["S3Uri"]
                for c in tuning.get("TrainingJobDefinition", {}).get("InputDataConfig", [])]
    return Declared(channels, [run.arn("sagemaker", f"hyper-parameter-tuning-job/{name.lower()}")] if name else [])


def _trained_model(run: TaskRun) -> list[str]:
    job = ((run.xcom("train_model") or {}).get("Training") or {})
    artifact = job.get("ModelArtifacts", {}).get("S3ModelArtifacts")
    return [artifact] if artifact else []


def _training_job(run: TaskRun) -> list[str]:
    """The training job the gate and the registry read (its metrics, its description)."""
    name = ((run.xcom("train_model") or {}).get("Training") or {}).get("TrainingJobName")
    return [run.arn("sagemaker", f"training-job/{name.lower()}")] if name else []


def _register(run: TaskRun) -> Declared:
    version = run.result or {}
    outputs = _model_package(run, version) + [u for u in (version.get("CardUri"), version.get("EvaluationUri"),
                                                           version.get("BaselineUri")) if u]
    return Declared(_trained_model(run) + _training_job(run), outputs)


def _publish_model(run: TaskRun) -> Declared:
    return Declared(_model_package(run, run.result), [f"{run.lake}/{MODEL_POINTER_KEY}"])


def _endpoint(run: TaskRun, described: dict | None) -> list[str]:
    """The endpoint config and endpoint an answer describes (the deploy operator's, the stream's check)."""
    if not described:
        return []
    refs = []
    config = described.get("EndpointConfig", {}).get("EndpointConfigName") or described.get("config")
    name = described.get("Endpoint", {}).get("EndpointName") or described.get("name")
    if config:
        refs.append(run.arn("sagemaker", f"endpoint-config/{config.lower()}"))
    if name:
        refs.append(run.arn("sagemaker", f"endpoint/{name.lower()}"))
    return refs


def _deploy(run: TaskRun) -> Declared:
    published = run.xcom("publish_model") or {}
    return Declared(_model_package(run, published) + _model_artifact(published), _endpoint(run, run.result))


def _pointer(run: TaskRun) -> Declared:
    """A task that reads the production pointer: the pointer, and the model package version it names."""
    return Declared([f"{run.lake}/{MODEL_POINTER_KEY}", *_model_package(run, run.result)], [])


def _batch_transform(run: TaskRun) -> Declared:
    model = run.xcom("resolve_model") or {}
    transform = (run.result or {}).get("Transform", {})
    output = transform.get("TransformOutput", {}).get("S3OutputPath")
    return Declared([*run.job_inputs(), *_model_package(run, model), *_model_artifact(model)],
                    [output] if output else [])


def _publish_predictions(run: TaskRun) -> Declared:
    transform = (run.xcom("batch_transform") or {}).get("Transform", {})
    staged = transform.get("TransformOutput", {}).get("S3OutputPath")
    model = run.xcom("resolve_model") or {}
    return Declared([*([staged] if staged else []), run.at(SCORING_INPUT, dt=run.ds), *_model_package(run, model)],
                    [run.at(PREDICTIONS, dt=run.ds)])


def _monitor(run: TaskRun) -> Declared:
    baseline = run.xcom("resolve_baseline") or {}
    return Declared([*run.job_inputs(), *_model_package_from_version(run, baseline)],
                    [run.at(MONITORING, dt=run.ds)])


def _model_package_from_version(run: TaskRun, record: dict) -> list[str]:
    version = record.get("model_package_version")
    if version is None:
        return []
    from churn_ml import registry

    return [run.arn("sagemaker", f"model-package/{registry.group_name().lower()}/{version}")]


def _alerts_topic() -> str:
    from churn_ml.settings import settings

    return settings.alerts_topic_arn


def _streaming_job_arn(run: TaskRun) -> str:
    from churn_ml.settings import settings

    return run.arn("glue", f"job/{settings.streaming_job_name}")


def _streaming_job(run: TaskRun) -> Declared:
    """The long-running Glue job the task keeps running: the stream and endpoint in, the job and its
    outputs (the stream's prediction table, its checkpoint and progress) out."""
    from churn_ml.settings import settings

    endpoint = run.xcom("ensure_endpoint") or {}
    return Declared([run.arn("kinesis", f"stream/{settings.kinesis_stream}"), *_endpoint(run, endpoint)],
                    [_streaming_job_arn(run), run.at(STREAM_PREDICTIONS), run.at(STREAMING_STATE)])


LINEAGE: dict[str, dict[str, Callable[[TaskRun], Declared]]] = {
    "churn_features": {
        "wait_for_raw_partitions": lambda r: Declared(
            [r.at(f"{RAW}customers/", dt=r.day(-1)), r.at(f"{RAW}events/", dt=r.day(-1))], []),
        "build_features": _features_job,
        "report_features": lambda r: Declared([r.at(FEATURES_RUNS, ds=r.ds) + "/summary.json"], []),
        "run_cost": lambda r: NOTHING,  # reads the ledger: the runs' bookkeeping, like their lineage events
    },
    "churn_training": {
        "wait_for_labels": lambda r: Declared([r.at(LABELS, dt=r.day(-LABEL_WINDOW_DAYS))], []),
        "build_training_set": _training_set_job,
        "inspect_training_set": lambda r: Declared([f"{_training_set(r)}/_manifest.json"], []),
        "resolve_champion": lambda r: Declared(_model_artifact(r.result), []),
        "tune_hyperparameters": _tuning,
        "train_model": _training,
        "quality_gate": lambda r: Declared(_training_job(r), []),
        "register_model": _register,
        "approved": lambda r: Declared(_model_package(r, r.xcom("register_model")), []),
        "publish_model": _publish_model,
        "deploy_model": _deploy,
        "run_cost": lambda r: NOTHING,  # reads the ledger: the runs' bookkeeping, like their lineage events
    },
    "churn_batch_scoring": {
        "wait_for_scoring_input": lambda r: Declared([r.at(SCORING_INPUT, dt=r.ds)], []),
        "resolve_model": _pointer,
        "list_scoring_input": lambda r: Declared(
            [r.at(SCORING_INPUT, dt=r.ds)], [(r.result or {}).get("manifest")] if (r.result or {}).get("manifest") else []),
        "batch_transform": _batch_transform,
        "publish_predictions": _publish_predictions,
        # The Athena check: the day's predictions against the day's scoring input.
        "check_predictions": lambda r: Declared([r.at(PREDICTIONS, dt=r.ds), r.at(SCORING_INPUT, dt=r.ds)], []),
        "run_cost": lambda r: NOTHING,  # reads the ledger: the runs' bookkeeping, like their lineage events
    },
    "churn_streaming": {
        "ensure_endpoint": lambda r: Declared([], _endpoint(r, r.result)),
        "ensure_streaming_job": _streaming_job,
        "check_health": lambda r: Declared([r.at(STREAMING_STATE)], []),
    },
    "churn_streaming_stop": {
        "stop_streaming_job": lambda r: Declared([_streaming_job_arn(r)], []),
    },
    "churn_monitoring": {
        "wait_for_predictions": lambda r: Declared([r.at(PREDICTIONS, dt=r.ds)], []),
        "resolve_baseline": lambda r: Declared(
            [f"{r.lake}/{MODEL_POINTER_KEY}", *_model_package_from_version(r, r.result or {})], []),
        "monitor": _monitor,
        "decide": lambda r: Declared([r.at(MONITORING, dt=r.ds)], []),
        "write_report": lambda r: Declared([r.at(MONITORING, dt=r.ds)], [r.at(MONITORING_REPORTS, dt=r.ds)]),
        "decay_detected": lambda r: NOTHING,
        "alert": lambda r: Declared([], [_alerts_topic()]),
        "trigger_retraining": lambda r: NOTHING,
        "record_costs": lambda r: NOTHING,  # writes the ledger: bookkeeping, not a dataset
        "run_cost": lambda r: NOTHING,  # reads the ledger: the runs' bookkeeping, like their lineage events
    },
}

def declared(dag_id: str, task_id: str, run: TaskRun) -> Declared:
    try:
        entry = LINEAGE[dag_id][task_id]
    except KeyError:
        raise KeyError(
            f"{dag_id}.{task_id} has no lineage declaration: add it to churn_ml.lineage.declared.LINEAGE "
            "(what it reads and writes; NOTHING if it touches nothing outside Airflow)") from None
    return entry(run)
