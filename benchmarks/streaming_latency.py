"""The streaming scoring job on the local target: sustained events/s and event-to-prediction latency
at fixed input rates, then the saturation rate.

Everything runs on this machine, in a temporary lake with its own ports: the Kinesis emulator, the
producer (``churn.stream_producer``), the job (``include/jobs/churn_stream_scoring.py`` under local
Spark, started the way the churn_streaming DAG starts it) and a 2-instance local endpoint with the
model `make run` published. The sample's feature snapshots and raw event days are copied in.

* latency of an event = the commit time of the micro-batch that wrote its prediction (from the
  job's progress) - ``produced_at`` (set by the producer when it sent the event);
* throughput = events of the step / (last commit of the step - first event sent), and the p50
  latency of the first and the last quarter of the step's events (growing: the job falls behind);
* saturation: events sent as fast as the producer can, rate = events / (last commit - first
  batch start of the step).

    .venv/bin/python benchmarks/streaming_latency.py [--trigger 1] [--rates 50,200,500] [--seconds 20]
    (after `make run`)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import time
from pathlib import Path

from _serving import LOG, free_port, local_endpoint, published_model, source_lake


def _copy_inputs(source: Path, target: Path, days: int) -> list[dt.date]:
    """The newest ``days`` event days and their feature snapshots; returns the event days."""
    raw_days = sorted(p.name[3:] for p in (source / "churn-lake/raw/events").glob("dt=*"))[-days:]
    for day in raw_days:
        shutil.copytree(source / f"churn-lake/raw/events/dt={day}", target / f"churn-lake/raw/events/dt={day}")
        snapshot = source / f"churn-lake/features/dt={day}"
        if not snapshot.exists():
            raise SystemExit(f"no feature snapshot {snapshot}: run `make run` (it builds 150 days of snapshots)")
        shutil.copytree(snapshot, target / f"churn-lake/features/dt={day}")
    return [dt.date.fromisoformat(d) for d in raw_days]


def _table(rows: list[dict]) -> None:
    print("\n| input | events | throughput events/s | p50 latency | p99 latency | max | p50 first / last quarter "
          "| batches | mean batch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {r['events']} | {r['rate']:.0f} | {r['p50']:.2f} s | {r['p99']:.2f} s | "
              f"{r['max']:.2f} s | {r['first_q']:.2f} / {r['last_q']:.2f} s | {r['batches']} | {r['batch_ms']:.0f} ms |")
    print("\nthroughput: events / (last commit of the step - first event sent), so at a fixed rate it includes "
          "one latency at the end;\nas fast as possible: events / (last commit - first batch start). A p50 that "
          "grows from the first to the last quarter means the job falls behind that input rate.")


class Bench:
    def __init__(self, lake: Path, lines: list[str]) -> None:
        self.lake, self.lines, self.sent = lake, lines, 0

    def progress(self) -> dict:
        from churn_ml import stream_job

        return stream_job.read_progress(self.run_id) or {"recent_batches": [], "totals": {"input": 0}}

    def produce(self, count: int, rate: float) -> float:
        from churn.stream_producer import kinesis_client, produce
        from local_aws import kinesis

        if self.sent + count > len(self.lines):
            raise SystemExit(f"not enough generated events ({len(self.lines)}) for this run: lower --seconds or --rates")
        started = time.time()
        produce(kinesis_client(kinesis.server_url()), os.environ["CHURN_KINESIS_STREAM"],
                iter(self.lines[self.sent:self.sent + count]), rate)
        self.sent += count
        return started

    def wait_until_processed(self, timeout: float = 300.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            progress = self.progress()
            if progress["totals"]["input"] >= self.sent:
                return progress
            time.sleep(0.5)
        raise SystemExit(f"the job processed {self.progress()['totals']['input']} of {self.sent} events in {timeout:.0f}s")

    def step(self, label: str, count: int, rate: float, first_batch: int) -> dict:
        import pyarrow.dataset as ds_

        started = self.produce(count, rate)
        progress = self.wait_until_processed()
        batches = [b for b in progress["recent_batches"] if b["batch_id"] >= first_batch]
        commits = {b["batch_id"]: dt.datetime.fromisoformat(b["committed_at"]).timestamp() for b in batches}
        if not (self.lake / "churn-lake/stream_predictions").exists():
            raise SystemExit(f"{label}: no predictions were written; the job's last batches: {batches[-3:]}; "
                             f"errors under {self.lake / 'churn-lake/errors/stream_events'}")
        table = ds_.dataset(self.lake / "churn-lake/stream_predictions", format="parquet", partitioning="hive") \
            .to_table(columns=["batch_id", "produced_at"], filter=ds_.field("batch_id") >= first_batch)
        by_time = sorted(
            (p.replace(tzinfo=dt.UTC).timestamp(), commits[int(b)])
            for b, p in zip(table.column("batch_id").to_pylist(), table.column("produced_at").to_pylist())
        )
        latencies = sorted(commit - produced for produced, commit in by_time)
        quarter = max(1, len(by_time) // 4)  # first vs last quarter of the step: does the lag grow?
        first_q = statistics.median(c - p for p, c in by_time[:quarter])
        last_q = statistics.median(c - p for p, c in by_time[-quarter:])
        if not latencies:
            raise SystemExit(f"{label}: no predictions were written")
        begin = started if rate else min(dt.datetime.fromisoformat(b["started_at"]).timestamp() for b in batches)
        return {
            "label": label, "events": count, "rate": count / (max(commits.values()) - begin),
            "p50": statistics.median(latencies), "p99": latencies[int(0.99 * (len(latencies) - 1))],
            "max": latencies[-1], "batches": len(batches), "first_q": first_q, "last_q": last_q,
            "batch_ms": statistics.mean(b["duration_ms"] for b in batches), "next_batch": max(commits) + 1,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trigger", type=float, default=1.0, help="micro-batch trigger seconds")
    parser.add_argument("--rates", default="50,200,500", help="input rates, events/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each fixed-rate step")
    parser.add_argument("--saturation-events", type=int, default=10000)
    parser.add_argument("--days", type=int, default=10, help="event days copied from the sample")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r]

    source = source_lake()
    with local_endpoint(published_model(source), instances=2) as (_, endpoint):
        from churn.stream_producer import event_lines
        from churn_ml import stream_job
        from local_aws import control_plane

        lake = Path(os.environ["LAKE_ROOT"])
        days = _copy_inputs(source, lake, args.days)
        lines = list(event_lines(lake / "churn-lake/raw", days[0], days[-1]))
        os.environ.update(CHURN_ENDPOINT_NAME=endpoint, CHURN_KINESIS_STREAM="churn-events-bench",
                          CHURN_LOCAL_AWS_PORT=str(free_port()), CHURN_STREAMING_TRIGGER_SECONDS=f"{args.trigger:g}")
        bench = Bench(lake, lines)
        try:
            bench.run_id = stream_job.ensure_job(LOG)["run_id"]
            warm = bench.step("warm-up (not reported)", 200, 0, 0)
            results, next_batch = [], warm["next_batch"]
            for rate in rates:
                result = bench.step(f"{rate:.0f} events/s", int(rate * args.seconds), rate, next_batch)
                results.append(result)
                next_batch = result["next_batch"]
            results.append(bench.step("as fast as possible", args.saturation_events, 0, next_batch))
        finally:
            stream_job.stop_job(LOG)
            control_plane.stop_server()
    print(f"\nstreaming job, local target, {os.cpu_count()} cores, trigger {args.trigger:g} s, "
          f"endpoint with 2 instances, {len(lines)} generated events available")
    _table(results)


if __name__ == "__main__":
    main()
