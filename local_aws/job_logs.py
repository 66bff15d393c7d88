"""CloudWatch Logs of the control plane: every job's log where AWS puts it, read from the runners' files.

moto's Logs backend keeps what clients create themselves (CreateLogGroup, PutLogEvents, ...); the
jobs' logs are not written into it. The local runners already write each job's output to a file,
and ``local_aws.common.stream`` writes each line's time and pipe beside it
(``<log>.events.jsonl``). ``LocalLogsBackend`` shows those files as the log groups and streams
AWS uses:

- ``/aws/sagemaker/TrainingJobs``, stream ``<TrainingJobName>/algo-1-<epoch seconds>``: training jobs
  and tuning trials (``.control-plane/sagemaker/training-jobs/<name>/training.log``);
- ``/aws/sagemaker/TransformJobs``, stream ``<TransformJobName>/<instance id>-<epoch seconds>``: one per
  worker process of a transform job (``sagemaker/transform-jobs/<name>/transform-<i>.log``);
- ``/aws/sagemaker/Endpoints/<EndpointName>``, stream ``<VariantName>/<instance id>``: each container
  process of the endpoint (``sagemaker/endpoint-instances/<endpoint>/<config>/instance-<i>/server.log``,
  a Python logging file: a line's time is its own timestamp);
- ``<the run's LogGroupName>/output`` and ``/error`` (``/aws-glue/jobs/...`` by default), stream
  ``<JobRunId>``: a Glue batch run's driver stdout and stderr (``spark/job-runs/<run id>/driver.log``);
- an EMR Serverless run whose request enables ``cloudWatchLoggingConfiguration``: its group
  (``/aws/emr-serverless`` by default), streams
  ``<logStreamNamePrefix>/applications/<app>/jobs/<run>/SPARK_DRIVER/stdout`` and ``.../stderr``.
  (A run's S3 ``logUri`` gets ``stdout.gz``/``stderr.gz`` from the runner, ``local_aws.spark``.)

The group and stream list is derived from the job folders on each read (DescribeLogGroups,
DescribeLogStreams, GetLogEvents, FilterLogEvents), and a stream's events are read from its file
(again when the file changed), so the files are the only state: a job's log is readable while it
runs, and a restart of the control plane loses nothing. moto's own code pages, filters
(``filterPattern`` as moto supports it) and tokens over those events.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from moto.logs.models import LogEvent, LogGroup, LogsBackend, LogStream
from moto.logs.responses import LogsResponse

from local_aws.common import EVENTS_SUFFIX, control_plane, events_file
from local_aws.moto_ext import check_overrides, overrides, register_backend, register_responses

TRAINING_GROUP = "/aws/sagemaker/TrainingJobs"
TRANSFORM_GROUP = "/aws/sagemaker/TransformJobs"
GLUE_DEFAULT_GROUP = "/aws-glue/jobs"  # a Glue run's LogGroupName without a security configuration
EMR_DEFAULT_GROUP = "/aws/emr-serverless"


def _operations() -> frozenset[str]:
    """The CloudWatch Logs operations moto answers (a handler on its response class): all of them share
    this backend's state, so all stay emulated."""
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model("logs")
    return frozenset(op for op in model.operation_names if callable(getattr(LogsResponse, xform_name(op), None)))


class Source(NamedTuple):
    """A job's log stream: the runner's plain log file, and which pipe of it (None: both). ``logging``:
    the file is a Python logging file (``<asctime> <level> ...`` lines, rotated as ``.1``, ``.2``), read
    as it is, not through an events file (an endpoint container's ``server.log``)."""

    log_file: Path
    pipe: str | None = None
    logging: bool = False


def _first_timestamp(log_file: Path) -> int | None:
    """The job's first line's time in ms; None while it printed nothing (CloudWatch has no stream for a
    container that has not logged yet, and the stream's name carries this time, so it never changes)."""
    try:
        with events_file(log_file).open(encoding="utf-8") as handle:
            first = handle.readline()
        return int(json.loads(first)["timestamp"]) if first.endswith("\n") else None
    except (OSError, ValueError, KeyError):
        return None


def instance_id(*parts: object) -> str:
    """A stable EC2-shaped instance id (``i-`` and 17 hex digits) for a job's local "instance"."""
    return "i-" + hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:17]


def _job_folders(kind: str) -> Iterator[Path]:
    folder = control_plane("sagemaker", kind)
    yield from sorted(p for p in folder.iterdir() if p.is_dir())


def training_streams() -> dict[str, Source]:
    """``<job>/algo-1-<epoch>`` for each training job (tuning trials are training jobs) that logged."""
    streams = {}
    for job in _job_folders("training-jobs"):
        log_file = job / "training.log"
        first = _first_timestamp(log_file)
        if first is not None:
            streams[f"{job.name}/algo-1-{first // 1000}"] = Source(log_file)
    return streams


def transform_streams() -> dict[str, Source]:
    """``<job>/<instance id>-<epoch>`` for each worker process of each transform job."""
    streams = {}
    for job in _job_folders("transform-jobs"):
        for events in sorted(job.glob(f"transform-*.log{EVENTS_SUFFIX}")):
            log_file = events.with_name(events.name[: -len(EVENTS_SUFFIX)])
            index, first = log_file.stem.rsplit("-", 1)[-1], _first_timestamp(log_file)
            if first is not None:
                streams[f"{job.name}/{instance_id(job.name, index)}-{first // 1000}"] = Source(log_file)
    return streams


def _driver_log(run_id: str) -> Path | None:
    """The driver's log of a batch Spark run (``driver.log`` in the run's job folder, where
    ``local_aws.spark`` runs it; its events file keeps stdout and stderr apart), None while there is
    none. A Glue streaming run writes its own log beside its progress, without line times: not listed."""
    log_file = control_plane("spark", "job-runs", run_id) / "driver.log"
    return log_file if _first_timestamp(log_file) is not None else None


def glue_streams(account: str, region: str) -> dict[str, dict[str, Source]]:
    """``<LogGroupName>/output`` (stdout) and ``/error`` (stderr), stream = JobRunId, for each batch run
    of the control plane's Glue jobs, in the group its GetJobRun names."""
    from moto.backends import get_backend

    groups: dict[str, dict[str, Source]] = {}
    glue = get_backend("glue")[account][region]  # type: ignore[arg-type]
    for job in list(glue.jobs.values()):
        for run in list(job.job_runs):
            log_file = _driver_log(run.job_run_id)
            if log_file is None:
                continue
            group = run.as_dict().get("LogGroupName") or GLUE_DEFAULT_GROUP
            groups.setdefault(f"{group}/output", {})[run.job_run_id] = Source(log_file, "stdout")
            groups.setdefault(f"{group}/error", {})[run.job_run_id] = Source(log_file, "stderr")
    return groups


def emr_serverless_streams(account: str, region: str) -> dict[str, dict[str, Source]]:
    """The driver's stdout and stderr of each EMR Serverless run whose request enables
    ``monitoringConfiguration.cloudWatchLoggingConfiguration``, in its group (default
    ``/aws/emr-serverless``) under ``<logStreamNamePrefix>/applications/<app>/jobs/<run>/SPARK_DRIVER/``."""
    from moto.backends import get_backend

    groups: dict[str, dict[str, Source]] = {}
    emr = get_backend("emr-serverless")[account][region]  # type: ignore[arg-type]
    for application_id, runs in list(emr.job_runs.items()):
        for run in list(runs):
            monitoring = (run.configuration_overrides or {}).get("monitoringConfiguration") or {}
            cloudwatch = monitoring.get("cloudWatchLoggingConfiguration") or {}
            log_file = _driver_log(run.id) if cloudwatch.get("enabled") else None
            if log_file is None:
                continue
            group = cloudwatch.get("logGroupName") or EMR_DEFAULT_GROUP
            prefix = (cloudwatch.get("logStreamNamePrefix") or "").rstrip("/")
            base = f"{prefix}/applications/{application_id}/jobs/{run.id}/SPARK_DRIVER"
            for pipe in ("stdout", "stderr"):
                groups.setdefault(group, {})[f"{base}/{pipe}"] = Source(log_file, pipe)
    return groups


ENDPOINT_GROUP_PREFIX = "/aws/sagemaker/Endpoints/"
_ASCTIME = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}),(\d{3}) ")


def endpoint_streams() -> dict[str, dict[str, Source]]:
    """``/aws/sagemaker/Endpoints/<endpoint>``, stream ``<VariantName>/<instance id>``: each container
    process of each endpoint config the endpoint ran (``sagemaker/endpoint-instances/<endpoint>/<config>/
    instance-<i>/server.log``), the variant named by the config (a config deleted since is left out)."""
    from local_aws.common import created

    groups: dict[str, dict[str, Source]] = {}
    root = control_plane("sagemaker", "endpoint-instances")
    for endpoint in sorted(p for p in root.iterdir() if p.is_dir()):
        for config in sorted(p for p in endpoint.iterdir() if p.is_dir()):
            try:
                variants = ((created("endpoint-configs", config.name) or {}).get("request") or {}).get(
                    "ProductionVariants") or []
            except ValueError:
                continue
            if not variants:
                continue
            for instance in sorted(config.glob("instance-*/server.log")):
                if instance.stat().st_size:
                    stream = f"{variants[0]['VariantName']}/{instance_id(endpoint.name, config.name, instance.parent.name)}"
                    groups.setdefault(ENDPOINT_GROUP_PREFIX + endpoint.name, {})[stream] = Source(instance, logging=True)
    return groups


def _logging_records(log_file: Path) -> Iterator[dict]:
    """A Python logging file's lines (oldest rotation first) as events: a line's time is its asctime
    (local time, as logging writes it), a line without one (a traceback) has the time of the line before."""
    stamp = 0
    for path in [log_file.with_name(f"{log_file.name}.{n}") for n in (2, 1)] + [log_file]:
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            match = _ASCTIME.match(line)
            if match:
                moment = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
                stamp = int(moment.timestamp()) * 1000 + int(match.group(2))
            yield {"timestamp": stamp, "message": line}


class FileLogStream(LogStream):
    """A log stream whose events are a runner's events file (re-read when the file changed).

    Events a client puts into it (PutLogEvents) are kept after the file's, as moto keeps them."""

    def __init__(self, log_group: LogGroup, name: str, source: Source):
        self.source = source
        self._loaded_from: tuple[int, int] | None = None
        self._file_events: list[LogEvent] = []
        self._put: list[LogEvent] = []
        super().__init__(log_group, name)
        first = _first_timestamp(source.log_file) if not source.logging else None
        started = first / 1000 if first else source.log_file.stat().st_mtime
        self.creation_time = dt.datetime.fromtimestamp(started, dt.UTC).replace(tzinfo=None)

    @property
    def events(self) -> list[LogEvent]:  # type: ignore[override]
        self._load()
        return self._file_events + self._put

    @events.setter
    def events(self, value: list[LogEvent]) -> None:  # moto's __init__ and put_log_events assign the list
        self._put = [event for event in value if event not in self._file_events]

    def _load(self) -> None:
        path = self.source.log_file if self.source.logging else events_file(self.source.log_file)
        try:
            stat = path.stat()
        except FileNotFoundError:
            self._file_events, self._loaded_from = [], None
            return
        key = (stat.st_mtime_ns, stat.st_size)
        if key == self._loaded_from:
            return
        loaded, size = [], 0
        for number, record in enumerate(self._records(path)):
            if self.source.pipe and record.get("stream", "stdout") != self.source.pipe:
                continue
            event = LogEvent(int(record["timestamp"]), {"timestamp": int(record["timestamp"]),
                                                         "message": record["message"]})
            event.event_id = number  # stable across re-reads: FilterLogEvents' tokens name it
            loaded.append(event)
            size += len(record["message"])
        self._file_events, self._loaded_from = loaded, key
        self.stored_bytes = size + sum(len(e.message) for e in self._put)
        if loaded:
            self.last_ingestion_time = dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC).replace(tzinfo=None)

    def _records(self, path: Path) -> Iterator[dict]:
        if self.source.logging:
            yield from _logging_records(path)
            return
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue  # a line being written


check_overrides(FileLogStream)


class LocalLogsBackend(LogsBackend):
    """moto's CloudWatch Logs with the control plane's job logs in it (see the module docstring)."""

    EMULATED_OPERATIONS: frozenset[str] = _operations()

    def job_log_groups(self, only: str | None = None) -> dict[str, dict[str, Source]]:
        """The jobs' log groups and streams as the job folders hold them now (``only``: that group)."""
        groups: dict[str, dict[str, Source]] = {}
        if only in (None, TRAINING_GROUP):
            groups[TRAINING_GROUP] = training_streams()
        if only in (None, TRANSFORM_GROUP):
            groups[TRANSFORM_GROUP] = transform_streams()
        if only is None or only.startswith(ENDPOINT_GROUP_PREFIX):
            for group, streams in endpoint_streams().items():
                if only in (None, group):
                    groups[group] = streams
        if only is None or not only.startswith(("/aws/sagemaker/", )):
            for found in (glue_streams(self.account_id, self.region_name),
                          emr_serverless_streams(self.account_id, self.region_name)):
                for group, streams in found.items():
                    if only in (None, group):
                        groups.setdefault(group, {}).update(streams)
        return {group: streams for group, streams in groups.items() if streams}

    def _sync(self, only: str | None = None) -> None:
        """Add the jobs' groups and streams that are not in the backend yet (a stream's events stay in its file)."""
        for group_name, streams in self.job_log_groups(only).items():
            self.ensure_log_group(group_name)
            group = self.groups[group_name]
            for stream_name in [name for name, stream in group.streams.items()
                                if isinstance(stream, FileLogStream) and name not in streams]:
                del group.streams[stream_name]  # its job folder is gone
            for stream_name, source in streams.items():
                current = group.streams.get(stream_name)
                if not isinstance(current, FileLogStream) or current.source != source:
                    group.streams[stream_name] = FileLogStream(group, stream_name, source)

    @overrides
    def describe_log_groups(self, log_group_name_prefix: str | None = None, **kwargs: Any) -> Any:
        self._sync()
        return super().describe_log_groups(log_group_name_prefix, **kwargs)

    @overrides
    def describe_log_streams(self, descending: bool, limit: int, log_group_name: str, log_group_id: str,
                             log_stream_name_prefix: str, next_token: str | None, order_by: str) -> Any:
        self._sync(log_group_name or None)
        return super().describe_log_streams(descending, limit, log_group_name, log_group_id, log_stream_name_prefix,
                                            next_token, order_by)

    @overrides
    def get_log_events(self, log_group_name: str, log_group_id: str, log_stream_name: str, start_time: str,
                       end_time: str, limit: int, next_token: str | None, start_from_head: str) -> Any:
        self._sync(log_group_name or None)
        return super().get_log_events(log_group_name, log_group_id, log_stream_name, start_time, end_time, limit,
                                      next_token, start_from_head)

    @overrides
    def filter_log_events(self, log_group_name: str, log_stream_names: list[str], start_time: int, end_time: int,
                          limit: int | None, next_token: str | None, filter_pattern: str, interleaved: bool) -> Any:
        self._sync(log_group_name)
        return super().filter_log_events(log_group_name, log_stream_names, start_time, end_time, limit, next_token,
                                         filter_pattern, interleaved)


class LocalLogsResponse(LogsResponse):
    """moto's CloudWatch Logs answers, with FilterLogEvents' ``logStreamNamePrefix`` (moto ignores it
    and searches every stream; the SDKs and the console filter a job's streams by it)."""

    EMULATED_OPERATIONS: frozenset[str] = LocalLogsBackend.EMULATED_OPERATIONS

    @overrides
    def filter_log_events(self) -> str:
        prefix = self._get_param("logStreamNamePrefix")
        if not prefix:
            return super().filter_log_events()
        from moto.logs.exceptions import InvalidParameterException, ResourceNotFoundException

        if self._get_param("logStreamNames"):
            raise InvalidParameterException("logStreamNames and logStreamNamePrefix are mutually exclusive")
        backend = self.logs_backend
        group_name = self._get_param("logGroupName")
        if isinstance(backend, LocalLogsBackend):
            backend._sync(group_name)
        if group_name not in backend.groups:
            raise ResourceNotFoundException()
        names = [name for name in backend.groups[group_name].streams if name.startswith(prefix)]
        if not names:
            return json.dumps({"events": [], "searchedLogStreams": []})
        events, next_token, searched = backend.filter_log_events(
            group_name, names, self._get_param("startTime"), self._get_param("endTime"), self._get_param("limit"),
            self._get_param("nextToken"), self._get_param("filterPattern"), self._get_param("interleaved", False))
        return json.dumps({"events": events, "nextToken": next_token, "searchedLogStreams": searched})


def install() -> None:
    """Make ``LocalLogsBackend`` the class moto's CloudWatch Logs instantiates, and ``LocalLogsResponse``
    the handler of its routes (before serving)."""
    from moto.logs import urls

    register_backend("logs", LocalLogsBackend)
    register_responses(urls, LogsResponse, LocalLogsResponse)
