"""Scoring from Spark through the endpoint: one request per row vs batched requests vs in-process.

The seed design had a Spark job call the endpoint once per row. Measured side by side on the same
rows with local Spark (``local[2]``) and the local endpoint (2 container instances behind the
runtime router), one ``sagemaker-runtime`` client per partition:

- **per-row**: ``invoke_endpoint`` for every row;
- **batched**: ``churn.scoring.score_lines``, 500 rows per request (under the 6 MB limit);
- **in-process**: the booster shipped to the executors, ``inplace_predict`` per partition.

    .venv/bin/python benchmarks/spark_endpoint_scoring.py [--rows 100000] [--per-row-rows 4000]   (after `make run`)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from _serving import REPO, local_endpoint, published_model, scoring_rows, source_lake


def per_row(runtime: str, endpoint: str):
    def run(lines):
        from local_aws.endpoints import runtime_client

        client = runtime_client(runtime)
        for line in lines:
            answer = client.invoke_endpoint(EndpointName=endpoint, ContentType="text/csv", Body=line + "\n")
            yield answer["Body"].read().decode().strip().rsplit(",", 1)

    return run


def batched(runtime: str, endpoint: str):
    def run(lines):
        from churn.scoring import score_lines
        from local_aws.endpoints import runtime_client

        yield from score_lines(runtime_client(runtime), endpoint, lines)

    return run


def in_process(model_bytes):
    def run(lines):
        import numpy as np
        import xgboost as xgb

        model = xgb.Booster()
        model.load_model(bytearray(model_bytes.value))
        chunk = list(lines)
        if not chunk:
            return
        ids = [line.split(",", 1)[0] for line in chunk]
        matrix = np.array([[float(v) if v else np.nan for v in line.split(",")[1:]] for line in chunk])
        yield from zip(ids, model.inplace_predict(matrix).tolist())

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--per-row-rows", type=int, default=4_000, help="fewer rows for the slow per-row path")
    opts = parser.parse_args()
    lake = source_lake()
    model_tar = published_model(lake)
    rows = scoring_rows(lake, opts.rows)
    import tarfile

    with tarfile.open(model_tar) as tar:
        model_bytes = tar.extractfile("xgboost-model.json").read()
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO / "include"), str(REPO / "plugins"), os.environ.get("PYTHONPATH", "")])
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]").appName("endpoint-scoring-bench")
             .config("spark.ui.enabled", "false").config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.driver.host", "127.0.0.1").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    results = []
    try:
        with local_endpoint(model_tar, instances=2) as (runtime, endpoint):
            shipped = spark.sparkContext.broadcast(model_bytes)
            for label, fn, n in (
                ("per-row requests", per_row(runtime, endpoint), opts.per_row_rows),
                ("batched requests (500 rows)", batched(runtime, endpoint), opts.rows),
                ("in-process (booster on executors)", in_process(shipped), opts.rows),
            ):
                data = spark.sparkContext.parallelize(rows[:n], 2).cache()
                data.count()
                started = time.perf_counter()
                scored = data.mapPartitions(fn).collect()
                seconds = time.perf_counter() - started
                assert len(scored) == n and len({i for i, _ in scored}) == n, label
                results.append((label, n, seconds, {i: float(s) for i, s in scored[:200]}))
    finally:
        spark.stop()
    reference = results[-1][3]
    print(f"\nlocal Spark local[2], 2 partitions; local endpoint with 2 instances; {len(rows[0].split(',')) - 1} features\n")
    print(f"| {'scoring path':<36} | {'rows':>7} | {'seconds':>8} | {'rows/s':>9} | {'max |diff| vs in-process':>25} |")
    print(f"|{'-' * 38}|{'-' * 9}|{'-' * 10}|{'-' * 11}|{'-' * 27}|")
    for label, n, seconds, sample in results:
        diff = max(abs(sample[i] - reference[i]) for i in sample if i in reference) if set(sample) & set(reference) else float("nan")
        print(f"| {label:<36} | {n:>7,} | {seconds:>8.2f} | {n / seconds:>9,.0f} | {diff:>25.1e} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
