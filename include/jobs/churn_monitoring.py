"""Spark job: drift of the day's scored data against the model's baseline, and realized quality.

For monitoring date ``ds``:

1. **Drift.** Each source of the day's scored inputs is binned like the baseline of the production
   model (``--baseline``: the ``baseline.json`` registered with it) and compared per feature and for
   the score (PSI and Jensen-Shannon distance, ``churn.monitoring``):
   - ``batch``: ``predictions/dt=<ds>/`` (customer_id, score) joined with ``features/dt=<ds>/``;
   - ``capture``: the endpoint's data capture of the UTC day ``ds`` (``churn.capture``);
   - ``stream``: ``stream_predictions/dt=<ds>/`` (events of that day, scored with their features).
   A source with no data that day is reported as such, not as drift.
2. **Realized quality.** The label window of prediction date ``L = ds - LABEL_WINDOW_DAYS`` has
   closed: ``predictions/dt=<L>/`` joined with ``labels/dt=<L>/`` gives AUC, PR-AUC, Brier score,
   calibration and lift, for the model version that scored ``L`` (from that partition's marker).
3. Writes ``monitoring/daily/dt=<ds>/summary.json`` whole, as one JSON line (a rerun replaces it; the
   Glue table ``monitoring_daily`` reads it as one row). Thresholds are not
   applied here: the DAG's ``decide`` task reads the figures with its params.

Runs the same on EMR Serverless (entryPointArguments), Glue (``--key value`` job arguments) and
local Spark.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from churn import capture, features, monitoring, sparkio

log = logging.getLogger("churn_monitoring")
SOURCES = ("batch", "capture", "stream")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="churn monitoring job")
    parser.add_argument("--ds", required=True, type=dt.date.fromisoformat, help="monitoring date YYYY-MM-DD")
    parser.add_argument("--lake", required=True, help="lake root URI, e.g. s3://churn-lake")
    parser.add_argument("--baseline", required=True, help="URI of the production model's baseline.json")
    parser.add_argument("--model-version", required=True, help="the production model's registry version")
    parser.add_argument("--capture", help="data capture root (default: <lake>/monitoring/capture)")
    parser.add_argument("--output", help="results root (default: <lake>/monitoring/daily)")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        log.info("ignoring arguments not meant for this job: %s", unknown)
    lake = args.lake.rstrip("/")
    args.capture = (args.capture or f"{lake}/monitoring/capture").rstrip("/")
    args.output = (args.output or f"{lake}/monitoring/daily").rstrip("/")
    return args


def load_baseline(spark: SparkSession, uri: str) -> dict:
    """The baseline, checked: every feature of the model and the score, with bins that fit their edges."""
    try:
        baseline = sparkio.read_json(spark, uri)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"no baseline at {uri}: the production model was registered without one (before monitoring "
            "existed). Retrain (trigger churn_training) so that the registered version carries its baseline."
        ) from err
    if baseline.get("format") != "churn-baseline/1":
        raise ValueError(f"{uri} is not a churn baseline (format {baseline.get('format')!r}, expected churn-baseline/1)")
    missing = [c for c in features.FEATURE_COLUMNS if c not in baseline.get("features", {})]
    if missing or "score" not in baseline:
        raise ValueError(f"{uri} lacks the baseline of {missing or ['score']}: retrain to get a complete baseline")
    for name, summary in [*baseline["features"].items(), ("score", baseline["score"])]:
        if len(summary["counts"]) != len(summary["edges"]) + 1:
            raise ValueError(f"{uri}: {name} has {len(summary['counts'])} counts for {len(summary['edges'])} edges")
    return baseline


def _read_batch(spark: SparkSession, lake: str, day: str) -> tuple[DataFrame | None, DataFrame | None, int]:
    """The day's batch predictions joined with the features they were scored from: (the join, cached:
    the caller unpersists it; its rows that have features; the number of predictions without).
    The join is computed once, for the count and for the caller's drift."""
    partition = f"{lake}/predictions/dt={day}"
    if not sparkio.exists(spark, f"{partition}/_SUCCESS"):
        return None, None, 0
    predictions = spark.read.csv(partition, schema="customer_id string, score double")
    feats = spark.read.parquet(f"{lake}/features/dt={day}").select("customer_id", *features.FEATURE_COLUMNS)
    joined = (predictions.join(feats, "customer_id", "left")
              .withColumn("_joined", F.col("tenure_days").isNotNull()).cache())
    counts = joined.agg(F.count(F.lit(1)).alias("n"), F.sum(F.col("_joined").cast("int")).alias("ok")).first()
    return joined, joined.where("_joined").drop("_joined"), int(counts["n"] - (counts["ok"] or 0))


def _read_stream(spark: SparkSession, lake: str, day: str) -> DataFrame | None:
    partition = f"{lake}/stream_predictions/dt={day}"
    if not sparkio.exists(spark, partition):
        return None
    return spark.read.parquet(partition).select(*features.FEATURE_COLUMNS, "score")


def source_drift(frame: DataFrame, baseline: dict) -> dict:
    """Drift of every feature and of the score of one source, in one Spark pass."""
    edges = {name: summary["edges"] for name, summary in baseline["features"].items()}
    edges["score"] = baseline["score"]["edges"]
    observed = monitoring.binned_counts(frame, edges)
    rows = observed["score"]["rows"]
    if not rows:
        return {"rows": 0}
    return {
        "rows": rows,
        "features": {name: monitoring.drift(baseline["features"][name], observed[name]) for name in baseline["features"]},
        "score": {**monitoring.drift(baseline["score"], observed["score"]), "baseline_mean": baseline["score"].get("mean")},
    }


def realized_quality(spark: SparkSession, lake: str, ds: dt.date) -> dict:
    """Quality of the predictions whose label window closed with ``ds``, or why there is none yet."""
    day = (ds - dt.timedelta(days=features.LABEL_WINDOW_DAYS)).isoformat()
    result: dict = {"prediction_date": day}
    predictions_marker, labels = f"{lake}/predictions/dt={day}/_SUCCESS", f"{lake}/labels/dt={day}"
    if not sparkio.exists(spark, predictions_marker):
        return {**result, "status": "no_predictions"}
    if not sparkio.exists(spark, f"{labels}/_SUCCESS"):
        return {**result, "status": "no_labels"}
    marker = sparkio.read_text(spark, predictions_marker).strip()
    scored_by = json.loads(marker).get("model_package_version") if marker.startswith("{") else None
    predictions = spark.read.csv(f"{lake}/predictions/dt={day}", schema="customer_id string, score double")
    labelled = predictions.join(
        spark.read.parquet(labels).select("customer_id", F.col(features.LABEL_COLUMN).alias("label")),
        "customer_id", "left",
    ).cache()
    unlabelled = labelled.where(F.col("label").isNull() | F.col("score").isNull()).count()
    counts = monitoring.score_counts(labelled.where(F.col("label").isNotNull() & F.col("score").isNotNull()))
    labelled.unpersist()
    if not counts:
        return {**result, "status": "no_labelled_predictions", "unlabelled": unlabelled}
    return {**result, "status": "closed", "model_version": scored_by, "unlabelled": unlabelled,
            **monitoring.quality(counts)}


def run(spark: SparkSession, args: argparse.Namespace) -> dict:
    lake, day = args.lake.rstrip("/"), args.ds.isoformat()
    baseline = load_baseline(spark, args.baseline)
    summary: dict = {"ds": day, "model_version": str(args.model_version), "baseline_uri": args.baseline,
                     "sources": {}, "rejected": {}}

    joined, batch, unjoined = _read_batch(spark, lake, day)
    captured, rejected = capture.read_capture(spark, args.capture, args.ds)
    frames = {"batch": batch, "capture": captured.select(*features.FEATURE_COLUMNS, "score"),
              "stream": _read_stream(spark, lake, day)}
    summary["rejected"] = {"batch_without_features": unjoined, "capture": rejected.count()}
    for name in SOURCES:
        frame = frames[name]
        summary["sources"][name] = {"rows": 0} if frame is None else source_drift(frame, baseline)
    if joined is not None:
        joined.unpersist()
    summary["quality"] = realized_quality(spark, lake, args.ds)
    # One line: the summary is the monitoring_daily table's one row for the day, and Athena's JSON SerDe reads
    # one object per line (infra/cloudformation/churn.yaml); the DAG's tasks parse it as any JSON.
    sparkio.write_text(spark, f"{args.output}/dt={day}/summary.json", json.dumps(summary, sort_keys=True, default=str) + "\n")

    def score_psi(source: str) -> str:
        found = summary["sources"][source]
        return f"{found['rows']} rows, score PSI {found['score']['psi']:.3f}" if found["rows"] else "no data"

    quality = summary["quality"]
    log.info("monitoring %s (model v%s): %s; realized quality of %s: %s", day, args.model_version,
             "; ".join(f"{s}: {score_psi(s)}" for s in SOURCES), quality["prediction_date"],
             f"AUC {quality['auc'] if quality['auc'] is None else round(quality['auc'], 4)} on {quality['rows']} rows" if quality["status"] == "closed" else quality["status"])
    return summary


def main(argv: list[str] | None = None) -> int:
    return sparkio.run_batch_job("churn-monitoring", parse_args, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
