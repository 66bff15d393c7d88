"""Replay generated events onto a Kinesis stream at a given rate (the streaming DAG's input).

Reads the event partitions the sample generator wrote (``python -m churn.datagen``:
``<raw>/events/dt=YYYY-MM-DD/*.jsonl``), in event-time order (the generator writes a day customer
by customer; a live source emits events as they happen), and puts each line on the stream with the
customer id as partition key (one customer's events stay in order on one shard). A valid event
gets ``produced_at`` (UTC, ISO 8601; the streaming latency is measured from it); a corrupt line,
as the generator injects them, is sent unchanged, so the streaming job's quarantine sees it. A line
whose customer id is not a valid id (``churn.schema.valid_id``) gets a hash of the line as its
partition key, as a corrupt line does (Kinesis takes keys of at most 256 characters).

    python -m churn.stream_producer --raw .lake/churn-lake/raw --stream churn-events \\
        --endpoint-url http://127.0.0.1:4567 --from 2026-07-01 --to 2026-07-01 --rate 200

PutRecords batches of at most 500 records and 5 MB; records the service rejects (throttling) are
retried with backoff, so every line is delivered once the command returns 0.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from churn.schema import valid_id

log = logging.getLogger("churn.stream_producer")
MAX_RECORDS, MAX_BYTES = 500, 5 * 1024 * 1024


def kinesis_client(endpoint_url: str | None = None, region: str = "us-east-1"):
    """boto3 Kinesis, with the default credential chain; with ``endpoint_url``, the local target's control
    plane (which takes the lake's key: its jobs get it as AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)."""
    import boto3

    extra = {"endpoint_url": endpoint_url} if endpoint_url else {}
    return boto3.client("kinesis", region_name=region, **extra)


def _event_time(line: str) -> str | None:
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return str(event.get("event_ts") or "") if isinstance(event, dict) else None


def event_lines(raw: Path, first: dt.date, last: dt.date) -> Iterator[str]:
    """The generated event lines of the days ``first``..``last``, day by day, each day in event-time
    order (a line without a readable time stays right after the line it followed in its file)."""
    day = first
    while day <= last:
        folder = raw / "events" / f"dt={day.isoformat()}"
        if not folder.is_dir():
            raise FileNotFoundError(f"no generated events for {day} at {folder}: run `python -m churn.datagen` first")
        lines = [line for path in sorted(folder.glob("*.jsonl"))
                 for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        keys, previous = [], ""
        for line in lines:
            previous = _event_time(line) or previous
            keys.append(previous)
        yield from (line for _, _, line in sorted(zip(keys, range(len(lines)), lines)))
        day += dt.timedelta(days=1)


def to_record(line: str, produced_at: dt.datetime) -> dict:
    """A PutRecords entry: JSON events get ``produced_at``; anything else goes as it is."""
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        event = None
    if isinstance(event, dict):
        event["produced_at"] = produced_at.isoformat()
        customer = event.get("customer_id")
        key = customer if valid_id(customer) else ""  # a partition key is at most 256 characters
        data = json.dumps(event, separators=(",", ":"))
    else:
        key, data = "", line
    return {"Data": data.encode("utf-8"), "PartitionKey": key or hashlib.sha1(line.encode()).hexdigest()[:16]}


def put_all(kinesis, stream: str, records: list[dict], attempts: int = 8) -> None:
    """PutRecords with retries of the entries the service rejected."""
    pending = records
    for attempt in range(attempts):
        answer = kinesis.put_records(StreamName=stream, Records=pending)
        if not answer.get("FailedRecordCount"):
            return
        pending = [r for r, result in zip(pending, answer["Records"]) if "ErrorCode" in result]
        time.sleep(min(2.0, 0.05 * 2**attempt))
    raise RuntimeError(f"{len(pending)} records still rejected by {stream} after {attempts} attempts")


def produce(kinesis, stream: str, lines: Iterator[str], rate: float, limit: int | None = None) -> int:
    """Put ``lines`` at ``rate`` records/s (0: as fast as the stream takes them); returns the count."""
    started, sent, batch, size = time.monotonic(), 0, [], 0
    for line in lines:
        if limit is not None and sent + len(batch) >= limit:
            break
        if rate > 0:
            due = started + (sent + len(batch)) / rate
            if batch and due > time.monotonic():  # the batch so far is due: send it, then wait
                put_all(kinesis, stream, batch)
                sent, batch, size = sent + len(batch), [], 0
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        record = to_record(line, dt.datetime.now(dt.timezone.utc))
        record_size = len(record["Data"]) + len(record["PartitionKey"])
        if batch and (len(batch) >= MAX_RECORDS or size + record_size > MAX_BYTES):
            put_all(kinesis, stream, batch)
            sent, batch, size = sent + len(batch), [], 0
        batch.append(record)
        size += record_size
    if batch:
        put_all(kinesis, stream, batch)
        sent += len(batch)
    return sent


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(prog="python -m churn.stream_producer", description=__doc__.split("\n")[0])
    parser.add_argument("--raw", required=True, type=Path, help="the generator's output folder (with events/)")
    parser.add_argument("--stream", required=True)
    parser.add_argument("--from", dest="first", required=True, type=dt.date.fromisoformat)
    parser.add_argument("--to", dest="last", type=dt.date.fromisoformat, help="default: --from")
    parser.add_argument("--rate", type=float, default=100.0, help="records per second; 0 = as fast as possible")
    parser.add_argument("--limit", type=int, help="stop after this many records")
    parser.add_argument("--endpoint-url", help="a Kinesis-compatible server (local target); default: AWS")
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args(argv)
    kinesis = kinesis_client(args.endpoint_url, args.region)
    started = time.monotonic()
    try:
        sent = produce(kinesis, args.stream, event_lines(args.raw, args.first, args.last or args.first), args.rate, args.limit)
    except FileNotFoundError as err:
        log.error("%s", err)
        return 2
    seconds = time.monotonic() - started
    log.info("put %d records on %s in %.1f s (%.0f records/s)", sent, args.stream, seconds, sent / max(seconds, 1e-9))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
