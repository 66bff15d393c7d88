"""Spark job: validate raw partitions, quarantine bad records, build point-in-time features and labels.

For run date ``ds`` (a snapshot date: the state at the start of that day):

1. validates the raw partitions that landed since the previous run (``dt = ds - 1``; with
   ``--history-days N`` every raw partition the snapshots ``[ds - N, ds]`` need) with the rules the
   streaming job applies (``churn.quality``: the record size, safe ids, finite values in range, the
   same reason codes), writes clean typed Parquet to ``clean/<entity>/`` (events de-duplicated per
   customer, as the stream's state does) and bad records with their reason to ``errors/<entity>/``,
   and fails when a partition has more bad records than allowed;
2. writes features for the snapshots ``[ds - N, ds]`` to ``features/`` (Parquet) and
   ``scoring_input/`` (headerless CSV: customer_id then the features, the batch transform input);
3. writes labels for the snapshots whose label window has closed to ``labels/``;
4. writes a run summary to ``_runs/churn_features/ds=<ds>/summary.json``, with the days of every
   partition it wrote (the DAG's report_features registers them in the Glue Data Catalog).

Every output is replaced per partition, so rerunning a date never duplicates anything. Runs the
same on EMR Serverless (entryPointArguments), Glue (``--key value`` job arguments) and local Spark.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from churn import features, quality, sparkio
from churn.schema import ENTITIES

log = logging.getLogger("churn_features")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="churn features job")
    parser.add_argument("--ds", required=True, type=dt.date.fromisoformat, help="snapshot date YYYY-MM-DD")
    parser.add_argument("--lake", required=True, help="lake root URI, e.g. s3://churn-lake")
    parser.add_argument("--history-days", type=int, default=0, help="also (re)build the N snapshot days before ds")
    parser.add_argument("--max-bad-fraction", type=float, default=0.05, help="per-partition limit of bad records")
    parser.add_argument(
        "--min-bad-records", type=int, default=5, help="a partition with fewer bad records never fails the run"
    )
    # Glue adds its own arguments (--JOB_NAME, --job-bookmark-option, ...): ignore what is not ours.
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        log.info("ignoring arguments not meant for this job: %s", unknown)
    if args.history_days < 0:
        parser.error(f"--history-days must be >= 0, got {args.history_days}")
    if not 0 <= args.max_bad_fraction <= 1:
        parser.error(f"--max-bad-fraction must be within [0, 1], got {args.max_bad_fraction}")
    return args


def _days(first: dt.date, last: dt.date) -> list[str]:
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def clean_partitions(spark: SparkSession, lake: str, entity: str, days: list[str], args: argparse.Namespace) -> dict:
    """Validate raw ``days`` of ``entity``; write clean and quarantined records; enforce the limit."""
    raw_root, errors_root = f"{lake}/raw/{entity}", f"{lake}/errors/{entity}"
    validated = quality.validate(
        quality.read_raw(spark, entity, [f"{raw_root}/dt={d}/" for d in days]), entity
    ).cache()
    counts = quality.summarize(validated)
    sparkio.replace_partitions(
        spark, quality.quarantined(validated, entity).coalesce(1), errors_root, days, "json"
    )
    quality.check_bad_fraction(entity, counts, args.max_bad_fraction, args.min_bad_records, errors_root)
    sparkio.replace_partitions(
        spark, quality.CLEANERS[entity](validated).repartition("dt"), f"{lake}/clean/{entity}", days, "parquet"
    )
    validated.unpersist()
    bad = sum(c["bad"] for c in counts.values())
    log.info("%s: validated %d partitions, %d records quarantined", entity, len(days), bad)
    # days: every clean partition written (a day without records too: an empty partition with its marker)
    return {"partitions": counts, "days": days, "records": sum(c["records"] for c in counts.values()),
            "quarantined": bad}


def run(spark: SparkSession, args: argparse.Namespace) -> dict:
    lake = args.lake.rstrip("/")
    ds = args.ds
    first_snapshot = ds - dt.timedelta(days=args.history_days)
    window_start = first_snapshot - dt.timedelta(days=features.LOOKBACK_DAYS)
    yesterday = (ds - dt.timedelta(days=1)).isoformat()

    summary: dict = {"ds": ds.isoformat(), "history_days": args.history_days, "entities": {}}
    for entity in ENTITIES:
        landed = [d for d in sparkio.complete_partitions(spark, f"{lake}/raw/{entity}") if d < ds.isoformat()]
        if yesterday not in landed:
            raise FileNotFoundError(
                f"raw {entity} partition dt={yesterday} is missing or has no _SUCCESS marker under "
                f"{lake}/raw/{entity}/; snapshot {ds} needs it. Wait for the upstream export or rerun later."
            )
        if args.history_days:
            # Customers are needed since the first sign-up; events only for the feature window.
            lower = landed[0] if entity == "customers" else max(landed[0], window_start.isoformat())
            todo = [d for d in landed if d >= lower]
        else:
            todo = [yesterday]
        summary["entities"][entity] = clean_partitions(spark, lake, entity, todo, args)

        # Every partition the features read must have been cleaned, by this run or an earlier one.
        cleaned = set(sparkio.complete_partitions(spark, f"{lake}/clean/{entity}"))
        needed = [d for d in landed if entity == "customers" or d >= window_start.isoformat()]
        missing = [d for d in needed if d not in cleaned]
        if missing:
            raise RuntimeError(
                f"clean {entity} partitions {missing[0]}..{missing[-1]} ({len(missing)} days) are missing, so "
                f"features for {ds} would be computed from incomplete data. Run this job once with "
                f"--history-days {(ds - dt.date.fromisoformat(missing[0])).days} (the DAG param history_days) "
                f"or backfill the features DAG over those dates."
            )

    clean_events = spark.read.parquet(f"{lake}/clean/events").where(F.col("dt") < F.lit(ds.isoformat()))
    customers = spark.read.parquet(f"{lake}/clean/customers").where(F.col("dt") < F.lit(ds.isoformat()))
    window_events = clean_events.where(F.col("dt") >= F.lit(window_start.isoformat()))
    cancellations = clean_events.where(F.col("event_type") == "cancellation")

    snapshot_days = _days(first_snapshot, ds)
    feats = (
        features.snapshot_features(customers, window_events, cancellations, first_snapshot, ds)
        .withColumn("dt", F.date_format("snapshot_date", "yyyy-MM-dd"))
        .cache()
    )
    sparkio.replace_partitions(spark, feats.repartition("dt"), f"{lake}/features", snapshot_days, "parquet")
    scoring = feats.select("customer_id", *features.FEATURE_COLUMNS, "dt").repartition("dt")
    sparkio.replace_partitions(spark, scoring, f"{lake}/scoring_input", snapshot_days, "csv", header="false")
    feature_rows = {r["dt"]: int(r["n"]) for r in feats.groupBy("dt").agg(F.count(F.lit(1)).alias("n")).collect()}
    feats.unpersist()
    summary["features"] = {"snapshots": len(snapshot_days), "rows": sum(feature_rows.values()), "per_day": feature_rows,
                           "days": snapshot_days}  # the features/ and scoring_input/ partitions written

    last_label = ds - dt.timedelta(days=features.LABEL_WINDOW_DAYS)
    first_label = min(first_snapshot, last_label)
    label_days = _days(first_label, last_label)
    labels = (
        features.churn_labels(customers, cancellations, first_label, last_label)
        .withColumn("dt", F.date_format("snapshot_date", "yyyy-MM-dd"))
        .cache()
    )
    sparkio.replace_partitions(spark, labels.repartition("dt"), f"{lake}/labels", label_days, "parquet")
    stats = labels.agg(F.count(F.lit(1)).alias("n"), F.sum(features.LABEL_COLUMN).alias("pos")).first()
    labels.unpersist()
    summary["labels"] = {
        "snapshots": f"{label_days[0]}..{label_days[-1]}",
        "days": label_days,  # the labels/ partitions written
        "rows": int(stats["n"]),
        "positives": int(stats["pos"] or 0),
    }
    sparkio.write_json(spark, f"{lake}/_runs/churn_features/ds={ds.isoformat()}/summary.json", summary)
    log.info(
        "features for %s: %d rows over %d snapshots; labels: %d rows (%d positive); quarantined: %s",
        ds, summary["features"]["rows"], len(snapshot_days), summary["labels"]["rows"], summary["labels"]["positives"],
        {e: s["quarantined"] for e, s in summary["entities"].items()},
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    return sparkio.run_batch_job("churn-features", parse_args, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
