"""The streaming scoring job on the local target: sustained events/s and event-to-prediction latency
at fixed input rates and at saturation, endpoint scoring and in-process scoring side by side.

Everything runs on this machine, in a temporary lake with its own ports: the control plane (its
Kinesis), the producer (``churn.stream_producer``), the job (``include/jobs/churn_stream_scoring.py``
under local Spark, started the way the churn_streaming DAG starts it) and a 2-instance local endpoint
with the model `make run` published. The sample's feature snapshots and raw event days are copied
in. Each scoring mode gets a fresh stream, checkpoint and outputs, and the same events.

* latency of an event = the commit time of the micro-batch that wrote its prediction (from the
  job's progress) - ``produced_at`` (set by the producer when it sent the event);
* throughput = events of the step / (last commit of the step - first event sent); at a fixed rate
  the p50 of the first and the last quarter of the step's events tell whether the job keeps up;
* saturation: events sent as fast as the producer can, rate = events / (last commit - first event
  sent);
* the profile of a batch: the median over the step's batches of each phase, Spark's (reading the
  source, planning, the logs) and the job's own (the one Spark action, features, scoring, writes).

    .venv/bin/python benchmarks/streaming_latency.py [--trigger 0] [--rates 50,1000,5000] [--seconds 20]
    (after `make run`)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import time
from pathlib import Path

from _serving import LOG, free_port, local_endpoint, published_model, source_lake

SPARK_PHASES = ("latestOffset", "queryPlanning", "walCommit", "addBatch", "commitOffsets")
JOB_PHASES = ("spark", "features", "score", "write")


def _copy_inputs(source: Path, target: Path, days: int) -> list[dt.date]:
    """The newest ``days`` event days that have feature snapshots, with them; returns the event days."""
    snapshots = {p.name[3:] for p in (source / "churn-lake/features").glob("dt=*") if (p / "_SUCCESS").exists()}
    raw_days = sorted(p.name[3:] for p in (source / "churn-lake/raw/events").glob("dt=*") if p.name[3:] in snapshots)
    raw_days = raw_days[-days:]
    if len(raw_days) < days:
        raise SystemExit(f"only {len(raw_days)} event days have feature snapshots: run `make run` or lower --days")
    for day in raw_days:
        shutil.copytree(source / f"churn-lake/raw/events/dt={day}", target / f"churn-lake/raw/events/dt={day}")
        shutil.copytree(source / f"churn-lake/features/dt={day}", target / f"churn-lake/features/dt={day}")
    return [dt.date.fromisoformat(d) for d in raw_days]


def _median_phases(batches: list[dict], key: str, names: tuple[str, ...]) -> dict[str, float]:
    values = {n: [b[key][n] for b in batches if b.get(key) and n in b[key]] for n in names}
    return {n: statistics.median(v) for n, v in values.items() if v}


def _table(rows: list[dict]) -> None:
    print("\n| scoring | input | events | throughput events/s | p50 latency | p99 latency | max | p50 first / last "
          "quarter | batches | mean batch |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['label']} | {r['events']:,} | {r['rate']:,.0f} | {r['p50']:.2f} s | "
              f"{r['p99']:.2f} s | {r['max']:.2f} s | {r['first_q']:.2f} / {r['last_q']:.2f} s | {r['batches']} | "
              f"{r['batch_ms']:,.0f} ms |")
    print("\nA batch, median of the step's batches (ms). Spark: " + ", ".join(SPARK_PHASES)
          + " (addBatch is the job's foreachBatch); the job: " + ", ".join(JOB_PHASES) + ".")
    print("\n| scoring | input | events/batch | " + " | ".join(SPARK_PHASES) + " | " + " | ".join(JOB_PHASES) + " |")
    print("|---|---|---|" + "---|" * (len(SPARK_PHASES) + len(JOB_PHASES)))
    for r in rows:
        spark = [f"{r['spark'].get(n, float('nan')):,.0f}" for n in SPARK_PHASES]
        job = [f"{r['job'].get(n, float('nan')):,.0f}" for n in JOB_PHASES]
        print(f"| {r['mode']} | {r['label']} | {r['events_per_batch']:,.0f} | " + " | ".join(spark + job) + " |")


class Bench:
    def __init__(self, lake: Path, lines: list[str], mode: str) -> None:
        self.lake, self.lines, self.mode, self.sent = lake, lines, mode, 0

    def progress(self) -> dict:
        from churn_ml import stream_job

        return stream_job.read_progress(self.run_id) or {"recent_batches": [], "totals": {"input": 0}}

    def produce(self, count: int, rate: float) -> float:
        from churn.stream_producer import kinesis_client, produce
        from local_aws import kinesis

        if self.sent + count > len(self.lines):
            raise SystemExit(f"not enough events ({len(self.lines)}) for this run: raise --days or lower --seconds")
        started = time.time()
        produce(kinesis_client(kinesis.server_url()), os.environ["CHURN_KINESIS_STREAM"],
                iter(self.lines[self.sent:self.sent + count]), rate)
        self.sent += count
        return started

    def wait_until_processed(self, timeout: float = 600.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            progress = self.progress()
            if progress["totals"]["input"] >= self.sent and all("spark_ms" in b for b in progress["recent_batches"][-3:]):
                return progress
            time.sleep(0.5)
        raise SystemExit(f"the job processed {self.progress()['totals']['input']} of {self.sent} events in {timeout:.0f}s")

    def step(self, label: str, count: int, rate: float, first_batch: int) -> dict:
        import pyarrow.dataset as ds_

        started = self.produce(count, rate)
        progress = self.wait_until_processed()
        batches = [b for b in progress["recent_batches"] if b["batch_id"] >= first_batch]
        commits = {b["batch_id"]: dt.datetime.fromisoformat(b["committed_at"]).timestamp() for b in batches}
        table = ds_.dataset(self.lake / "churn-lake/stream_predictions", format="parquet", partitioning="hive") \
            .to_table(columns=["batch_id", "produced_at"], filter=ds_.field("batch_id") >= first_batch)
        by_time = sorted(
            (p.timestamp(), commits[int(b)])
            for b, p in zip(table.column("batch_id").to_pylist(), table.column("produced_at").to_pylist())
        )
        if not by_time:
            raise SystemExit(f"{label}: no predictions were written; the job's last batches: {batches[-3:]}")
        latencies = sorted(commit - produced for produced, commit in by_time)
        quarter = max(1, len(by_time) // 4)  # first vs last quarter of the step: does the lag grow?
        with_input = [b for b in batches if b["input"]]
        return {
            "mode": self.mode, "label": label, "events": count, "rate": count / (max(commits.values()) - started),
            "p50": statistics.median(latencies), "p99": latencies[int(0.99 * (len(latencies) - 1))],
            "max": latencies[-1], "batches": len(batches),
            "first_q": statistics.median(c - p for p, c in by_time[:quarter]),
            "last_q": statistics.median(c - p for p, c in by_time[-quarter:]),
            "batch_ms": statistics.mean(b["duration_ms"] for b in batches), "next_batch": max(commits) + 1,
            "events_per_batch": statistics.mean(b["input"] for b in with_input),
            "spark": _median_phases(with_input, "spark_ms", SPARK_PHASES),
            "job": _median_phases(with_input, "phases_ms", JOB_PHASES),
        }


def run_mode(mode: str, lake: Path, lines: list[str], rates: list[float], seconds: float, saturation: int) -> list[dict]:
    """One scoring mode with a control plane, stream, checkpoint and outputs of its own (the control
    plane gives the job its stream name when it starts); everything it started is stopped at the end."""
    from churn_ml import stream_job
    from local_aws import control_plane

    for folder in ("stream_predictions", "errors", "_streaming"):
        shutil.rmtree(lake / "churn-lake" / folder, ignore_errors=True)
    os.environ.update(CHURN_STREAMING_SCORING=mode, CHURN_KINESIS_STREAM=f"churn-events-bench-{mode}",
                      CHURN_LOCAL_AWS_PORT=str(free_port()))
    control_plane.ensure_server()  # creates the stream
    os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(control_plane.connection())  # this control plane
    bench = Bench(lake, lines, mode)
    try:
        bench.run_id = stream_job.ensure_job(LOG)["run_id"]
        warm = bench.step("warm-up (not reported)", 500, 0, 0)
        results, next_batch = [], warm["next_batch"]
        for rate in rates:
            result = bench.step(f"{rate:,.0f} events/s", int(rate * seconds), rate, next_batch)
            results.append(result)
            next_batch = result["next_batch"]
        results.append(bench.step("as fast as possible", saturation, 0, next_batch))
        return results
    except BaseException:
        log = next(iter(sorted(lake.glob("churn-lake/_streaming/churn_streaming/runs/*/driver.log"))), None)
        if log is not None:  # why the job did not get there
            print("".join(log.read_text().splitlines(keepends=True)[-40:]))
        raise
    finally:
        stream_job.stop_job(LOG)
        deadline = time.monotonic() + 90  # until the run has stopped: the next mode starts from a clean lake
        while (run := stream_job.latest_run()) and run["JobRunState"] in stream_job.ACTIVE_RUN_STATES \
                and time.monotonic() < deadline:
            time.sleep(1)
        control_plane.stop_server()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trigger", type=float, default=0.0, help="micro-batch trigger seconds (0: back to back)")
    parser.add_argument("--rates", default="50,1000,5000", help="input rates, events/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each fixed-rate step")
    parser.add_argument("--saturation-events", type=int, default=30000)
    parser.add_argument("--days", type=int, default=45, help="event days copied from the sample")
    parser.add_argument("--modes", default="endpoint,in_process", help="scoring modes, in this order")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r]

    source = source_lake()
    with local_endpoint(published_model(source), instances=2) as (_, endpoint):
        from churn.stream_producer import event_lines
        from churn_ml.dag_support import MODEL_POINTER_KEY
        lake = Path(os.environ["LAKE_ROOT"])
        days = _copy_inputs(source, lake, args.days)
        pointer = lake / "churn-lake" / MODEL_POINTER_KEY  # in-process scoring reads the published model
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.write_text(json.dumps({"model_data_url": "s3://churn-lake/models/bench/model.tar.gz"}))
        lines = list(event_lines(lake / "churn-lake/raw", days[0], days[-1]))
        os.environ.update(CHURN_ENDPOINT_NAME=endpoint, CHURN_STREAMING_TRIGGER_SECONDS=f"{args.trigger:g}")
        results = []
        for mode in args.modes.split(","):
            results += run_mode(mode, lake, lines, rates, args.seconds, args.saturation_events)
    print(f"\nstreaming job, local target, {os.cpu_count()} cores, trigger {args.trigger:g} s, endpoint with 2 "
          f"instances, {len(lines):,} events available ({len(days)} days)")
    _table(results)


if __name__ == "__main__":
    main()
