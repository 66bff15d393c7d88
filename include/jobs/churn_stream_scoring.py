"""Spark Structured Streaming job: Kinesis events -> validation -> per-customer state -> features -> score -> lake.

One script for both targets; the source is the only difference: on the local target (``--source
python``) the stream is read through ``churn.kinesis_source`` (per-shard sequence numbers as
offsets); on Glue 5 (``--source glue``) through Glue's Kinesis connector; ``--source files`` reads
JSON-lines files as they land in a folder (a replay of exported events). Checkpointed at
``--checkpoint``.

In the streaming query (Spark, on the executors):

1. parse each record as a raw event (every field a string; a record over ``--max-record-bytes`` is
   not parsed) and validate it with the batch job's rules (``churn.quality``), plus
   ``event_ts_in_future``: an event time more than ``--max-event-skew-seconds`` after the record
   reached the stream;
2. per customer, with state across micro-batches (``applyInPandasWithState`` over buckets of
   customers, ``churn.event_state``): set aside events of customers in no published snapshot
   (``unknown_customer``, before they enter the state), drop resent events (an event id the
   customer's state has seen), set aside events older than the customer's watermark
   (``--allowed-lateness-seconds``) and those beyond ``--max-events-per-customer`` kept events,
   and give each event its aggregates since each day a snapshot could be from, as of its event time.

Then, per micro-batch (``foreachBatch``), on the driver, with the batch collected in one Spark
action (it is at most ``--max-records-per-batch`` events):

3. features (``churn.features``: "features as of each event"): the customer's latest snapshot from
   ``features/`` (loaded once per snapshot day and kept) plus the aggregates since it;
4. scores: through the SageMaker endpoint by name (``--scoring endpoint``, the default) in CSV
   requests of ``--request-rows`` rows, ``--scoring-concurrency`` of them at a time, scores matched
   to rows by position, waiting out an unavailable endpoint for up to ``--endpoint-wait-seconds``
   before failing the batch (it is then replayed from the checkpoint); a request the model rejects
   (4xx) is split until the rows it rejects are alone, and those go to the errors
   (``endpoint_rejected``; more than ``--max-endpoint-rejections`` in a batch fails it: the model is
   wrong, not the rows); or with the model's booster in this process (``--scoring in_process
   --model-data-url``, xgboost needed), the reference the benchmark compares with;
5. predictions (with the feature vector) to ``<output>/dt=<day>/hour=<HH>/batch_id=<n>/`` (Parquet),
   and bad records to ``<errors>/dt=<day>/batch_id=<n>/`` (JSON lines) with the reason: a failed
   rule, ``unknown_customer``, ``late_event``, ``customer_event_limit``, ``no_feature_snapshot`` or
   ``endpoint_rejected``, the record as it arrived (its start, if over the size cap) and its stream
   position. Resent events are counted, not written.

Exactly once: each output file of a batch has a fixed name, written aside and renamed (one PUT on
S3), so a batch replayed after a crash replaces its own files, and the first batch of a run removes
the files of a failed attempt of that batch that the replay did not write again; the checkpoint
(offsets and the state) moves on only after ``foreachBatch`` returns. The driver writes the
query's progress, with this job's own counts and each batch's phases, to
``<progress-root>/<run id>/progress.json`` every ``--progress-seconds``, from the main thread, off
the batches' path (the ``churn_streaming`` DAG's health check and the benchmark poll it), with the
state's size (customers and events kept).

The known customers (``unknown_customer``) are those of the newest published snapshot days, read
when the query starts; when a newer snapshot day is published, the query is restarted in this
process from its checkpoint (after the batch in flight) to take in the new customers.

SIGTERM stops the query after the batch in flight and records the run as STOPPED.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import io
import json
import logging
import signal
import sys
import tarfile
import threading
import time
import uuid

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from churn import event_state, features, quality, schema, scoring, sparkio

log = logging.getLogger("churn_streaming")
JOB = "churn_streaming"
STOP_WAIT_SECONDS = 60.0  # SIGTERM: how long the batch in flight may take to commit
RECENT_BATCHES = 200  # kept in progress.json (rates, errors and latencies over the recent past)
SNAPSHOT_DAYS_KEPT = 8  # snapshot days the driver keeps loaded (the newest used)
STREAM_COLUMNS = ("event_id", "customer_id", "event_ts", "event_type", "value", "dt", "produced_at", "arrival_ts",
                  "source_position", "raw_record", "reason")
PREDICTION_COLUMNS = (*features.EVENT_KEY_COLUMNS, "score", *features.FEATURE_COLUMNS, "produced_at", "arrival_ts",
                      "scored_at", "source_position")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="churn streaming scoring job")
    parser.add_argument("--lake", required=True, help="lake root URI, e.g. s3://churn-lake")
    parser.add_argument("--endpoint-name", required=True, help="the SageMaker endpoint to score with")
    parser.add_argument("--source", choices=("python", "glue", "files"), default="python",
                        help="python: churn.kinesis_source (local target); glue: Glue's Kinesis connector; "
                             "files: JSON-lines files landing in --input")
    parser.add_argument("--stream", help="Kinesis stream name (--source python)")
    parser.add_argument("--stream-arn", help="Kinesis stream ARN (--source glue)")
    parser.add_argument("--input", help="a folder URI of JSON-lines event files (--source files)")
    parser.add_argument("--kinesis-endpoint-url", help="a Kinesis-compatible server (local target)")
    parser.add_argument("--runtime-endpoint-url", help="a SageMaker Runtime-compatible server (local target)")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--checkpoint", help=f"default: <lake>/_streaming/{JOB}/checkpoint")
    parser.add_argument("--output", help="default: <lake>/stream_predictions")
    parser.add_argument("--errors", help="default: <lake>/errors/stream_events")
    parser.add_argument("--progress-root", help=f"default: <lake>/_streaming/{JOB}/runs")
    parser.add_argument("--run-id", help="this run's id (default: Glue's JOB_RUN_ID, else generated)")
    parser.add_argument("--JOB_RUN_ID", dest="job_run_id", help=argparse.SUPPRESS)  # passed by Glue
    parser.add_argument("--trigger-seconds", type=float, default=5.0,
                        help="micro-batch trigger interval (0: the next batch starts as soon as one ends)")
    parser.add_argument("--max-records-per-batch", type=int, default=20000)
    parser.add_argument("--scoring", choices=("endpoint", "in_process"), default="endpoint",
                        help="endpoint: the SageMaker endpoint by name; in_process: the model at --model-data-url "
                             "in the driver (needs xgboost)")
    parser.add_argument("--model-data-url", help="model.tar.gz of the model to score with (--scoring in_process)")
    parser.add_argument("--request-rows", type=int, default=scoring.DEFAULT_BATCH_ROWS)
    parser.add_argument("--scoring-concurrency", type=int, default=4,
                        help="endpoint requests in flight at once (keep it within the endpoint's capacity)")
    parser.add_argument("--endpoint-wait-seconds", type=float, default=300.0,
                        help="how long one request waits out an unavailable endpoint before the batch fails")
    parser.add_argument("--max-snapshot-age-days", type=int, default=2)
    parser.add_argument("--allowed-lateness-seconds", type=float, default=3600.0,
                        help="an event older than its customer's newest event time seen minus this is quarantined "
                             "as late_event; resent events are recognised within it (and within the snapshot days)")
    parser.add_argument("--state-idle-minutes", type=float, default=60.0,
                        help="a customer with no new events for this long has its state removed, once no on-time "
                             "event can need it, the next time its bucket has events")
    parser.add_argument("--state-buckets", type=int, default=64,
                        help="customers are kept in this many buckets, the state operator's keys (about 3 ms of "
                             "Python per bucket with events in a batch; a bucket's state is read and written whole); "
                             "fixed by the checkpoint once the query has run")
    parser.add_argument("--state-partitions", type=int,
                        help="partitions of the per-customer state (default: the cluster's cores); fixed by the "
                             "checkpoint once the query has run")
    parser.add_argument("--progress-seconds", type=float, default=5.0)
    parser.add_argument("--max-record-bytes", type=int, default=schema.MAX_RECORD_BYTES,
                        help="a stream record over this many bytes is quarantined unparsed (record_too_large)")
    parser.add_argument("--max-event-skew-seconds", type=float, default=300.0,
                        help="an event time more than this after the record reached the stream is quarantined "
                             "(event_ts_in_future): it would move its customer's lateness watermark into the future")
    parser.add_argument("--max-events-per-customer", type=int, default=event_state.DEFAULT_MAX_EVENTS_PER_CUSTOMER,
                        help="events kept in the state per customer; events beyond it are quarantined "
                             "(customer_event_limit)")
    parser.add_argument("--max-endpoint-rejections", type=int, default=100,
                        help="rows of one batch the model may reject (4xx) one by one before the batch fails: "
                             "beyond it the model, not the rows, is wrong")
    # Glue adds its own arguments (--JOB_NAME, --TempDir, ...): ignore what is not ours.
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        log.info("ignoring arguments not meant for this job: %s", unknown)
    needs = {"python": ("stream", "--stream"), "glue": ("stream_arn", "--stream-arn"), "files": ("input", "--input")}
    attribute, option = needs[args.source]
    if not getattr(args, attribute):
        parser.error(f"--source {args.source} needs {option}")
    if args.scoring == "in_process" and not args.model_data_url:
        parser.error("--scoring in_process needs --model-data-url (the model.tar.gz to score with)")
    if (args.trigger_seconds < 0 or args.request_rows <= 0 or args.endpoint_wait_seconds < 0
            or args.scoring_concurrency <= 0 or args.allowed_lateness_seconds < 0 or args.max_snapshot_age_days < 0
            or args.state_buckets <= 0 or args.max_record_bytes <= 0 or args.max_event_skew_seconds < 0
            or args.max_events_per_customer <= 0 or args.max_endpoint_rejections < 0):
        parser.error("--trigger-seconds, --endpoint-wait-seconds, --allowed-lateness-seconds, "
                     "--max-snapshot-age-days, --max-event-skew-seconds and --max-endpoint-rejections must be >= 0, "
                     "--request-rows, --scoring-concurrency, --state-buckets, --max-record-bytes and "
                     "--max-events-per-customer > 0")
    lake = args.lake.rstrip("/")
    args.lake = lake
    args.checkpoint = (args.checkpoint or f"{lake}/_streaming/{JOB}/checkpoint").rstrip("/")
    args.output = (args.output or f"{lake}/stream_predictions").rstrip("/")
    args.errors = (args.errors or f"{lake}/errors/stream_events").rstrip("/")
    args.progress_root = (args.progress_root or f"{lake}/_streaming/{JOB}/runs").rstrip("/")
    args.run_id = args.run_id or args.job_run_id or f"run-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    return args


def read_stream(spark: SparkSession, args: argparse.Namespace) -> DataFrame:
    """The stream as (data, record_bytes, arrival_ts, source_position): the record's text (the Python
    Kinesis source passes on only the start of a record over ``--max-record-bytes``), its size in
    bytes, when it reached the stream and where it is on it (``<shard>/<sequence number>``, or
    ``<file>#<hash of the line>``)."""
    if args.source == "python":
        from churn.kinesis_source import KinesisDataSource

        spark.dataSource.register(KinesisDataSource)
        reader = (
            spark.readStream.format("churn_kinesis")
            .option("stream", args.stream)
            .option("region", args.region)
            .option("max_records_per_batch", str(args.max_records_per_batch))
            .option("max_record_bytes", str(args.max_record_bytes))
        )
        if args.kinesis_endpoint_url:
            reader = reader.option("endpoint_url", args.kinesis_endpoint_url)
        raw = reader.load()
        return raw.select(
            "data", "record_bytes", "arrival_ts",
            F.concat_ws("/", "shard_id", "sequence_number").alias("source_position"),
        )
    if args.source == "files":
        raw = spark.readStream.option("maxFilesPerTrigger", "100").text(args.input)
        return raw.select(
            F.col("value").alias("data"),
            F.octet_length("value").alias("record_bytes"),
            F.col("_metadata.file_modification_time").alias("arrival_ts"),
            F.concat(F.col("_metadata.file_path"), F.lit("#"), F.xxhash64("value").cast("string")).alias("source_position"),
        )
    # Glue 5: Glue's Kinesis connector as a Structured Streaming source (binary `data`).
    raw = (
        spark.readStream.format("kinesis")
        .option("streamARN", args.stream_arn)
        .option("startingPosition", "TRIM_HORIZON")
        .option("maxFetchRecordsPerShard", str(args.max_records_per_batch))
        .load()
    )
    return raw.select(
        F.col("data").cast("string").alias("data"),
        F.octet_length("data").alias("record_bytes"),
        F.col("approximateArrivalTimestamp").cast("timestamp").alias("arrival_ts"),
        F.concat_ws("/", F.col("partitionKey"), F.col("sequenceNumber")).alias("source_position"),
    )


def parse_events(batch: DataFrame, max_record_bytes: int = schema.MAX_RECORD_BYTES) -> DataFrame:
    """Raw event fields as strings (+ the corrupt-record and too-large columns: ``quality.parse_records``,
    as the batch job parses a file's lines), ``produced_at`` and a ``dt``: the event's day when its
    timestamp parses, else the day it arrived (where its error is filed)."""
    parsed = quality.parse_records(batch, "events", "data", max_record_bytes, size="record_bytes")
    event_day = F.date_format(F.expr("try_cast(event_ts AS TIMESTAMP)"), "yyyy-MM-dd")
    produced_at = F.expr("try_cast(get_json_object(data, '$.produced_at') AS TIMESTAMP)")
    return parsed.select(
        "*",
        F.when(~F.col(quality.TOO_LARGE), produced_at).alias("produced_at"),
        F.coalesce(event_day, F.date_format("arrival_ts", "yyyy-MM-dd")).alias("dt"),
    )


def scoring_input(stream: DataFrame, args: argparse.Namespace, known_customers=None) -> DataFrame:
    """The streaming query up to the per-customer state: every record once (``payload``: its fields
    as JSON, times in epoch microseconds), valid ones with their ``aggregates``
    (``churn.event_state``), the others with their reason. ``known_customers`` (a broadcast set of
    customer ids; None: every customer is known) decides ``unknown_customer``."""
    validated = quality.validate(parse_events(stream, args.max_record_bytes), "events",
                                 max_event_skew_seconds=args.max_event_skew_seconds)
    clean = F.col("reason").isNull()
    event_us = F.expr("unix_micros(try_cast(event_ts AS TIMESTAMP))")
    raw_fields = F.to_json(F.struct(*[F.col(c) for c in quality.RAW_FIELDS["events"]]))
    payload = F.to_json(F.struct(
        "event_id", "customer_id", event_us.alias("event_us"),
        "event_type", "dt", F.expr("unix_micros(produced_at)").alias("produced_us"),
        F.expr("unix_micros(arrival_ts)").alias("arrival_us"), "source_position",
        F.coalesce(F.col(quality.CORRUPT), raw_fields).alias("raw_record"),
    ))
    typed = validated.select(
        F.pmod(F.xxhash64("customer_id"), F.lit(args.state_buckets)).cast("int").alias(event_state.BUCKET),
        "customer_id", "event_id", F.when(clean, event_us).alias("event_us"), "event_type",
        F.when(clean, F.expr("try_cast(value AS DOUBLE)")).alias("value"), "reason", payload.alias("payload"),
    )
    # No Spark watermark: Spark would drop the rows older than it before the state sees them, with no
    # trace. The state applies each customer's own (churn.event_state), and quarantines late events.
    return typed.select(*event_state.INPUT_COLUMNS).groupBy(event_state.BUCKET).applyInPandasWithState(
        event_state.state_function(args.max_snapshot_age_days, int(args.allowed_lateness_seconds * 1000),
                                   int(args.state_idle_minutes * 60_000), args.max_events_per_customer,
                                   known_customers),
        event_state.OUTPUT_SCHEMA, event_state.STATE_SCHEMA, "append", "NoTimeout",
    )


# ------------------------------------------------------------------ the driver's half of a batch

class Snapshots:
    """The ``features/`` snapshots on the driver: a day is loaded (one Spark read) the first time a
    batch needs it and kept while it is among the newest ``SNAPSHOT_DAYS_KEPT`` loaded, or needed by
    the batch (one that spans more days, catching up, keeps them all while it is looked up). The published
    days are listed again at most every ``refresh_seconds``, or when a batch has events of a day
    newer than the newest snapshot seen (its snapshot may just have been published)."""

    def __init__(self, spark: SparkSession, root: str, max_age_days: int, refresh_seconds: float = 60.0) -> None:
        self.spark, self.root, self.max_age, self.refresh_seconds = spark, root, max_age_days, refresh_seconds
        self.published: set[str] = set()
        self.listed_at = float("-inf")
        self.loaded: dict[str, tuple] = {}  # day -> (customer ids, feature matrix)
        self.index = None  # pandas Index of "<customer>|<day>" over the loaded days
        self.matrix = None

    def _list(self, newest_needed: str) -> None:
        now = time.monotonic()
        stale = now - self.listed_at > self.refresh_seconds
        missing_newest = newest_needed not in self.published and now - self.listed_at > 5.0
        if stale or missing_newest:
            self.published = set(sparkio.complete_partitions(self.spark, self.root))
            self.listed_at = now

    def _load(self, days: list[str], needed: set[str]) -> None:
        import numpy as np
        import pandas as pd

        for day in days:
            frame = self.spark.read.parquet(f"{self.root}/dt={day}").select(
                "customer_id", *features.FEATURE_COLUMNS).toPandas()
            self.loaded[day] = (frame["customer_id"].astype(str).to_numpy(),
                                frame[list(features.FEATURE_COLUMNS)].to_numpy(dtype=float))
            log.info("feature snapshot %s loaded: %d customers", day, len(frame))
        evictable = [day for day in sorted(self.loaded) if day not in needed]
        for day in evictable[:max(0, len(self.loaded) - SNAPSHOT_DAYS_KEPT)]:
            del self.loaded[day]
        keys = [np.char.add(ids.astype(str), f"|{day}") for day, (ids, _) in self.loaded.items()]
        self.index = pd.Index(np.concatenate(keys) if keys else np.array([], dtype=str))
        self.matrix = np.concatenate([m for _, m in self.loaded.values()]) if self.loaded else \
            np.empty((0, len(features.FEATURE_COLUMNS)))

    def lookup(self, customers, event_days):
        """For each event (customer id, day as numpy datetime64[D]): the age in days of the newest
        usable snapshot (-1 for none) and its feature rows (NaN for none)."""
        import numpy as np

        ages = np.full(len(customers), -1, dtype=int)
        rows = np.full(len(customers), -1, dtype=int)
        if len(customers) == 0:
            return ages, np.empty((0, len(features.FEATURE_COLUMNS)))
        self._list(str(event_days.max()))
        candidates = {str(day - np.timedelta64(k, "D")) for day in np.unique(event_days) for k in range(self.max_age + 1)}
        wanted = sorted(candidates & self.published)
        if any(day not in self.loaded for day in wanted):
            self._load([day for day in wanted if day not in self.loaded], set(wanted))
        ids = customers.astype(str)
        for k in range(self.max_age + 1):
            open_ = ages < 0
            if not open_.any():
                break
            days = (event_days[open_] - np.timedelta64(k, "D")).astype(str)
            found = self.index.get_indexer(np.char.add(np.char.add(ids[open_], "|"), days))
            hit = found >= 0
            where = np.flatnonzero(open_)[hit]
            ages[where], rows[where] = k, found[hit]
        out = np.full((len(customers), len(features.FEATURE_COLUMNS)), np.nan)
        out[ages >= 0] = self.matrix[rows[ages >= 0]]
        return ages, out


def _round_half_up(values, places: int = 4):
    """Spark's ``round(x, 4)`` (HALF_UP on the number's decimal form) for a float array."""
    import numpy as np

    quantum = decimal.Decimal(1).scaleb(-places)
    return np.array([float(decimal.Decimal(repr(float(v))).quantize(quantum, rounding=decimal.ROUND_HALF_UP))
                     for v in values])


def combine(snapshot, ages, aggregates: dict, max_age_days: int):
    """``churn.features.event_features`` on the driver: the snapshot's vector (rows of
    FEATURE_COLUMNS) plus each event's aggregates since the snapshot's day (``churn.event_state``)."""
    import numpy as np

    col = {name: snapshot[:, i] for i, name in enumerate(features.FEATURE_COLUMNS)}
    n = len(ages)

    def since(name: str):
        out = np.full(n, np.nan)
        for k in range(max_age_days + 1):
            pick = ages == k
            out[pick] = aggregates[f"{name}_since_{k}d"][pick]
        return out

    minutes, active = since("usage_minutes"), since("active_days")
    last_usage = aggregates[event_state.LAST_USAGE]
    age = ages.astype(float)
    out = dict(col)
    out["tenure_days"] = col["tenure_days"] + age
    for window in (7, 30, 90):
        out[f"usage_minutes_{window}d"] = col[f"usage_minutes_{window}d"] + minutes
    out["active_days_7d"] = np.minimum(col["active_days_7d"] + active, 7.0)
    out["active_days_30d"] = np.minimum(col["active_days_30d"] + active, 30.0)
    recent_usage = ~np.isnan(last_usage) & (last_usage <= age)
    out["days_since_last_usage"] = np.where(
        recent_usage, last_usage, np.minimum(col["days_since_last_usage"] + age, float(features.LOOKBACK_DAYS)))
    for name, source in (("tickets", "tickets"), ("payment_failures", "payment_failures")):
        counted = since(source)
        out[f"{name}_30d"] = col[f"{name}_30d"] + counted
        out[f"{name}_90d"] = col[f"{name}_90d"] + counted
    out["downgrades_90d"] = col["downgrades_90d"] + since("downgrades")
    out["upgrades_90d"] = col["upgrades_90d"] + since("upgrades")
    out["usage_trend_7d_vs_30d"] = _round_half_up(out["usage_minutes_7d"] / 7.0 - out["usage_minutes_30d"] / 30.0)
    return np.column_stack([out[c] for c in features.FEATURE_COLUMNS]) if n else \
        np.empty((0, len(features.FEATURE_COLUMNS)))


_CLIENTS: dict = {}  # one sagemaker-runtime client per (url, region), shared by the scoring threads


def _runtime_client(runtime_url: str | None, region: str, concurrency: int):
    key = (runtime_url, region)
    if key not in _CLIENTS:
        import boto3
        from botocore.config import Config

        extra = {"endpoint_url": runtime_url} if runtime_url else {}  # the default credential chain, as on AWS
        config = Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=60,  # scoring.invoke retries
                        max_pool_connections=max(10, concurrency))
        _CLIENTS[key] = boto3.client("sagemaker-runtime", region_name=region, config=config, **extra)
    return _CLIENTS[key]


class InProcessModel:
    """The model of ``--model-data-url`` in this process: the booster the endpoint's container loads
    (``xgboost-model.json`` in model.tar.gz), scores rounded as the endpoint's CSV answer rounds them."""

    def __init__(self, spark: SparkSession, url: str) -> None:
        try:
            import xgboost as xgb
        except ImportError as err:
            raise SystemExit("--scoring in_process needs xgboost in the job's Python (on Glue: "
                             "--additional-python-modules xgboost==<version>); or use --scoring endpoint") from err
        with tarfile.open(fileobj=io.BytesIO(sparkio.read_bytes(spark, url))) as tar:
            member = tar.extractfile("xgboost-model.json")
            if member is None:
                raise SystemExit(f"{url} has no xgboost-model.json: is it a model.tar.gz of this project's training?")
            self.booster = xgb.Booster()
            self.booster.load_model(bytearray(member.read()))
        self.url = url

    def score(self, matrix):
        import numpy as np

        scores = self.booster.inplace_predict(np.ascontiguousarray(matrix), validate_features=False)
        return np.array([float(f"{p:.6f}") for p in scores])


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat()


def _phases(started: float, marks: dict[str, float]) -> dict[str, int]:
    """Milliseconds spent in each phase, from the time marks taken at the end of each."""
    out, previous = {}, started
    for name, mark in marks.items():
        out[name], previous = int((mark - previous) * 1000), mark
    return out


def _epoch_seconds(series):
    """A pandas timestamp column (naive UTC, any unit) as float seconds, NaN for null."""
    import numpy as np

    values = series.to_numpy(dtype="datetime64[us]")
    out = values.astype("int64").astype(float) / 1e6
    out[np.isnat(values)] = np.nan
    return out


class BatchProcessor:
    """The foreachBatch function: one Spark action, then features, scores and writes on the driver."""

    def __init__(self, spark: SparkSession, args: argparse.Namespace) -> None:
        self.spark, self.args = spark, args
        self.snapshots = Snapshots(spark, f"{args.lake}/features", args.max_snapshot_age_days)
        self.model = InProcessModel(spark, args.model_data_url) if args.scoring == "in_process" else None
        self.batches: list[dict] = []  # recent batch stats, newest last
        self.totals = {"input": 0, "scored": 0, "quarantined": 0, "unscored": 0, "duplicates": 0, "late": 0,
                       "rejected": 0, "batches": 0}
        self.state_sizes: dict[int, tuple[int, int]] = {}  # bucket -> (customers, events), as last reported
        self.lock = threading.Lock()
        self.first_batch = True
        self.pool = None
        self.spark_ms: dict[int, dict] = {}  # batch id -> Spark's durationMs of the micro-batch (SparkPhases)

    # -- scoring
    def _score_endpoint(self, event_ids, matrix):
        import concurrent.futures

        import numpy as np

        args = self.args
        client = _runtime_client(args.runtime_endpoint_url, args.region, args.scoring_concurrency)
        lines = [f"{i}," + ",".join(repr(float(v)) for v in row) for i, row in zip(event_ids, matrix.tolist())]
        requests = list(scoring.request_batches(lines, args.request_rows))
        if self.pool is None:
            self.pool = concurrent.futures.ThreadPoolExecutor(args.scoring_concurrency, thread_name_prefix="score")
        budget = scoring.RejectionBudget(args.max_endpoint_rejections, args.endpoint_name)
        answers = self.pool.map(
            lambda body: scoring.score_rows(client, args.endpoint_name, body, budget, args.endpoint_wait_seconds),
            requests)
        scores = np.full(len(lines), np.nan)
        rejected: dict[int, str] = {}
        offset = 0
        for body, (values, refused) in zip(requests, answers):  # in request order: rows by position
            scores[offset:offset + len(body)] = [np.nan if v is None else v for v in values]
            rejected.update({offset + i: message for i, message in refused.items()})
            offset += len(body)
        return scores, rejected

    def score(self, event_ids, matrix):
        """Scores by row (NaN for a row the endpoint rejected) and {row: the endpoint's message}."""
        import numpy as np

        if not len(event_ids):
            return np.empty(0), {}
        if self.model is not None:
            return self.model.score(matrix), {}
        return self._score_endpoint(event_ids, matrix)

    # -- writes
    def _write(self, uri: str, data: bytes, written: set[str]) -> None:
        sparkio.write_bytes(self.spark, uri, data)
        written.add(uri)

    def _clean_failed_attempt(self, batch_id: int, partitions: set[str], written: set[str]) -> None:
        """The first batch of a run may be the replay of one whose attempt failed after writing some
        files: remove that attempt's files in this batch's partitions that the replay did not write
        again (an event can move between predictions and errors when a snapshot was published in
        between). Runs after the replay's files are written."""
        fs_path = self.spark.sparkContext._jvm.org.apache.hadoop.fs.Path
        conf = self.spark.sparkContext._jsc.hadoopConfiguration()
        for folder in sorted(partitions):
            path = fs_path(folder)
            fs = path.getFileSystem(conf)
            if not fs.exists(path):
                continue
            for status in fs.listStatus(path):
                name = status.getPath().getName()
                if not name.startswith((".", "_")) and f"{folder}/{name}" not in written:
                    log.info("batch %d: removing %s, written by a failed attempt of this batch", batch_id,
                             status.getPath().toString())
                    fs.delete(status.getPath(), False)

    def _write_predictions(self, batch_id: int, scorable, event_days, ages, matrix, scores, scored_at: float,
                           partitions: set[str], written: set[str]) -> None:
        """The scored events with their features, one Parquet file per (day, hour) of event time."""
        import numpy as np
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        predictions = pd.DataFrame({
            "event_id": scorable["event_id"].to_numpy(dtype=object),
            "customer_id": scorable["customer_id"].to_numpy(dtype=object),
            "event_ts": scorable["event_ts"].to_numpy(dtype="datetime64[us]"),
            "event_type": scorable["event_type"].to_numpy(dtype=object),
            "snapshot_date": event_days - ages.astype("timedelta64[D]"),
            "score": scores,
            **{c: matrix[:, i] for i, c in enumerate(features.FEATURE_COLUMNS)},
            "produced_at": scorable["produced_at"].to_numpy(dtype="datetime64[us]"),
            "arrival_ts": scorable["arrival_ts"].to_numpy(dtype="datetime64[us]"),
            "scored_at": np.full(len(scorable), np.datetime64(int(scored_at * 1e6), "us")),
            "source_position": scorable["source_position"].to_numpy(dtype=object),
        })
        table = _arrow(predictions, pa)  # converted once; a partition's file is a slice of it
        hours = scorable["event_ts"].dt.strftime("%H").to_numpy()
        for (day, hour), rows in sorted(predictions.groupby([scorable["dt"].to_numpy(), hours]).indices.items()):
            folder = f"{self.args.output}/dt={day}/hour={hour}/batch_id={batch_id}"
            partitions.add(folder)
            buffer = io.BytesIO()
            pq.write_table(table.take(rows), buffer)
            self._write(f"{folder}/part-00000.parquet", buffer.getvalue(), written)

    def _write_errors(self, batch_id: int, errors, partitions: set[str], written: set[str]) -> None:
        """Records set aside (columns dt, reason, raw_record, source_file), JSON lines per day."""
        for day, part in errors.groupby("dt", sort=True):
            folder = f"{self.args.errors}/dt={day}/batch_id={batch_id}"
            partitions.add(folder)
            lines = "".join(json.dumps(dict(zip(("reason", "raw_record", "source_file"), row))) + "\n"
                            for row in zip(part["reason"], part["raw_record"], part["source_file"]))
            self._write(f"{folder}/part-00000.json", lines.encode("utf-8"), written)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        import numpy as np
        import pandas as pd

        started = time.time()
        args = self.args
        output = batch.toPandas()  # the one Spark action
        frame = records(output, args.max_snapshot_age_days)
        sizes = event_state.state_sizes(output)
        phases = {"spark": time.time()}

        reasons = frame["reason"].astype(object).where(frame["reason"].notna(), None)
        duplicate = (reasons == event_state.DUPLICATE).to_numpy()
        valid = reasons.isna().to_numpy()
        events = frame[valid]
        event_days = events["event_ts"].to_numpy(dtype="datetime64[D]")
        ages, snapshot = self.snapshots.lookup(events["customer_id"].to_numpy(dtype=object), event_days)
        ready = ages >= 0
        aggregates = {c: events[c].to_numpy(dtype=float) for c in event_state.aggregate_columns(args.max_snapshot_age_days)}
        matrix = combine(snapshot[ready], ages[ready], {k: v[ready] for k, v in aggregates.items()},
                         args.max_snapshot_age_days)
        phases["features"] = time.time()

        candidates = events[ready]
        scores, refused = self.score(candidates["event_id"].tolist(), matrix)
        accepted = np.ones(len(candidates), dtype=bool)
        accepted[list(refused)] = False
        for row, message in refused.items():
            log.warning("batch %d: the endpoint rejected the event at %s: %s", batch_id,
                        candidates["source_position"].iloc[row], message)
        scorable, rejected = candidates[accepted], candidates[~accepted]
        scores, matrix = scores[accepted], matrix[accepted]
        scored_at = time.time()
        phases["score"] = scored_at

        written: set[str] = set()
        partitions: set[str] = set()
        if len(scorable):
            self._write_predictions(batch_id, scorable, event_days[ready][accepted], ages[ready][accepted], matrix,
                                    scores, scored_at, partitions, written)
        bad = frame[~valid & ~duplicate]
        unscored = events[~ready]
        parts = [(bad, reasons[~valid & ~duplicate].to_numpy(dtype=object)),
                 (unscored, np.full(len(unscored), "no_feature_snapshot", dtype=object)),
                 (rejected, np.full(len(rejected), "endpoint_rejected", dtype=object))]
        self._write_errors(batch_id, pd.DataFrame({
            "dt": np.concatenate([part["dt"].to_numpy(dtype=object) for part, _ in parts]),
            "reason": np.concatenate([why for _, why in parts]),
            "raw_record": np.concatenate([part["raw_record"].to_numpy(dtype=object) for part, _ in parts]),
            "source_file": np.concatenate([("kinesis://" + part["source_position"].astype(str)).to_numpy(dtype=object)
                                           for part, _ in parts]),
        }), partitions, written)
        if self.first_batch:
            self._clean_failed_attempt(batch_id, partitions, written)
            self.first_batch = False
        committed = time.time()
        phases["write"] = committed

        produced = _epoch_seconds(scorable["produced_at"])
        arrived = _epoch_seconds(scorable["arrival_ts"])
        latency = (committed - produced[~np.isnan(produced)]) * 1000
        lag = (committed - arrived[~np.isnan(arrived)]) * 1000
        late = int((reasons == event_state.LATE).sum())
        stats = {
            "batch_id": batch_id,
            "started_at": _iso(started),
            "committed_at": _iso(committed),
            "duration_ms": int((committed - started) * 1000),
            "phases_ms": _phases(started, phases),
            "input": int(len(frame)),
            "scored": int(len(scorable)),
            "quarantined": int(len(bad)),
            "unscored": int(len(unscored)),
            "rejected": int(len(rejected)),
            "duplicates": int(duplicate.sum()),
            "late": late,
            # From the producer's produced_at (when events carry it) and from the stream's arrival time.
            "latency_ms": {"p50": round(float(np.percentile(latency, 50)), 1),
                           "p99": round(float(np.percentile(latency, 99)), 1),
                           "max": round(float(latency.max()), 1)} if len(latency) else None,
            "arrival_lag_ms": {"p50": round(float(np.percentile(lag, 50)), 1), "max": round(float(lag.max()), 1)}
            if len(lag) else None,
        }
        with self.lock:
            self.batches = (self.batches + [stats])[-RECENT_BATCHES:]
            for key in ("input", "scored", "quarantined", "unscored", "rejected", "duplicates", "late"):
                self.totals[key] += stats[key]
            self.totals["batches"] += 1
            self.state_sizes.update(sizes)
        log.info("batch %d: %d events, %d scored, %d quarantined (%d late), %d unscored, %d rejected by the endpoint, "
                 "%d resent in %d ms %s", batch_id, stats["input"], stats["scored"], stats["quarantined"], late,
                 stats["unscored"], stats["rejected"], stats["duplicates"], stats["duration_ms"], stats["phases_ms"])

    def state_size(self) -> dict:
        """The state's size as its buckets last reported it (a bucket reports when it has events)."""
        with self.lock:
            sizes = list(self.state_sizes.values())
        return {"customers": sum(c for c, _ in sizes), "events": sum(e for _, e in sizes),
                "buckets_reported": len(sizes), "buckets": self.args.state_buckets,
                "max_events_per_customer": self.args.max_events_per_customer}


def records(output, max_age_days: int):
    """The state operator's output (payload, reason, aggregates, state_size) as one row per record
    with its fields (times as datetime64[us], UTC), the reason and the aggregates by column name."""
    import numpy as np
    import pandas as pd

    fields = pd.DataFrame.from_records(
        [json.loads(text) for text in output["payload"]],
        columns=["event_id", "customer_id", "event_us", "event_type", "dt", "produced_us", "arrival_us",
                 "source_position", "raw_record"])
    for name, column in (("event_ts", "event_us"), ("produced_at", "produced_us"), ("arrival_ts", "arrival_us")):
        micros = pd.to_numeric(fields.pop(column), errors="coerce").to_numpy(dtype=float)
        times = np.full(len(micros), np.datetime64("NaT"), dtype="datetime64[us]")
        known = ~np.isnan(micros)
        times[known] = micros[known].astype("int64").astype("datetime64[us]")
        fields[name] = times
    fields["reason"] = output["reason"].astype(object).where(output["reason"].notna(), None).to_numpy()
    for name, values in event_state.unpack(output["aggregates"].tolist(), max_age_days).items():
        fields[name] = values
    return fields


def _arrow(frame, pa):
    """The predictions as an Arrow table; timestamps as UTC instants (Spark reads them as TIMESTAMP)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    utc = pa.timestamp("us", tz="UTC")
    return table.cast(pa.schema([pa.field(f.name, utc) if pa.types.is_timestamp(f.type) else f for f in table.schema]))


class ProgressWriter:
    """Writes ``progress.json`` for this run: state, Spark's last progress and the job's own counts.

    Other processes poll the file while the job runs (the DAG's health check, the streaming
    benchmark), so each write replaces it whole: ``sparkio.write_json`` writes a local file aside and
    renames it over the old one, and an S3 object is one PUT. A reader never sees it empty or cut.
    """

    def __init__(self, spark: SparkSession, args: argparse.Namespace, processor: BatchProcessor) -> None:
        self.spark, self.args, self.processor = spark, args, processor
        self.uri = f"{args.progress_root}/{args.run_id}/progress.json"
        self.started_at = _iso(time.time())

    def write(self, state: str, query=None, error: str | None = None) -> None:
        last = query.lastProgress if query is not None else None
        with self.processor.lock:
            batches, totals = list(self.processor.batches), dict(self.processor.totals)
            spark_ms = dict(self.processor.spark_ms)
        # Each batch with Spark's own durations of it (the source read, planning, the logs), when reported.
        batches = [{**b, "spark_ms": spark_ms[b["batch_id"]]} if b["batch_id"] in spark_ms else b for b in batches]
        payload = {
            "job": JOB,
            "run_id": self.args.run_id,
            "state": state,
            "started_at": self.started_at,
            "updated_at": _iso(time.time()),
            "trigger_seconds": self.args.trigger_seconds,
            "endpoint_name": self.args.endpoint_name,
            "checkpoint": self.args.checkpoint,
            "output": self.args.output,
            "totals": totals,
            "state_size": {**self.processor.state_size(), "spark": [
                {k: operator.get(k) for k in ("numRowsTotal", "memoryUsedBytes")}
                for operator in (last or {}).get("stateOperators", [])]},
            "last_progress": {
                k: last.get(k) for k in ("batchId", "timestamp", "numInputRows", "inputRowsPerSecond",
                                          "processedRowsPerSecond", "durationMs")
            } if last else None,
            "recent_batches": batches,
            "error": error,
        }
        sparkio.write_json(self.spark, self.uri, payload)


def spark_phases(processor: BatchProcessor):
    """A query listener keeping Spark's ``durationMs`` of each micro-batch (reading the source,
    planning, the write-ahead log, ``addBatch`` = this job's foreachBatch, the commit log)."""
    from pyspark.sql.streaming import StreamingQueryListener

    class SparkPhases(StreamingQueryListener):
        def onQueryStarted(self, event) -> None:
            pass

        def onQueryProgress(self, event) -> None:
            progress = event.progress
            with processor.lock:
                processor.spark_ms[progress.batchId] = dict(progress.durationMs)
                for old in sorted(processor.spark_ms)[:-RECENT_BATCHES]:
                    del processor.spark_ms[old]

        def onQueryIdle(self, event) -> None:
            pass

        def onQueryTerminated(self, event) -> None:
            pass

    return SparkPhases()


class KnownCustomers:
    """The customers of the newest published snapshot days (``SNAPSHOT_DAYS_KEPT`` of them), as a
    broadcast set for the state operator (``unknown_customer``), and the newest day it was read for."""

    def __init__(self, spark: SparkSession, root: str) -> None:
        self.spark, self.root = spark, root
        published = sparkio.complete_partitions(spark, root)
        self.days = published[-SNAPSHOT_DAYS_KEPT:]
        self.newest = self.days[-1] if self.days else None
        ids: set[str] = set()
        if self.days:
            frame = spark.read.parquet(*[f"{root}/dt={day}" for day in self.days]).select("customer_id").distinct()
            ids = set(frame.toPandas()["customer_id"].astype(str))
        self.broadcast = spark.sparkContext.broadcast(frozenset(ids))
        log.info("known customers: %d, from the snapshots of %s", len(ids), ", ".join(self.days) or "no day yet")

    def outdated(self, published: set[str]) -> bool:
        """Whether a snapshot day newer than the one read has been published since."""
        newest = max(published, default=None)
        return newest is not None and (self.newest is None or newest > self.newest)


def start_query(spark: SparkSession, args: argparse.Namespace, processor: BatchProcessor):
    """The streaming query, with the known customers of the snapshots published now; returns both."""
    known = KnownCustomers(spark, f"{args.lake}/features")
    processor.first_batch = True  # the first batch may replay one a stopped query cut short
    writer = scoring_input(read_stream(spark, args), args, known.broadcast).writeStream.queryName(JOB)
    writer = writer.foreachBatch(processor).option("checkpointLocation", args.checkpoint)
    return writer.trigger(processingTime=f"{args.trigger_seconds} seconds").start(), known


def _stop_after_batch(query) -> None:
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    while query.status.get("isTriggerActive") and time.monotonic() < deadline:
        time.sleep(0.2)  # let the batch in flight commit; a batch cut short is replayed anyway
    query.stop()


def run(spark: SparkSession, args: argparse.Namespace) -> int:
    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    # No micro-batch without new records: one would only cost time (the state has no timeouts).
    spark.conf.set("spark.sql.streaming.noDataMicroBatches.enabled", "false")
    # Applies to a new checkpoint only: a query that has run keeps the partitioning of its state.
    spark.conf.set("spark.sql.shuffle.partitions",
                   str(args.state_partitions or spark.sparkContext.defaultParallelism))
    processor = BatchProcessor(spark, args)
    progress = ProgressWriter(spark, args, processor)
    spark.streams.addListener(spark_phases(processor))
    query, known = start_query(spark, args, processor)
    stopping = threading.Event()

    def on_sigterm(signum, _frame):
        log.info("signal %d: stopping after the batch in flight", signum)
        stopping.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    log.info("run %s: reading %s, scoring with %s, checkpoint %s", args.run_id, args.stream or args.stream_arn or args.input,
             args.endpoint_name, args.checkpoint)
    progress.write("RUNNING", query)
    try:
        while query.isActive and not stopping.is_set():
            query.awaitTermination(args.progress_seconds)
            progress.write("RUNNING", query)
            if query.isActive and known.outdated(processor.snapshots.published):
                log.info("snapshot %s published: restarting the query to take in its customers",
                         max(processor.snapshots.published))
                _stop_after_batch(query)
                known.broadcast.unpersist()
                query, known = start_query(spark, args, processor)
        if stopping.is_set():
            _stop_after_batch(query)
            progress.write("STOPPED", query)
            return 0
        query.awaitTermination()  # raises the query's error, if it failed
        progress.write("STOPPED", query)
        return 0
    except Exception as err:
        progress.write("FAILED", query, error=f"{type(err).__name__}: {err}"[:4000])
        raise


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    spark = sparkio.session(f"{JOB}-{args.run_id}")
    try:
        return run(spark, args)
    finally:
        spark.stop()


if __name__ == "__main__":
    raise SystemExit(main())
