"""Spark job: build the training set from snapshots whose churn label window has closed.

Joins ``features/`` with ``labels/`` for snapshot dates spaced ``--snapshot-every`` days back
from the newest closed snapshot (``ds - LABEL_WINDOW_DAYS``) within ``--lookback-days``, and splits
them by time: the newest ``--holdout-snapshots`` dates are the holdout (never used for training or
early stopping), the ``--validation-snapshots`` before them the validation set, the rest the
training set. Writes CSV with a header (label first, then the features in FEATURE_COLUMNS order)
to ``<output>/{train,validation,holdout}/`` and a ``_manifest.json`` describing the split. The
output folder is replaced as a whole, so a rerun never mixes two builds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from churn import features, sparkio

log = logging.getLogger("churn_training_set")
SPLITS = ("train", "validation", "holdout")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="churn training set job")
    parser.add_argument("--ds", required=True, type=dt.date.fromisoformat)
    parser.add_argument("--lake", required=True, help="lake root URI, e.g. s3://churn-lake")
    parser.add_argument("--output", required=True, help="URI of this build, e.g. s3://churn-lake/training_sets/ds=...")
    parser.add_argument("--lookback-days", type=int, default=180)
    parser.add_argument("--snapshot-every", type=int, default=7)
    parser.add_argument("--validation-snapshots", type=int, default=3)
    parser.add_argument("--holdout-snapshots", type=int, default=3)
    parser.add_argument("--min-train-snapshots", type=int, default=3)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        log.info("ignoring arguments not meant for this job: %s", unknown)
    for name in ("lookback_days", "snapshot_every", "validation_snapshots", "holdout_snapshots", "min_train_snapshots"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def choose_snapshots(available: list[str], ds: dt.date, args: argparse.Namespace) -> dict[str, list[str]]:
    """Pick evenly spaced closed snapshots and split them by time into train / validation / holdout."""
    newest_closed = ds - dt.timedelta(days=features.LABEL_WINDOW_DAYS)
    oldest = ds - dt.timedelta(days=args.lookback_days)
    present = set(available)
    picked = []
    day = newest_closed
    while day >= oldest:
        if day.isoformat() in present:
            picked.append(day.isoformat())
        day -= dt.timedelta(days=args.snapshot_every)
    picked.sort()
    needed = args.min_train_snapshots + args.validation_snapshots + args.holdout_snapshots
    if len(picked) < needed:
        raise ValueError(
            f"only {len(picked)} snapshots with both features and closed labels between {oldest} and "
            f"{newest_closed} (every {args.snapshot_every} days): {picked}; need at least {needed} "
            f"({args.min_train_snapshots} train + {args.validation_snapshots} validation + "
            f"{args.holdout_snapshots} holdout). Build more feature history (features DAG param history_days) "
            f"or lower the split sizes."
        )
    held = args.validation_snapshots + args.holdout_snapshots
    holdout = picked[-args.holdout_snapshots :]
    validation = picked[-held : -args.holdout_snapshots]
    train = picked[:-held]
    return {"train": train, "validation": validation, "holdout": holdout}


def run(spark: SparkSession, args: argparse.Namespace) -> dict:
    lake, output = args.lake.rstrip("/"), args.output.rstrip("/")
    available = sorted(
        set(sparkio.complete_partitions(spark, f"{lake}/features"))
        & set(sparkio.complete_partitions(spark, f"{lake}/labels"))
    )
    splits = choose_snapshots(available, args.ds, args)
    wanted = [d for days in splits.values() for d in days]
    feats = spark.read.parquet(f"{lake}/features").where(F.col("dt").isin(wanted))
    labels = spark.read.parquet(f"{lake}/labels").where(F.col("dt").isin(wanted))
    joined = feats.join(labels.select("customer_id", "dt", features.LABEL_COLUMN), ["customer_id", "dt"]).cache()

    sparkio.delete(spark, output)
    manifest: dict = {
        "ds": args.ds.isoformat(),
        "label": features.LABEL_COLUMN,
        "features": list(features.FEATURE_COLUMNS),
        "splits": {},
    }
    for split, days in splits.items():
        part = joined.where(F.col("dt").isin(days)).orderBy("dt", "customer_id")
        stats = part.agg(F.count(F.lit(1)).alias("rows"), F.sum(features.LABEL_COLUMN).alias("positives")).first()
        if not stats["rows"] or not stats["positives"] or stats["positives"] == stats["rows"]:
            raise ValueError(
                f"{split} split ({days[0]}..{days[-1]}) has {stats['rows']} rows and {stats['positives']} churners: "
                f"both classes are needed. Check the labels partitions for those dates."
            )
        (
            part.select(F.col(features.LABEL_COLUMN).cast("int"), *features.FEATURE_COLUMNS)
            .coalesce(1)
            .write.mode("overwrite")
            .option("header", "true")
            .csv(f"{output}/{split}")
        )
        manifest["splits"][split] = {
            "snapshots": days,
            "rows": int(stats["rows"]),
            "positives": int(stats["positives"]),
            "positive_rate": round(int(stats["positives"]) / int(stats["rows"]), 5),
        }
    joined.unpersist()
    manifest["fingerprint"] = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
    sparkio.write_json(spark, f"{output}/_manifest.json", manifest)
    log.info("training set %s: %s", output, {s: m["rows"] for s, m in manifest["splits"].items()})
    return manifest


def main(argv: list[str] | None = None) -> int:
    return sparkio.run_batch_job("churn-training-set", parse_args, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
