"""An OpenLineage transport that writes every event into the lake, one object per event.

Configured like any transport (``[openlineage] transport``, JSON), by its class path:

    {"type": "churn_ml.lineage.transport.LakeTransport", "uri": "s3://<lake>/_lineage/", "aws_conn_id": "aws_default"}

Each event becomes ``<uri>events/date=<UTC day>/<UTC time>-<eventType>-<runId>-<pid>-<n>.json``:
one JSON line (the event as the spec serialises it, newline-terminated). One PutObject per event, so
nothing is appended and a reader never sees half an event (S3 shows an object once it is complete; the
local control plane writes it aside and renames it). It goes through the Airflow AWS connection's
S3 client, the one every task uses (AWS, or the local control plane), but not through ``S3Hook``'s
upload methods, which would report the event object as the task's own output. Beside an HTTP backend
such as Marquez use a ``composite`` transport (docs/lineage.md).
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
from typing import Any

import attr
from openlineage.client.serde import Serde
from openlineage.client.transport import Config, Transport

from churn_ml.lineage.names import split_s3

EVENTS = "events/"


class LakeTransportError(ValueError):
    """The transport's configuration is unusable; the message says what to set."""


@attr.define
class LakeConfig(Config):
    uri: str
    aws_conn_id: str = "aws_default"

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> LakeConfig:
        uri = params.get("uri")
        if not isinstance(uri, str) or not uri.startswith("s3://") or not uri.endswith("/"):
            raise LakeTransportError(
                f"the lake transport needs 'uri', the s3://bucket/prefix/ (ending with '/') its events go under, "
                f"got {uri!r}: set it in [openlineage] transport")
        split_s3(uri)
        return cls(uri=uri, aws_conn_id=params.get("aws_conn_id") or "aws_default")


_sequence = itertools.count()


def event_key(prefix: str, event: Any) -> str:
    """Where an event goes below the transport's prefix: by the UTC day and time of its eventTime, so a
    listing is in time order within a day (``events/date=2026-07-02/20260702T101500.123456Z-COMPLETE-<run>-...``)."""
    when = dt.datetime.fromisoformat(str(event.eventTime).replace("Z", "+00:00"))
    when = (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    kind = getattr(getattr(event, "eventType", None), "value", None) or "EVENT"
    return (f"{prefix}{EVENTS}date={when:%Y-%m-%d}/{when:%Y%m%dT%H%M%S.%fZ}-{kind}-{event.run.runId}-"
            f"{os.getpid()}-{next(_sequence)}.json")


class LakeTransport(Transport):
    kind = "churn_lake"
    config_class = LakeConfig

    def __init__(self, config: LakeConfig) -> None:
        self.config = config
        self.bucket, key = split_s3(config.uri)
        self.prefix = f"{key}/" if key else ""
        self._client = None

    def client(self) -> Any:
        if self._client is None:
            from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

            self._client = AwsBaseHook(aws_conn_id=self.config.aws_conn_id, client_type="s3").get_conn()
        return self._client

    def emit(self, event: Any) -> None:
        body = (Serde.to_json(event) + "\n").encode("utf-8")
        self.client().put_object(Bucket=self.bucket, Key=event_key(self.prefix, event), Body=body,
                                 ContentType="application/x-ndjson")
