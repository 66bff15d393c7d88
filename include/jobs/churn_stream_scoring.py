"""Spark Structured Streaming job: Kinesis events -> validation -> point-in-time features -> endpoint -> lake.

One script for both targets. The source is the only difference: on the local target (``--source
python``) the stream is read through ``churn.kinesis_source`` (per-shard sequence numbers as
offsets); on Glue 5 (``--source glue``) through Glue's Kinesis connector. Then, per micro-batch
(``foreachBatch``, checkpointed at ``--checkpoint``):

1. parse each record as a raw event (every field a string) and validate it with the batch job's
   rules (``churn.quality``); bad records go to ``<errors>/dt=<day>/batch_id=<n>/`` with the reason,
   the record as it arrived and its stream position;
2. build point-in-time features with the batch feature module (``features.event_features``: the
   customer's latest snapshot from ``features/`` plus the event); an event with no usable snapshot is
   written to the errors prefix too, with reason ``no_feature_snapshot``;
3. score through the SageMaker endpoint by name in CSV requests of ``--request-rows`` rows (under
   the 6 MB limit), one task per full request and one client per Spark Python worker, waiting out
   an unavailable endpoint for up to ``--endpoint-wait-seconds`` before failing the batch (it is
   then replayed from the checkpoint);
4. write predictions (with the feature vector) to ``<output>/dt=<day>/hour=<HH>/batch_id=<n>/``.

Writes overwrite their ``batch_id`` partitions (dynamic partition overwrite), so a batch replayed
after a crash replaces its own output and nothing is duplicated; the checkpoint makes a restarted job
resume after the last committed batch. The driver writes the query's progress, with this job's
own counts, to ``<progress-root>/<run id>/progress.json`` every ``--progress-seconds``, replacing it
atomically (the ``churn_streaming`` DAG's health check and the benchmark poll it).

SIGTERM stops the query after the batch in flight and records the run as STOPPED.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import signal
import sys
import threading
import time
import uuid

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from churn import features, quality, scoring, sparkio

log = logging.getLogger("churn_streaming")
JOB = "churn_streaming"
STOP_WAIT_SECONDS = 60.0  # SIGTERM: how long the batch in flight may take to commit
RECENT_BATCHES = 200  # kept in progress.json (rates, errors and latencies over the recent past)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="churn streaming scoring job")
    parser.add_argument("--lake", required=True, help="lake root URI, e.g. s3://churn-lake")
    parser.add_argument("--endpoint-name", required=True, help="the SageMaker endpoint to score with")
    parser.add_argument("--source", choices=("python", "glue"), default="python",
                        help="python: churn.kinesis_source (local target); glue: Glue's Kinesis connector")
    parser.add_argument("--stream", help="Kinesis stream name (--source python)")
    parser.add_argument("--stream-arn", help="Kinesis stream ARN (--source glue)")
    parser.add_argument("--kinesis-endpoint-url", help="a Kinesis-compatible server (local target)")
    parser.add_argument("--runtime-endpoint-url", help="a SageMaker Runtime-compatible server (local target)")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--checkpoint", help=f"default: <lake>/_streaming/{JOB}/checkpoint")
    parser.add_argument("--output", help="default: <lake>/stream_predictions")
    parser.add_argument("--errors", help="default: <lake>/errors/stream_events")
    parser.add_argument("--progress-root", help=f"default: <lake>/_streaming/{JOB}/runs")
    parser.add_argument("--run-id", help="this run's id (default: Glue's JOB_RUN_ID, else generated)")
    parser.add_argument("--JOB_RUN_ID", dest="job_run_id", help=argparse.SUPPRESS)  # passed by Glue
    parser.add_argument("--trigger-seconds", type=float, default=5.0, help="micro-batch trigger interval")
    parser.add_argument("--max-records-per-batch", type=int, default=20000)
    parser.add_argument("--request-rows", type=int, default=scoring.DEFAULT_BATCH_ROWS)
    parser.add_argument("--endpoint-wait-seconds", type=float, default=300.0,
                        help="how long one request waits out an unavailable endpoint before the batch fails")
    parser.add_argument("--max-snapshot-age-days", type=int, default=2)
    parser.add_argument("--progress-seconds", type=float, default=5.0)
    # Glue adds its own arguments (--JOB_NAME, --TempDir, ...): ignore what is not ours.
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        log.info("ignoring arguments not meant for this job: %s", unknown)
    if args.source == "python" and not args.stream:
        parser.error("--source python needs --stream")
    if args.source == "glue" and not args.stream_arn:
        parser.error("--source glue needs --stream-arn")
    if args.trigger_seconds <= 0 or args.request_rows <= 0 or args.endpoint_wait_seconds < 0:
        parser.error("--trigger-seconds and --request-rows must be > 0, --endpoint-wait-seconds >= 0")
    lake = args.lake.rstrip("/")
    args.lake = lake
    args.checkpoint = (args.checkpoint or f"{lake}/_streaming/{JOB}/checkpoint").rstrip("/")
    args.output = (args.output or f"{lake}/stream_predictions").rstrip("/")
    args.errors = (args.errors or f"{lake}/errors/stream_events").rstrip("/")
    args.progress_root = (args.progress_root or f"{lake}/_streaming/{JOB}/runs").rstrip("/")
    args.run_id = args.run_id or args.job_run_id or f"run-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    return args


def read_stream(spark: SparkSession, args: argparse.Namespace) -> DataFrame:
    """The stream as (data, arrival_ts, source_position): the record's text, when Kinesis received it
    and where it is on the stream (``<shard>/<sequence number>``)."""
    if args.source == "python":
        from churn.kinesis_source import KinesisDataSource

        spark.dataSource.register(KinesisDataSource)
        reader = (
            spark.readStream.format("churn_kinesis")
            .option("stream", args.stream)
            .option("region", args.region)
            .option("max_records_per_batch", str(args.max_records_per_batch))
        )
        if args.kinesis_endpoint_url:
            reader = reader.option("endpoint_url", args.kinesis_endpoint_url)
        raw = reader.load()
        return raw.select(
            "data", "arrival_ts", F.concat_ws("/", "shard_id", "sequence_number").alias("source_position")
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
        F.col("approximateArrivalTimestamp").cast("timestamp").alias("arrival_ts"),
        F.concat_ws("/", F.col("partitionKey"), F.col("sequenceNumber")).alias("source_position"),
    )


def parse_events(batch: DataFrame) -> DataFrame:
    """Raw event fields as strings (+ the corrupt-record column), ``produced_at`` and a ``dt``: the
    event's day when its timestamp parses, else the day it arrived (where its error is filed)."""
    parsed = batch.select(
        "*",
        F.from_json(
            "data", quality.raw_schema("events"),
            {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": quality.CORRUPT},
        ).alias("_event"),
    ).select("*", "_event.*").drop("_event")
    event_day = F.date_format(F.expr("try_cast(event_ts AS TIMESTAMP)"), "yyyy-MM-dd")
    return parsed.select(
        "*",
        F.expr("try_cast(get_json_object(data, '$.produced_at') AS TIMESTAMP)").alias("produced_at"),
        F.coalesce(event_day, F.date_format("arrival_ts", "yyyy-MM-dd")).alias("dt"),
    )


_CLIENTS: dict = {}  # per Python worker process (Spark reuses them): one sagemaker-runtime client each


def _runtime_client(runtime_url: str | None, region: str):
    key = (runtime_url, region)
    if key not in _CLIENTS:
        import boto3
        from botocore.config import Config

        extra = {"endpoint_url": runtime_url, "aws_access_key_id": "local", "aws_secret_access_key": "local"} \
            if runtime_url else {}
        config = Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=60)  # scoring.invoke retries
        _CLIENTS[key] = boto3.client("sagemaker-runtime", region_name=region, config=config, **extra)
    return _CLIENTS[key]


def _score_partition(endpoint: str, runtime_url: str | None, region: str, rows: int, wait: float):
    """mapPartitions function: batched CSV requests through the worker's sagemaker-runtime client."""

    def score(partition):
        lines = [f"{r['event_id']}," + ",".join(repr(float(r[c])) for c in features.FEATURE_COLUMNS) for r in partition]
        if not lines:
            return
        results = list(scoring.score_lines(_runtime_client(runtime_url, region), endpoint, lines, rows, wait))
        scored_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        for event_id, value in results:
            yield event_id, value, scored_at

    return score


class BatchProcessor:
    """The foreachBatch function; keeps the feature snapshots cached between batches."""

    def __init__(self, spark: SparkSession, args: argparse.Namespace) -> None:
        self.spark, self.args = spark, args
        self._snapshot_days: tuple[str, ...] = ()
        self._snapshots: DataFrame | None = None
        self.batches: list[dict] = []  # recent batch stats, newest last
        self.totals = {"input": 0, "scored": 0, "quarantined": 0, "unscored": 0, "batches": 0}
        self.lock = threading.Lock()

    def snapshots(self, first: dt.date | None, last: dt.date | None) -> DataFrame:
        """The features/ snapshots events of days ``first``..``last`` can use: from ``first`` minus
        --max-snapshot-age-days to ``last`` (cached until that set of days changes)."""
        root = f"{self.args.lake}/features"
        days: tuple[str, ...] = ()
        if first is not None:
            lower = (first - dt.timedelta(days=self.args.max_snapshot_age_days)).isoformat()
            days = tuple(d for d in sparkio.complete_partitions(self.spark, root) if lower <= d <= last.isoformat())
        if days != self._snapshot_days or self._snapshots is None:
            if self._snapshots is not None:
                self._snapshots.unpersist()
            if days:
                frame = self.spark.read.parquet(*[f"{root}/dt={d}" for d in days])
            else:
                schema = ", ".join(["customer_id string", "snapshot_date date",
                                    *(f"{c} double" for c in features.FEATURE_COLUMNS)])
                frame = self.spark.createDataFrame([], schema)
            self._snapshots = frame.select(*features.KEY_COLUMNS, *features.FEATURE_COLUMNS).cache()
            self._snapshot_days = days
            log.info("feature snapshots in use: %s", ", ".join(days) or "none (the batch's events are unscored)")
        return self._snapshots

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        # Five Spark actions per batch (each costs a few hundred ms on a small cluster): the counts,
        # the predictions write (which scores), the feature counts, the errors write, the latencies.
        started = time.time()
        args = self.args
        validated = quality.validate(parse_events(batch), "events").withColumn("batch_id", F.lit(batch_id)).cache()
        valid_day = F.when(F.col("reason").isNull(), F.to_date(F.expr("try_cast(event_ts AS TIMESTAMP)")))
        counts = validated.agg(
            F.count(F.lit(1)).alias("input"), F.count("reason").alias("quarantined"),
            F.min(valid_day).alias("first"), F.max(valid_day).alias("last"),
        ).first()
        phases = {"read_validate": time.time()}

        clean = quality.clean_events(validated, keep=("produced_at", "arrival_ts", "source_position"))
        snapshots = self.snapshots(counts["first"], counts["last"])
        featured = features.event_features(snapshots, clean, args.max_snapshot_age_days).cache()
        # As many scoring tasks as full requests, up to the cores: a small batch is one request.
        scorable = counts["input"] - counts["quarantined"]
        tasks = max(1, min(self.spark.sparkContext.defaultParallelism, -(-scorable // args.request_rows)))
        ready = featured.where(F.col("snapshot_date").isNotNull())
        scores = ready.select("event_id", *features.FEATURE_COLUMNS).repartition(tasks).rdd.mapPartitions(
            _score_partition(args.endpoint_name, args.runtime_endpoint_url, args.region, args.request_rows,
                             args.endpoint_wait_seconds)
        ).toDF("event_id string, score double, scored_at timestamp")
        predictions = ready.join(scores, "event_id").select(
            *features.EVENT_KEY_COLUMNS, "score", *features.FEATURE_COLUMNS,
            "produced_at", "arrival_ts", "scored_at", "source_position",
            F.lit(batch_id).alias("batch_id"), "dt", F.date_format("event_ts", "HH").alias("hour"),
        ).cache()
        # Writing scores every ready event once; an empty batch writes no files and replaces nothing.
        predictions.coalesce(1).write.mode("overwrite").partitionBy("dt", "hour", "batch_id").parquet(args.output)
        phases["features_score_write"] = time.time()

        known = featured.agg(F.count(F.lit(1)).alias("clean"), F.count("snapshot_date").alias("ready")).first()
        n_ready, n_unscored = int(known["ready"]), int(known["clean"] - known["ready"])
        if counts["quarantined"] or n_unscored:
            unscored = featured.where(F.col("snapshot_date").isNull()).select(
                "dt",
                F.lit("no_feature_snapshot").alias("reason"),
                F.to_json(F.struct("event_id", "customer_id", F.col("event_ts").cast("string").alias("event_ts"),
                                   "event_type", "value")).alias("raw_record"),
                F.concat(F.lit("kinesis://"), F.col("source_position")).alias("source_file"),
                F.lit(batch_id).alias("batch_id"),
            )
            bad = quality.quarantined(
                validated.withColumn("source_file", F.concat(F.lit("kinesis://"), F.col("source_position"))), "events"
            ).withColumn("batch_id", F.lit(batch_id))
            bad.unionByName(unscored).coalesce(1).write.mode("overwrite").partitionBy("dt", "batch_id").json(args.errors)
        committed = phases["errors"] = time.time()

        written = predictions.select(
            ((F.lit(committed) - F.col("produced_at").cast("double")) * 1000).alias("ms"),
            ((F.lit(committed) - F.col("arrival_ts").cast("double")) * 1000).alias("lag"),
        ).agg(
            F.count(F.lit(1)).alias("n"), F.percentile_approx("ms", 0.5).alias("p50"),
            F.percentile_approx("ms", 0.99).alias("p99"), F.max("ms").alias("max"),
            F.percentile_approx("lag", 0.5).alias("lag_p50"), F.max("lag").alias("lag_max"),
        ).first()
        for frame in (predictions, featured, validated):
            frame.unpersist()
        if written["n"] != n_ready:  # the batch is replayed when the job restarts: nothing is lost
            raise RuntimeError(f"batch {batch_id}: {written['n']} predictions for {n_ready} scorable events")

        stats = {
            "batch_id": batch_id,
            "started_at": _iso(started),
            "committed_at": _iso(committed),
            "duration_ms": int((committed - started) * 1000),
            "phases_ms": _phases(started, phases),
            "input": int(counts["input"]),
            "scored": int(written["n"]),
            "quarantined": int(counts["quarantined"]),
            "unscored": n_unscored,
            # From the producer's produced_at (when events carry it) and from the stream's arrival time.
            "latency_ms": {k: round(float(written[k]), 1) for k in ("p50", "p99", "max")}
            if written["p50"] is not None else None,
            "arrival_lag_ms": {"p50": round(float(written["lag_p50"]), 1), "max": round(float(written["lag_max"]), 1)}
            if written["lag_p50"] is not None else None,
        }
        with self.lock:
            self.batches = (self.batches + [stats])[-RECENT_BATCHES:]
            for key in ("input", "scored", "quarantined", "unscored"):
                self.totals[key] += stats[key]
            self.totals["batches"] += 1
        log.info("batch %d: %d events, %d scored, %d quarantined, %d unscored in %d ms", batch_id, stats["input"],
                 stats["scored"], stats["quarantined"], stats["unscored"], stats["duration_ms"])


def _phases(started: float, marks: dict[str, float]) -> dict[str, int]:
    """Milliseconds spent in each phase, from the time marks taken at the end of each."""
    out, previous = {}, started
    for name, mark in marks.items():
        out[name], previous = int((mark - previous) * 1000), mark
    return out


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat()


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
            "last_progress": {
                k: last.get(k) for k in ("batchId", "timestamp", "numInputRows", "inputRowsPerSecond",
                                          "processedRowsPerSecond", "durationMs")
            } if last else None,
            "recent_batches": batches,
            "error": error,
        }
        sparkio.write_json(self.spark, self.uri, payload)


def run(spark: SparkSession, args: argparse.Namespace) -> int:
    spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
    processor = BatchProcessor(spark, args)
    progress = ProgressWriter(spark, args, processor)
    query = (
        read_stream(spark, args)
        .writeStream.queryName(JOB)
        .foreachBatch(processor)
        .option("checkpointLocation", args.checkpoint)
        .trigger(processingTime=f"{args.trigger_seconds} seconds")
        .start()
    )
    stopping = threading.Event()

    def on_sigterm(signum, _frame):
        log.info("signal %d: stopping after the batch in flight", signum)
        stopping.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    log.info("run %s: reading %s, scoring with %s, checkpoint %s", args.run_id, args.stream or args.stream_arn,
             args.endpoint_name, args.checkpoint)
    progress.write("RUNNING", query)
    try:
        while query.isActive and not stopping.is_set():
            query.awaitTermination(args.progress_seconds)
            progress.write("RUNNING", query)
        if stopping.is_set():
            deadline = time.monotonic() + STOP_WAIT_SECONDS
            while query.status.get("isTriggerActive") and time.monotonic() < deadline:
                time.sleep(0.2)  # let the batch in flight commit; a batch cut short is replayed anyway
            query.stop()
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
