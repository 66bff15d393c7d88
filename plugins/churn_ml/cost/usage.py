"""Usage records from each service's own Describe/Get answer: what AWS bills, as the service reports it.

Pure functions of the dict boto3 returns (timestamps as boto3 parses them, or ISO strings / epoch seconds
as they are stored in JSON), so the same code reads AWS's answers and the local control plane's:

| service | answer | billed quantity |
|---|---|---|
| SageMaker training (and each tuning trial) | DescribeTrainingJob | ``BillableTimeInSeconds`` x instance count, per instance type; ``TrainingTimeInSeconds`` beside it (the measured spot saving is 1 - billable/training) |
| SageMaker batch transform | DescribeTransformJob | instance count x (``TransformEndTime`` - ``TransformStartTime``) |
| SageMaker endpoint | ``EndpointEvent`` history built from DescribeEndpoint / DescribeEndpointConfig and event times | instance-hours per fleet, variant and UTC day; both fleets while a blue/green update runs |
| EMR Serverless | GetJobRun's ``jobRun`` | ``billedResourceUtilization`` (vCPU-hours, memory GB-hours, storage GB-hours beyond the free 20 GB per worker) |
| Glue | GetJobRun's ``JobRun`` | ``DPUSeconds`` when reported, else ``ExecutionTime`` x capacity with the minimum billed duration; a streaming job's DPU-hours per UTC day |
| Kinesis Data Streams | DescribeStreamSummary, record sizes | shard-hours (provisioned) or stream-hours (on-demand) per UTC day; PUT payload units (25 KB) or GB written (1 KB rounding) |
| S3 | a listing's byte count of a prefix | GB-month for one day: bytes / 2^30 / days in the month |

A job's usage is dated by the UTC day it started (the day its ledger record belongs to); long-running things
(endpoints, a streaming job, a stream, stored bytes) are split across UTC days.

An answer that cannot be billed raises ValueError naming the field it expected: a job that has not ended
(its usage is read when it has), or an ended job without its billing fields. The exception: a job that
ended (Stopped, Failed) without ever running reports no billing fields because AWS bills it nothing, and
its usage is zero.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SECONDS_PER_HOUR = 3600
GIB = 2**30
KINESIS_PUT_UNIT_BYTES = 25 * 1024   # a PUT payload unit: each record rounded up to 25 KB chunks (provisioned)
KINESIS_ON_DEMAND_UNIT_BYTES = 1024  # on-demand data written: each record rounded up to 1 KB
# DPUs per Glue worker (AWS Glue's worker types; Standard is Glue 1.0's, one DPU).
GLUE_WORKER_DPU = {"Standard": 1.0, "G.025X": 0.25, "G.1X": 1.0, "G.2X": 2.0, "G.4X": 4.0, "G.8X": 8.0, "Z.2X": 2.0}
# Minimum billed duration of a Glue Spark job run: 1 minute from Glue 2.0, 10 minutes before.
GLUE_MINIMUM_SECONDS = {"modern": 60, "legacy": 600}

TRAINING_ENDED = ("Completed", "Stopped", "Failed")
TRANSFORM_ENDED = ("Completed", "Stopped", "Failed")
EMR_ENDED = ("SUCCESS", "FAILED", "CANCELLED")
GLUE_ENDED = ("SUCCEEDED", "FAILED", "STOPPED", "TIMEOUT", "ERROR", "EXPIRED")


class JobNotEnded(ValueError):
    """The answer is of a job that has not ended: its usage is read when it has (a later try, which re-attaches)."""


@dataclass(frozen=True)
class Usage:
    """One billed quantity of one resource on one UTC day, in the unit of the price table's ``item``."""

    service: str
    resource: str
    item: str
    quantity: float
    unit: str
    day: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"service": self.service, "resource": self.resource, "item": self.item, "quantity": self.quantity,
                "unit": self.unit, "day": self.day, "detail": dict(self.detail)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        return cls(service=data["service"], resource=data["resource"], item=data["item"],
                   quantity=float(data["quantity"]), unit=data["unit"], day=data["day"], detail=dict(data.get("detail", {})))


# ----------------------------------------------------------------------------------------------- helpers

def _field(answer: Mapping[str, Any], path: str, what: str) -> Any:
    """``answer[a][b]...`` for ``path`` "a.b"; ValueError naming the field and the answer when it is missing."""
    value: Any = answer
    for part in path.split("."):
        if not isinstance(value, Mapping) or value.get(part) is None:
            raise ValueError(f"{what}: expected the field {path} in the answer, it has none "
                             f"(fields: {', '.join(sorted(answer)) or 'none'}); pass the service's Describe/Get answer as boto3 returns it")
        value = value[part]
    return value


def _number(value: Any, path: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{what}: expected {path} to be a number >= 0, got {value!r}")
    return float(value)


def utc(value: Any, path: str = "time", what: str = "timestamp") -> dt.datetime:
    """A timestamp as boto3 parses it (aware datetime), an ISO 8601 string or epoch seconds, in UTC.
    A naive datetime is taken as UTC (as botocore's parser produces for answers without an offset)."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    if isinstance(value, str):
        try:
            return utc(dt.datetime.fromisoformat(value.replace("Z", "+00:00")), path, what)
        except ValueError:
            pass
    raise ValueError(f"{what}: expected {path} to be a timestamp (datetime, ISO 8601 or epoch seconds), got {value!r}")


def day_of(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).date().isoformat()


def split_by_utc_day(start: dt.datetime, end: dt.datetime) -> list[tuple[str, float]]:
    """[(UTC day, hours of [start, end) in it)] in order; empty when end <= start."""
    start, end = utc(start), utc(end)
    pieces = []
    while start < end:
        midnight = dt.datetime.combine(start.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
        stop = min(end, midnight)
        pieces.append((start.date().isoformat(), (stop - start).total_seconds() / SECONDS_PER_HOUR))
        start = stop
    return pieces


def _unwrap(answer: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """GetJobRun answers wrap the run (``{"jobRun": ...}``, ``{"JobRun": ...}``); accept either form."""
    inner = answer.get(key)
    return inner if isinstance(inner, Mapping) else answer


# --------------------------------------------------------------------------------------- SageMaker training

def training_job_usage(job: Mapping[str, Any], *, tuning_job: str | None = None) -> list[Usage]:
    """Instance-hours billed for a training job (DescribeTrainingJob), one record per instance type.

    Billed: ``BillableTimeInSeconds`` x the instance count (managed spot bills only the billable time,
    at the on-demand rate). ``TrainingTimeInSeconds`` goes beside it in ``detail`` with the measured
    ``spot_saving`` = 1 - billable/training, and ``managed_spot`` (``EnableManagedSpotTraining``).
    """
    name = _field(job, "TrainingJobName", "DescribeTrainingJob answer")
    what = f"DescribeTrainingJob answer of {name}"
    status = _field(job, "TrainingJobStatus", what)
    if status not in TRAINING_ENDED:
        raise JobNotEnded(f"{what}: TrainingJobStatus is {status}, expected one of {', '.join(TRAINING_ENDED)}: read a "
                         "job's usage when it has ended")
    groups = _instance_groups(_field(job, "ResourceConfig", what), what)
    started = job.get("TrainingStartTime") or _field(job, "CreationTime", what)
    if job.get("BillableTimeInSeconds") is None and status != "Completed":
        billable = training = 0.0  # ended without running: nothing billed, nothing reported
    else:
        billable = _number(_field(job, "BillableTimeInSeconds", what), "BillableTimeInSeconds", what)
        training = _number(_field(job, "TrainingTimeInSeconds", what), "TrainingTimeInSeconds", what)
    spot = bool(job.get("EnableManagedSpotTraining"))
    usages = []
    for instance_type, count in groups:
        detail = {"training_job": name, "status": status, "instance_type": instance_type, "instance_count": count,
                  "billable_seconds": billable, "training_seconds": training, "managed_spot": spot,
                  "spot_saving": round(1 - billable / training, 6) if training else 0.0}
        if tuning_job:
            detail["tuning_job"] = tuning_job
        usages.append(Usage("sagemaker", name, f"sagemaker.training.{instance_type}",
                             billable * count / SECONDS_PER_HOUR, "instance-hour", day_of(utc(started, "TrainingStartTime", what)),
                             detail))
    return usages


def _instance_groups(resources: Mapping[str, Any], what: str) -> list[tuple[str, int]]:
    """[(instance type, count)] of a ResourceConfig: its InstanceType/InstanceCount or its InstanceGroups."""
    if resources.get("InstanceGroups"):
        return [(_field(g, "InstanceType", what), int(_number(_field(g, "InstanceCount", what),
                                                               "ResourceConfig.InstanceGroups[].InstanceCount", what)))
                for g in resources["InstanceGroups"]]
    instance_type = _field(resources, "InstanceType", f"{what}, ResourceConfig")
    return [(instance_type, int(_number(_field(resources, "InstanceCount", f"{what}, ResourceConfig"),
                                        "ResourceConfig.InstanceCount", what)))]


def tuning_job_usage(tuning_job: str, trials: Iterable[Mapping[str, Any]]) -> list[Usage]:
    """The instance-hours of a hyperparameter tuning job: one usage per trial and instance type, each trial
    the DescribeTrainingJob answer of one of its training jobs (ListTrainingJobsForHyperParameterTuningJob names them)."""
    usages = []
    for trial in trials:
        arn = trial.get("TuningJobArn")
        if arn and not str(arn).endswith(f"/{tuning_job}"):
            raise ValueError(f"DescribeTrainingJob answer of {trial.get('TrainingJobName')}: its TuningJobArn {arn} is "
                             f"not the tuning job {tuning_job}; pass that tuning job's trials only")
        usages.extend(training_job_usage(trial, tuning_job=tuning_job))
    return usages


def measured_spot_saving(usages: Iterable[Usage]) -> float:
    """1 - billed/trained instance-seconds over training usages (a tuning job's trials, a training job)."""
    billed = trained = 0.0
    for usage in usages:
        count = usage.detail.get("instance_count", 1)
        billed += usage.detail.get("billable_seconds", 0.0) * count
        trained += usage.detail.get("training_seconds", 0.0) * count
    return 1 - billed / trained if trained else 0.0


# -------------------------------------------------------------------------------------- SageMaker transform

def transform_job_usage(job: Mapping[str, Any]) -> Usage:
    """Instance-hours of a batch transform job (DescribeTransformJob): InstanceCount x (end - start)."""
    name = _field(job, "TransformJobName", "DescribeTransformJob answer")
    what = f"DescribeTransformJob answer of {name}"
    status = _field(job, "TransformJobStatus", what)
    if status not in TRANSFORM_ENDED:
        raise JobNotEnded(f"{what}: TransformJobStatus is {status}, expected one of {', '.join(TRANSFORM_ENDED)}: read a "
                         "job's usage when it has ended")
    instance_type = _field(job, "TransformResources.InstanceType", what)
    count = int(_number(_field(job, "TransformResources.InstanceCount", what), "TransformResources.InstanceCount", what))
    if job.get("TransformStartTime") is None and status != "Completed":
        seconds, day = 0.0, day_of(utc(_field(job, "CreationTime", what), "CreationTime", what))
    else:
        start = utc(_field(job, "TransformStartTime", what), "TransformStartTime", what)
        end = utc(_field(job, "TransformEndTime", what), "TransformEndTime", what)
        if end < start:
            raise ValueError(f"{what}: TransformEndTime {end.isoformat()} is before TransformStartTime {start.isoformat()}")
        seconds, day = (end - start).total_seconds(), day_of(start)
    return Usage("sagemaker", name, f"sagemaker.transform.{instance_type}", count * seconds / SECONDS_PER_HOUR,
                 "instance-hour", day, {"transform_job": name, "status": status, "instance_type": instance_type,
                                        "instance_count": count, "seconds": seconds})


# ---------------------------------------------------------------------------------------- SageMaker endpoint

@dataclass(frozen=True)
class Variant:
    """A production variant of an endpoint config: its instance type and count."""

    name: str
    instance_type: str
    instance_count: int


ENDPOINT_EVENTS = ("create", "update", "update_complete", "rollback", "scale", "delete")


@dataclass(frozen=True)
class EndpointEvent:
    """One change of an endpoint's fleets, at ``time``. What runs (and is billed) follows the events:

    - ``create`` (``config``, ``variants``): the endpoint's first fleet starts (CreateEndpoint);
    - ``update`` (``config``, ``variants``): a blue/green UpdateEndpoint starts the new (green) fleet of
      ``config``; the running (blue) fleet keeps running, and both are billed;
    - ``update_complete`` (``config``): the update to ``config`` finished: every other fleet is terminated;
    - ``rollback`` (``config``): the update to ``config`` was rolled back: its fleet is terminated;
    - ``scale`` (``config``, ``variants``): ``config``'s running fleet has these counts from now on (auto
      scaling, UpdateEndpointWeightsAndCapacities);
    - ``delete``: every fleet is terminated (DeleteEndpoint).

    ``creation_event``, ``update_events``, ``scale_event`` and ``deletion_event`` build them from the answers.
    """

    time: dt.datetime
    event: str
    config: str = ""
    variants: tuple[Variant, ...] = ()


def variants_of(endpoint_config: Mapping[str, Any]) -> tuple[Variant, ...]:
    """The instance variants of a DescribeEndpointConfig answer (serverless variants are billed per request: refused)."""
    name = _field(endpoint_config, "EndpointConfigName", "DescribeEndpointConfig answer")
    what = f"DescribeEndpointConfig answer of {name}"
    variants = []
    for variant in _field(endpoint_config, "ProductionVariants", what):
        label = variant.get("VariantName", "?")
        if variant.get("ServerlessConfig"):
            raise ValueError(f"{what}: variant {label} is serverless, billed per request and compute time, not per "
                             "instance-hour; the ledger prices instance variants only")
        variants.append(Variant(_field(variant, "VariantName", what), _field(variant, "InstanceType", f"{what}, variant {label}"),
                                int(_number(_field(variant, "InitialInstanceCount", f"{what}, variant {label}"),
                                            "InitialInstanceCount", what))))
    return tuple(variants)


def creation_event(endpoint: Mapping[str, Any], endpoint_config: Mapping[str, Any]) -> EndpointEvent:
    """CreateEndpoint: DescribeEndpoint's CreationTime, with the config the endpoint was created with."""
    what = f"DescribeEndpoint answer of {endpoint.get('EndpointName', '?')}"
    return EndpointEvent(utc(_field(endpoint, "CreationTime", what), "CreationTime", what), "create",
                         endpoint_config["EndpointConfigName"], variants_of(endpoint_config))


def update_events(started: Any, endpoint_config: Mapping[str, Any], *, completed: Any = None,
                  rolled_back: Any = None) -> list[EndpointEvent]:
    """A blue/green UpdateEndpoint to ``endpoint_config``: started, then completed or rolled back (or neither yet)."""
    if completed is not None and rolled_back is not None:
        raise ValueError("an update either completed or rolled back, not both: pass one of completed= and rolled_back=")
    config = endpoint_config["EndpointConfigName"]
    events = [EndpointEvent(utc(started, "started"), "update", config, variants_of(endpoint_config))]
    if completed is not None:
        events.append(EndpointEvent(utc(completed, "completed"), "update_complete", config))
    if rolled_back is not None:
        events.append(EndpointEvent(utc(rolled_back, "rolled_back"), "rollback", config))
    return events


def scale_event(time: Any, endpoint: Mapping[str, Any], endpoint_config: Mapping[str, Any]) -> EndpointEvent:
    """The counts DescribeEndpoint reports (ProductionVariants[].CurrentInstanceCount) from ``time`` on, the
    instance types from the endpoint's config (DescribeEndpoint's variant summaries do not name them)."""
    what = f"DescribeEndpoint answer of {endpoint.get('EndpointName', '?')}"
    counts = {v["VariantName"]: int(_number(_field(v, "CurrentInstanceCount", f"{what}, variant {v.get('VariantName')}"),
                                            "CurrentInstanceCount", what))
              for v in _field(endpoint, "ProductionVariants", what)}
    variants = tuple(Variant(v.name, v.instance_type, counts.get(v.name, v.instance_count)) for v in variants_of(endpoint_config))
    return EndpointEvent(utc(time, "time"), "scale", endpoint_config["EndpointConfigName"], variants)


def deletion_event(time: Any) -> EndpointEvent:
    return EndpointEvent(utc(time, "time"), "delete")


def endpoint_usage(endpoint: str, events: Sequence[EndpointEvent], until: Any) -> list[Usage]:
    """Instance-hours of an endpoint from its deployment history, per fleet (endpoint config), variant and UTC day.

    Fleets still running at ``until`` (the end of the period the ledger covers, e.g. the end of a day) are
    billed up to it. Events out of order are sorted; events that do not fit what runs raise ValueError.
    """
    until = utc(until, "until")
    running: dict[str, tuple[dt.datetime, tuple[Variant, ...]]] = {}
    intervals: list[tuple[str, Variant, dt.datetime, dt.datetime]] = []

    def stop(config: str, time: dt.datetime) -> None:
        since, variants = running.pop(config)
        intervals.extend((config, variant, since, time) for variant in variants)

    for event in sorted(events, key=lambda e: utc(e.time)):
        time = utc(event.time)
        where = f"endpoint {endpoint}: {event.event} at {time.isoformat()}"
        if event.event not in ENDPOINT_EVENTS:
            raise ValueError(f"{where}: unknown event, expected one of {', '.join(ENDPOINT_EVENTS)}")
        if time > until:
            raise ValueError(f"{where} is after until={until.isoformat()}: pass an until at or after the last event")
        if event.event == "create":
            if running:
                raise ValueError(f"{where}: the endpoint already runs {', '.join(running)}; an endpoint is created once "
                                 "(after a delete, create it again)")
            running[event.config] = (time, event.variants)
        elif event.event == "update":
            if not running:
                raise ValueError(f"{where}: no fleet runs to update; expected a create before it")
            running[event.config] = (time, event.variants)
        elif event.event in ("update_complete", "rollback", "scale"):
            if event.config not in running:
                raise ValueError(f"{where}: endpoint config {event.config!r} has no running fleet "
                                 f"(running: {', '.join(running) or 'none'})")
            if event.event == "update_complete":
                for config in [c for c in running if c != event.config]:
                    stop(config, time)
            elif event.event == "rollback":
                stop(event.config, time)
            else:
                stop(event.config, time)
                running[event.config] = (time, event.variants)
        else:  # delete
            for config in list(running):
                stop(config, time)
    for config in list(running):
        stop(config, until)

    totals: dict[tuple[str, str, str, str], list[float]] = {}
    for config, variant, start, end in intervals:
        for day, hours in split_by_utc_day(start, end):
            entry = totals.setdefault((day, config, variant.name, variant.instance_type), [0.0, 0.0])
            entry[0] += hours * variant.instance_count
            entry[1] += hours
    return [Usage("sagemaker", endpoint, f"sagemaker.hosting.{instance_type}", instance_hours, "instance-hour", day,
                  {"endpoint": endpoint, "endpoint_config": config, "variant": variant, "instance_type": instance_type,
                   "fleet_hours": fleet_hours})
            for (day, config, variant, instance_type), (instance_hours, fleet_hours) in sorted(totals.items())]


# ------------------------------------------------------------------------------------------ EMR Serverless

def emr_serverless_usage(answer: Mapping[str, Any]) -> list[Usage]:
    """vCPU-hours, memory GB-hours and storage GB-hours of an EMR Serverless job run (GetJobRun), as
    ``billedResourceUtilization`` reports them: AWS's own billed figures (with its 1-minute minimum per
    worker, storage only beyond the free 20 GB per worker, idle pre-initialized capacity excluded)."""
    run = _unwrap(answer, "jobRun")
    run_id = _field(run, "jobRunId", "GetJobRun answer")
    what = f"GetJobRun answer of EMR Serverless job run {run_id}"
    state = _field(run, "state", what)
    if state not in EMR_ENDED:
        raise JobNotEnded(f"{what}: state is {state}, expected one of {', '.join(EMR_ENDED)}: read a run's usage when it has ended")
    day = day_of(utc(run.get("startedAt") or _field(run, "createdAt", what), "startedAt", what))
    billed = run.get("billedResourceUtilization")
    if billed is None and state != "SUCCESS":
        billed = {"vCPUHour": 0.0, "memoryGBHour": 0.0, "storageGBHour": 0.0}  # ended without running
    else:
        billed = _field(run, "billedResourceUtilization", what)
    resource = run.get("name") or run_id
    detail = {"application_id": run.get("applicationId"), "job_run_id": run_id, "state": state}
    items = (("vCPUHour", "emr_serverless.vcpu_hour", "vCPU-hour"), ("memoryGBHour", "emr_serverless.memory_gb_hour", "GB-hour"),
             ("storageGBHour", "emr_serverless.storage_gb_hour", "GB-hour"))
    return [Usage("emr-serverless", resource, item,
                  _number(billed.get(key, 0.0), f"billedResourceUtilization.{key}", what), unit, day, detail)
            for key, item, unit in items]


# ------------------------------------------------------------------------------------------------------ Glue

def glue_capacity(run: Mapping[str, Any], what: str = "Glue JobRun") -> float:
    """DPUs of a Glue job run: NumberOfWorkers x DPU per WorkerType, else MaxCapacity."""
    if run.get("WorkerType"):
        worker = run["WorkerType"]
        if worker not in GLUE_WORKER_DPU:
            raise ValueError(f"{what}: WorkerType {worker!r} has no DPU figure here; add it to "
                             "churn_ml.cost.usage.GLUE_WORKER_DPU (the Glue pricing page gives each worker type's DPUs)")
        return _number(_field(run, "NumberOfWorkers", what), "NumberOfWorkers", what) * GLUE_WORKER_DPU[worker]
    if run.get("MaxCapacity") is not None:
        return _number(run["MaxCapacity"], "MaxCapacity", what)
    raise ValueError(f"{what}: expected WorkerType and NumberOfWorkers, or MaxCapacity (the run's DPUs), in the answer")


def glue_minimum_seconds(glue_version: str) -> int:
    """AWS's minimum billed duration of a Glue Spark job run: 1 minute from Glue 2.0, 10 minutes before."""
    try:
        major = float(glue_version)
    except (TypeError, ValueError):
        raise ValueError(f"expected GlueVersion like '4.0', got {glue_version!r}") from None
    return GLUE_MINIMUM_SECONDS["modern" if major >= 2.0 else "legacy"]


def glue_job_run_usage(answer: Mapping[str, Any]) -> Usage:
    """DPU-hours of a Glue batch job run (GetJobRun): ``DPUSeconds`` when the service reports it (auto scaling,
    flex), else ``ExecutionTime`` x the run's capacity, with the minimum billed duration applied (1 minute
    from Glue 2.0, 10 minutes before). ``DPUSeconds`` is AWS's own figure and is taken as it is."""
    run = _unwrap(answer, "JobRun")
    run_id = _field(run, "Id", "GetJobRun answer")
    what = f"GetJobRun answer of Glue job run {run_id}"
    job = _field(run, "JobName", what)
    state = _field(run, "JobRunState", what)
    if state not in GLUE_ENDED:
        raise JobNotEnded(f"{what}: JobRunState is {state}, expected one of {', '.join(GLUE_ENDED)}: read a run's usage when "
                         "it has ended (a streaming job's: glue_streaming_usage)")
    day = day_of(utc(_field(run, "StartedOn", what), "StartedOn", what))
    item = "glue.flex.dpu_hour" if run.get("ExecutionClass") == "FLEX" else "glue.etl.dpu_hour"
    detail: dict[str, Any] = {"job_name": job, "job_run_id": run_id, "state": state}
    if run.get("DPUSeconds") is not None:
        dpu_seconds = _number(run["DPUSeconds"], "DPUSeconds", what)
        detail.update(basis="DPUSeconds", dpu_seconds=dpu_seconds)
    else:
        capacity = glue_capacity(run, what)
        executed = _number(_field(run, "ExecutionTime", what), "ExecutionTime", what)
        minimum = glue_minimum_seconds(_field(run, "GlueVersion", what))
        billed = max(executed, minimum) if executed or state == "SUCCEEDED" else 0.0
        dpu_seconds = billed * capacity
        detail.update(basis="ExecutionTime x capacity", execution_seconds=executed, billed_seconds=billed,
                      minimum_seconds=minimum, dpus=capacity)
    return Usage("glue", job, item, dpu_seconds / SECONDS_PER_HOUR, "DPU-hour", day, detail)


def glue_streaming_usage(answer: Mapping[str, Any], *, window: tuple[Any, Any] | None = None,
                         until: Any = None) -> list[Usage]:
    """DPU-hours of a Glue streaming job run per UTC day: its capacity x the hours it ran, from StartedOn to
    CompletedOn (or ``until`` while it runs), clipped to ``window`` (start, end) when given, e.g. one day."""
    run = _unwrap(answer, "JobRun")
    run_id = _field(run, "Id", "GetJobRun answer")
    what = f"GetJobRun answer of Glue streaming job run {run_id}"
    job = _field(run, "JobName", what)
    state = _field(run, "JobRunState", what)
    capacity = glue_capacity(run, what)
    if run.get("StartedOn") is None and state in GLUE_ENDED:
        return []  # ended before it started: nothing ran
    start = utc(_field(run, "StartedOn", what), "StartedOn", what)
    if run.get("CompletedOn") is not None:
        end = utc(run["CompletedOn"], "CompletedOn", what)
    elif state in GLUE_ENDED:
        raise ValueError(f"{what}: JobRunState is {state} but there is no CompletedOn; expected the end of the run")
    elif until is None:
        raise ValueError(f"{what}: the run is {state}; pass until= (the end of the period to bill, e.g. now)")
    else:
        end = utc(until, "until")
    if window is not None:
        start, end = max(start, utc(window[0], "window start")), min(end, utc(window[1], "window end"))
    return [Usage("glue", job, "glue.streaming.dpu_hour", hours * capacity, "DPU-hour", day,
                  {"job_name": job, "job_run_id": run_id, "state": state, "dpus": capacity, "hours": hours})
            for day, hours in split_by_utc_day(start, end)]


# --------------------------------------------------------------------------------------------------- Kinesis

def kinesis_stream_usage(summary: Mapping[str, Any], start: Any, end: Any) -> list[Usage]:
    """Shard-hours (provisioned) or stream-hours (on-demand) of a stream over [start, end), per UTC day, from
    DescribeStreamSummary (its ``StreamDescriptionSummary``): call it per span of constant ``OpenShardCount``."""
    stream = _unwrap(summary, "StreamDescriptionSummary")
    name = _field(stream, "StreamName", "DescribeStreamSummary answer")
    what = f"DescribeStreamSummary answer of {name}"
    mode = (stream.get("StreamModeDetails") or {}).get("StreamMode", "PROVISIONED")
    if mode == "ON_DEMAND":
        return [Usage("kinesis", name, "kinesis.on_demand.stream_hour", hours, "stream-hour", day,
                      {"stream_mode": mode, "hours": hours}) for day, hours in split_by_utc_day(utc(start), utc(end))]
    if mode != "PROVISIONED":
        raise ValueError(f"{what}: StreamModeDetails.StreamMode is {mode!r}, expected PROVISIONED or ON_DEMAND")
    shards = int(_number(_field(stream, "OpenShardCount", what), "OpenShardCount", what))
    return [Usage("kinesis", name, "kinesis.shard_hour", hours * shards, "shard-hour", day,
                  {"stream_mode": mode, "open_shards": shards, "hours": hours})
            for day, hours in split_by_utc_day(utc(start), utc(end))]


def kinesis_put_usage(stream: str, record_sizes: Iterable[int], day: str, *, mode: str = "PROVISIONED") -> Usage:
    """What writing records of these sizes (bytes: data blob plus partition key) costs: PUT payload units
    (provisioned: each record rounded up to 25 KB units), in millions; or GB written (on-demand: each record
    rounded up to 1 KB)."""
    if mode not in ("PROVISIONED", "ON_DEMAND"):
        raise ValueError(f"stream {stream}: mode {mode!r}, expected PROVISIONED or ON_DEMAND (StreamModeDetails.StreamMode)")
    chunk = KINESIS_PUT_UNIT_BYTES if mode == "PROVISIONED" else KINESIS_ON_DEMAND_UNIT_BYTES
    units = records = 0
    for size in record_sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"stream {stream}: expected record sizes in bytes (integers >= 0), got {size!r}")
        units += max(1, math.ceil(size / chunk))
        records += 1
    if mode == "PROVISIONED":
        return Usage("kinesis", stream, "kinesis.put_payload_units", units / 1e6, "million PUT payload units", day,
                     {"records": records, "put_payload_units": units})
    return Usage("kinesis", stream, "kinesis.on_demand.data_in_gb", units * KINESIS_ON_DEMAND_UNIT_BYTES / GIB, "GB", day,
                 {"records": records, "billed_kb": units})


# -------------------------------------------------------------------------------------------------------- S3

def listing_bytes(pages: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Bytes per storage class of ListObjectsV2 pages (``Contents[].Size``, ``StorageClass``; STANDARD when absent)."""
    found: dict[str, int] = {}
    for page in pages:
        for entry in page.get("Contents", []) or []:
            size = _number(_field(entry, "Size", f"ListObjectsV2 entry {entry.get('Key', '?')}"), "Size", "ListObjectsV2 entry")
            cls = entry.get("StorageClass") or "STANDARD"
            found[cls] = found.get(cls, 0) + int(size)
    return found


def s3_storage_usage(bucket: str, prefix: str, total_bytes: int, day: str) -> Usage:
    """One day of S3 Standard storage of a prefix: bytes / 2^30 x 1/days-in-month GB-month (the days of a
    month add up to its average GB stored, which S3 bills per GB-month)."""
    if isinstance(total_bytes, bool) or not isinstance(total_bytes, int) or total_bytes < 0:
        raise ValueError(f"s3://{bucket}/{prefix}: expected a byte count (integer >= 0), got {total_bytes!r}")
    try:
        date = dt.date.fromisoformat(day)
    except (TypeError, ValueError):
        raise ValueError(f"s3://{bucket}/{prefix}: expected day as YYYY-MM-DD, got {day!r}") from None
    days = calendar.monthrange(date.year, date.month)[1]
    return Usage("s3", f"s3://{bucket}/{prefix}", "s3.standard.gb_month", total_bytes / GIB / days, "GB-month", day,
                 {"bytes": total_bytes, "days_in_month": days})
