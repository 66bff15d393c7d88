"""The monitoring job's time per day of data, next to the daily features job, at 1x and 4x the sample.

For each scale (1x = ``make run``'s 4,000 customers), in a temporary lake:

1. the sample (``churn.datagen``, 120 days) and the features job over its history (set-up, not timed);
2. a model trained in this process on early snapshots, its baseline (``churn_baseline.build``, as the
   training job writes it) and its predictions for the benchmark day and for the day 30 before it
   (so the realized quality is computed too), plus a capture of a third of the customers and the
   same third as stream predictions: every source of the job has data;
3. timed, each through ``spark-submit`` as the local target runs the jobs (``local_aws.spark``):
   the features job's daily run (``--history-days 0``) and the monitoring job, ``--repeat`` times each.

    .venv/bin/python benchmarks/monitoring_job.py [--scales 1 4] [--repeat 2]

Prints one table: wall time per job run (median of the repeats, Spark's start included), rows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for sub in ("include", "include/sagemaker", "plugins", ""):
    sys.path.insert(0, str(REPO / sub))

START = dt.date(2026, 1, 1)
DAYS = 120
DS = START + dt.timedelta(days=DAYS)
BASE_CUSTOMERS = 4000
log = logging.getLogger("monitoring_job")


def prepare(root: Path, customers: int) -> dict:
    """The lake of one scale: sample, features, model, baseline, predictions, capture, stream."""
    import pandas as pd
    import xgboost as xgb

    import churn_baseline
    from churn import datagen, features

    lake = root / "churn-lake"
    datagen.generate(datagen.GeneratorConfig(out=lake / "raw", customers=customers, start=START, days=DAYS))
    run_job("churn_features", ["--ds", DS.isoformat(), "--lake", "s3://churn-lake", "--history-days", "90"])
    names = list(features.FEATURE_COLUMNS)

    def table(name: str, days: list[dt.date]) -> pd.DataFrame:
        return pd.concat([pd.read_parquet(lake / name / f"dt={d}") for d in days], ignore_index=True)

    train_days = [DS - dt.timedelta(days=d) for d in range(60, 90, 7)]
    train = table("features", train_days).merge(table("labels", train_days), on=["customer_id", "snapshot_date"])
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 4, "eta": 0.1, "nthread": 2},
                        xgb.DMatrix(train[names], label=train[features.LABEL_COLUMN]), num_boost_round=80)
    holdout = table("features", [DS - dt.timedelta(days=50)])
    baseline = churn_baseline.build(train[names], booster.predict(xgb.DMatrix(holdout[names])), "benchmark")
    (lake / "registry").mkdir()
    (lake / "registry/baseline.json").write_text(json.dumps(baseline))

    for day in (DS - dt.timedelta(days=features.LABEL_WINDOW_DAYS), DS):
        scoring = table("features", [day])
        scores = booster.predict(xgb.DMatrix(scoring[names]))
        partition = lake / "predictions" / f"dt={day}"
        partition.mkdir(parents=True)
        (partition / "part-00000.csv.out").write_text(
            "\n".join(f"{c},{s:.7g}" for c, s in zip(scoring["customer_id"], scores)) + "\n")
        (partition / "_SUCCESS").write_text(json.dumps({"rows": len(scoring), "model_package_version": "1"}))
    third = scoring.iloc[::3]
    third_scores = scores[::3]
    stream = lake / "stream_predictions" / f"dt={DS}" / "hour=12" / "batch_id=0"
    stream.mkdir(parents=True)
    third[names].assign(score=third_scores).to_parquet(stream / "part-00000.parquet")
    capture = lake / "monitoring/capture/churn-xgboost/AllTraffic" / DS.strftime("%Y/%m/%d") / "12"
    capture.mkdir(parents=True)
    records = []
    for start in range(0, len(third), 10):  # requests of 10 rows, as the streaming job sends them
        rows = third[names].iloc[start:start + 10].to_numpy()
        body = "\n".join(",".join(repr(float(v)) for v in row) for row in rows)
        answer = "\n".join(repr(float(s)) for s in third_scores[start:start + 10])
        records.append(json.dumps({
            "captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": body,
                                              "encoding": "CSV"},
                            "endpointOutput": {"observedContentType": "text/csv; charset=utf-8", "mode": "OUTPUT",
                                               "data": answer, "encoding": "CSV"}},
            "eventMetadata": {"eventId": f"e{start}", "inferenceTime": f"{DS}T12:00:00Z"}, "eventVersion": "0"}))
    (capture / "00-00-000-benchmark.jsonl").write_text("\n".join(records) + "\n")
    return {"customers": customers, "scored": len(scoring), "captured": len(third)}


def run_job(job: str, arguments: list[str]) -> float:
    from churn_ml import artifacts
    from local_aws import code_deploy
    from local_aws.spark import run_spark_job

    code = artifacts.code_uri(code_deploy.deploy()).rstrip("/")  # deployed before the clock starts
    started = time.perf_counter()
    run_spark_job(name=f"bench-{job}-{time.time_ns()}", entry_point=f"{code}/jobs/{job}.py",
                  arguments=arguments, py_files=[f"{code}/lib/churn.zip"], spark_conf={}, log=log)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    results = []
    for scale in args.scales:
        with tempfile.TemporaryDirectory(prefix="monitoring-bench-") as tmp:
            os.environ.update({"LAKE_ROOT": tmp, "ML_TARGET": "local"})
            prepared = prepare(Path(tmp), BASE_CUSTOMERS * scale)
            features_args = ["--ds", DS.isoformat(), "--lake", "s3://churn-lake", "--history-days", "0"]
            monitoring_args = ["--ds", DS.isoformat(), "--lake", "s3://churn-lake", "--baseline",
                               "s3://churn-lake/registry/baseline.json", "--model-version", "1"]
            times = {"features": [], "monitoring": []}
            for _ in range(args.repeat):
                times["features"].append(run_job("churn_features", features_args))
                times["monitoring"].append(run_job("churn_monitoring", monitoring_args))
            summary = json.loads((Path(tmp) / f"churn-lake/monitoring/daily/dt={DS}/summary.json").read_text())
            assert summary["quality"]["status"] == "closed", summary["quality"]
            assert all(summary["sources"][s]["rows"] for s in ("batch", "capture", "stream")), summary["sources"]
            results.append((scale, prepared, {k: statistics.median(v) for k, v in times.items()}, times))
    print(f"\nmonitoring job vs daily features job, one day of data ({DS}), spark-submit local[{os.cpu_count()}], "
          f"median of {args.repeat}")
    print(f"{'scale':>5} {'customers':>9} {'scored':>7} {'captured+streamed':>17} {'features s':>10} "
          f"{'monitoring s':>12}  runs (features | monitoring)")
    for scale, prepared, median, times in results:
        print(f"{scale:>4}x {prepared['customers']:>9} {prepared['scored']:>7} {2 * prepared['captured']:>17} "
              f"{median['features']:>10.1f} {median['monitoring']:>12.1f}  "
              f"{' '.join(f'{t:.1f}' for t in times['features'])} | {' '.join(f'{t:.1f}' for t in times['monitoring'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
