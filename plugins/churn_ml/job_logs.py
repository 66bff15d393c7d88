"""A job's own log in the task log when its deferred task resumes: the tail, bounded, and where the rest is.

The provider's deferrable operators print nothing of what a job printed (apache/airflow#56535,
#64342): the task log of a training task is its waiting lines. ``JobLogMixin.print_job_log`` reads
the job's log where the service puts it, through the provider's hooks, on both targets alike:

- CloudWatch Logs (``AwsLogsHook``): SageMaker training, tuning trials and transform jobs
  (``/aws/sagemaker/TrainingJobs``, ``/aws/sagemaker/TransformJobs``, streams ``<job name>/...``),
  Glue runs (``<LogGroupName>/output`` and ``/error``, stream = the run id);
- S3 (``S3Hook``): EMR Serverless runs' ``stdout.gz``/``stderr.gz`` under the request's
  ``monitoringConfiguration.s3MonitoringConfiguration.logUri``.

Each log's last ``MAX_LINES`` lines within ``MAX_BYTES`` go into the task log, then where the
whole log is. A log that cannot be read (no permission, gone, not written) gives one warning that
says why and where it should be; it never fails the task, whose outcome is the job's.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from typing import Any, NamedTuple

MAX_LINES = 200  # a training log of the DAG (600 rounds at most, a line every 10) fits whole
MAX_BYTES = 64 * 1024
MAX_STREAMS = 4  # streams of one job printed (a transform job has one per instance)


def bounded_tail(lines: Sequence[str], max_lines: int = MAX_LINES, max_bytes: int = MAX_BYTES) -> tuple[list[str], int]:
    """The last lines of ``lines`` that fit both ``max_lines`` and ``max_bytes`` (UTF-8, a newline each),
    and how many earlier lines are left out. A last line longer than ``max_bytes`` keeps its end."""
    kept: list[str] = []
    size = 0
    for line in reversed(lines[len(lines) - max_lines:] if max_lines < len(lines) else lines):
        length = len(line.encode("utf-8")) + 1
        if size + length > max_bytes:
            if not kept:
                end = line.encode("utf-8")[-(max_bytes - 4):].decode("utf-8", errors="ignore")
                kept.append("..." + end)
            break
        kept.append(line)
        size += length
    kept.reverse()
    return kept, len(lines) - len(kept)


class CloudWatchLog(NamedTuple):
    """The streams of ``group`` whose names start with ``stream_prefix`` (a job's streams)."""

    group: str
    stream_prefix: str
    what: str


class S3Log(NamedTuple):
    """A gzipped log object (EMR Serverless' ``stdout.gz``/``stderr.gz``)."""

    uri: str
    what: str


class JobLogMixin:
    """``print_job_log(sources)``: the tail of each of a job's logs into the task log (see the module)."""

    def job_log_sources(self, event: dict[str, Any]) -> list[CloudWatchLog | S3Log]:
        """Where the job of a trigger's ``event`` keeps its log; the operator's own (none by default)."""
        return []

    def print_job_log(self, event: dict[str, Any] | None) -> None:
        """Print the logs of the job ``event`` (a trigger's event) names; never raises."""
        try:
            sources = self.job_log_sources(event or {})
        except Exception as err:  # the job's outcome decides the task, not its log
            self.log.warning("could not find where the job's log is (%s: %s); the task's result is the job's",
                             type(err).__name__, err)
            return
        for source in sources:
            try:
                if isinstance(source, S3Log):
                    self._print_s3(source)
                else:
                    self._print_cloudwatch(source)
            except Exception as err:
                where = source.uri if isinstance(source, S3Log) else f"log group {source.group}, streams {source.stream_prefix}*"
                self.log.warning("could not read the %s (%s: %s); it is at %s", source.what, type(err).__name__,
                                 _short(err), where)

    def _hook_kwargs(self) -> dict[str, Any]:
        return {"aws_conn_id": getattr(self, "aws_conn_id", "aws_default"),
                "region_name": getattr(self, "region_name", None), "verify": getattr(self, "verify", None),
                "config": getattr(self, "botocore_config", None)}

    def _print_cloudwatch(self, source: CloudWatchLog) -> None:
        from airflow.providers.amazon.aws.hooks.logs import AwsLogsHook

        logs = AwsLogsHook(**self._hook_kwargs()).conn
        streams = logs.describe_log_streams(logGroupName=source.group, logStreamNamePrefix=source.stream_prefix,
                                            limit=MAX_STREAMS + 1)["logStreams"]
        if not streams:
            self.log.warning("the %s has no stream %s* in log group %s (yet): nothing to print", source.what,
                             source.stream_prefix, source.group)
            return
        for stream in streams[:MAX_STREAMS]:
            name = stream["logStreamName"]
            # One request: the newest MAX_LINES events, oldest first (GetLogEvents without startFromHead).
            events = logs.get_log_events(logGroupName=source.group, logStreamName=name, startFromHead=False,
                                         limit=MAX_LINES)["events"]
            self._print_tail(f"{source.what}, log group {source.group}, stream {name}",
                             [event["message"].rstrip("\n") for event in events], whole=len(events) < MAX_LINES)
        if len(streams) > MAX_STREAMS:
            self.log.info("more streams of the %s: log group %s, streams %s*", source.what, source.group,
                          source.stream_prefix)

    def _print_s3(self, source: S3Log) -> None:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        kwargs = self._hook_kwargs()
        hook = S3Hook(aws_conn_id=kwargs["aws_conn_id"], verify=kwargs["verify"], config=kwargs["config"])
        bucket, key = S3Hook.parse_s3_url(source.uri)
        body = hook.get_key(key, bucket_name=bucket).get()["Body"].read()
        text = gzip.decompress(body).decode("utf-8", errors="replace") if source.uri.endswith(".gz") else body.decode(
            "utf-8", errors="replace")
        lines = text.splitlines()
        self._print_tail(f"{source.what}, {source.uri}", lines, whole=True)

    def _print_tail(self, where: str, lines: list[str], *, whole: bool) -> None:
        tail, left_out = bounded_tail(lines)
        if not lines:
            self.log.info("%s: empty", where)
            return
        if whole and not left_out:
            self.log.info("%s (all %d lines):\n%s", where, len(lines), "\n".join(tail))
        else:
            self.log.info("%s (the last %d lines; the whole log is there):\n%s", where, len(tail), "\n".join(tail))


def _short(err: Exception) -> str:
    text = str(err)
    return text if len(text) < 400 else text[:400] + "..."
