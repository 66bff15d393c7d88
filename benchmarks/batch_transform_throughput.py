"""Batch scoring throughput, I/O included: the local batch transform vs raw in-process XGBoost.

Both score the same CSV objects (``customer_id,<19 features>``) with the published model and write
``customer_id,score`` files:

- **batch transform**: ``run_transform_job`` with the scoring DAG's request (SplitType Line,
  MultiRecord batches up to MaxPayloadInMB, InputFilter ``$[1:]``, JoinSource Input, OutputFilter
  ``$[0,-1]``), so the rows go through the inference handlers in the transform "container";
- **raw**: pandas ``read_csv`` -> ``Booster.inplace_predict`` -> write, in this process.

Also printed: ``inplace_predict`` alone on the in-memory matrix (no I/O), for scale.

    .venv/bin/python benchmarks/batch_transform_throughput.py [--rows 400000] [--objects 4]   (after `make run`)
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from _serving import booster, model_request, published_model, scoring_rows, source_lake, temporary_lake


def write_objects(root: Path, rows: list[str], objects: int) -> Path:
    folder = root / "churn-lake/scoring_input/dt=2026-07-02"
    folder.mkdir(parents=True)
    size = -(-len(rows) // objects)
    for i in range(objects):
        (folder / f"part-{i:05d}.csv").write_text("\n".join(rows[i * size:(i + 1) * size]) + "\n")
    return folder


def raw(model, inputs: Path, out: Path) -> float:
    import pandas as pd

    out.mkdir(parents=True)
    started = time.perf_counter()
    for path in sorted(inputs.glob("*.csv")):
        frame = pd.read_csv(path, header=None)
        scores = model.inplace_predict(frame.iloc[:, 1:].to_numpy(dtype="float64"))
        (out / f"{path.name}.out").write_text(
            "".join(f"{i},{s:.6f}\n" for i, s in zip(frame.iloc[:, 0], scores))
        )
    return time.perf_counter() - started


def transform(uri: str) -> tuple[float, float]:
    from local_aws import code_deploy
    from local_aws.transform import run_transform_job

    code_deploy.deploy()  # deployed once before timing, as make run deploys
    request = {
        "Model": model_request("bench-model", uri),
        "Transform": {
            "TransformJobName": f"bench-{time.time_ns()}",
            "ModelName": "bench-model",
            "BatchStrategy": "MultiRecord",
            "MaxPayloadInMB": 6,
            "MaxConcurrentTransforms": 2,  # as churn_batch_scoring
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                "S3Uri": "s3://churn-lake/scoring_input/dt=2026-07-02/"}},
                "ContentType": "text/csv", "SplitType": "Line",
            },
            "TransformOutput": {"S3OutputPath": "s3://churn-lake/predictions/dt=2026-07-02/", "Accept": "text/csv"},
            "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
            "DataProcessing": {"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
        },
    }
    started = time.perf_counter()
    result = run_transform_job(request, logging.getLogger("quiet"))
    return time.perf_counter() - started, result["Transform"]["LocalScoringSeconds"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--objects", type=int, default=4)
    opts = parser.parse_args()
    lake = source_lake()
    model_tar = published_model(lake)
    rows = scoring_rows(lake, opts.rows)
    model = booster(model_tar)
    with temporary_lake(model_tar) as (root, uri):
        inputs = write_objects(root, rows, opts.objects)
        mb = sum(p.stat().st_size for p in inputs.glob("*.csv")) / 1e6
        raw_seconds = raw(model, inputs, root / "raw-out")
        job_seconds, worker_seconds = transform(uri)
        out = sorted((root / "churn-lake/predictions/dt=2026-07-02").glob("*.out"))
        got = sum(len(p.read_text().splitlines()) for p in out)
        assert got == opts.rows, f"transform wrote {got} rows for {opts.rows}"
        same = (root / "raw-out" / out[0].name).read_text() == out[0].read_text()
    import numpy as np

    matrix = np.array([[float(v) for v in r.split(",")[1:]] for r in rows[:100_000]])
    started = time.perf_counter()
    model.inplace_predict(matrix)
    predict_only = (time.perf_counter() - started) * len(rows) / len(matrix)

    print(f"\n{opts.rows:,} rows in {opts.objects} objects ({mb:.0f} MB CSV), model with "
          f"{model.num_boosted_rounds()} trees; outputs identical: {same}\n")
    print(f"| {'path':<46} | {'seconds':>8} | {'rows/s':>10} | {'vs raw':>7} |")
    print(f"|{'-' * 48}|{'-' * 10}|{'-' * 12}|{'-' * 9}|")
    for label, seconds in (
        ("raw: read_csv + inplace_predict + write", raw_seconds),
        ("local batch transform (whole job)", job_seconds),
        ("local batch transform (scoring, model loaded)", worker_seconds),
        ("inplace_predict alone, no I/O (for scale)", predict_only),
    ):
        print(f"| {label:<46} | {seconds:>8.2f} | {opts.rows / seconds:>10,.0f} | {raw_seconds / seconds:>6.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
