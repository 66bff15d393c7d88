"""The streaming input on the local target: the Kinesis emulator, the producer, the Spark source."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from churn import stream_producer
from local_aws import control_plane, kinesis
from support import free_port

STREAM = "churn-events-test"


@pytest.fixture
def emulator(lake_root, monkeypatch):
    monkeypatch.setenv("CHURN_LOCAL_AWS_PORT", str(free_port()))
    url = kinesis.ensure_server()
    yield url
    control_plane.stop_server()


def _raw_events(root, day: str, events: int, corrupt: int):
    folder = root / "raw" / "events" / f"dt={day}"
    folder.mkdir(parents=True)
    lines = [json.dumps({"event_id": f"e{day}-{i}", "customer_id": f"C{i % 7}", "event_ts": f"{day}T10:00:00",
                         "event_type": "usage", "value": float(i)}) for i in range(events)]
    lines += ['{"event_id": broken'] * corrupt
    (folder / "part-00000.jsonl").write_text("\n".join(lines) + "\n")
    return root / "raw"


def _all_records(url: str) -> list[dict]:
    client = kinesis.client(url)
    records = []
    for shard in client.list_shards(StreamName=STREAM)["Shards"]:
        iterator = client.get_shard_iterator(StreamName=STREAM, ShardId=shard["ShardId"],
                                             ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        page = client.get_records(ShardIterator=iterator, Limit=10000)
        records += page["Records"]
    return records


def test_the_emulator_is_reused_and_the_stream_created_once(emulator):
    assert kinesis.ensure_server() == emulator  # running: reused, not a second server
    first = kinesis.ensure_stream(emulator, STREAM, shards=2)
    assert first["StreamStatus"] == "ACTIVE" and first["OpenShardCount"] == 2
    assert kinesis.ensure_stream(emulator, STREAM, shards=5)["OpenShardCount"] == 2  # exists: left as it is


def test_the_producer_replays_every_line_keyed_by_customer(emulator, lake_root):
    kinesis.ensure_stream(emulator, STREAM, shards=2)
    raw = _raw_events(lake_root, "2026-07-01", events=120, corrupt=3)
    lines = stream_producer.event_lines(raw, dt.date(2026, 7, 1), dt.date(2026, 7, 1))
    assert stream_producer.produce(kinesis.client(emulator), STREAM, lines, rate=0) == 123
    records = _all_records(emulator)
    assert len(records) == 123
    valid = [json.loads(r["Data"]) for r in records if r["Data"].startswith(b"{\"event_id\":\"e")]
    assert len(valid) == 120 and all("produced_at" in e for e in valid)
    assert all(r["PartitionKey"] == json.loads(r["Data"])["customer_id"] for r in records if r["Data"][:1] == b"{"
               and b"broken" not in r["Data"])
    assert sum(r["Data"] == b'{"event_id": broken' for r in records) == 3  # corrupt lines go as they are


def test_the_spark_source_reads_every_record_once_and_resumes_from_its_checkpoint(emulator, lake_root, spark):
    from churn.kinesis_source import KinesisDataSource

    kinesis.ensure_stream(emulator, STREAM, shards=2)
    client = kinesis.client(emulator)
    spark.dataSource.register(KinesisDataSource)
    seen: list[str] = []

    def run_once() -> None:
        query = (
            spark.readStream.format("churn_kinesis").option("stream", STREAM).option("endpoint_url", emulator).load()
            .writeStream.foreachBatch(lambda frame, _: seen.extend(r.data for r in frame.collect()))
            .option("checkpointLocation", str(lake_root / "checkpoint")).start()
        )
        try:
            query.processAllAvailable()
        finally:
            query.stop()

    def put(first: int, count: int) -> None:
        stream_producer.put_all(client, STREAM, [{"Data": f"r{i}".encode(), "PartitionKey": f"k{i % 5}"}
                                                 for i in range(first, first + count)])

    put(0, 40)
    run_once()
    assert sorted(seen) == sorted(f"r{i}" for i in range(40))
    put(40, 25)
    run_once()  # a new query on the same checkpoint: only what came after
    assert len(seen) == 65 and sorted(seen) == sorted(f"r{i}" for i in range(65))


def test_the_source_needs_a_stream_name():
    from churn.kinesis_source import KinesisStreamReader

    with pytest.raises(ValueError, match="option\\('stream'"):
        KinesisStreamReader({})


def test_a_record_over_the_cap_reaches_spark_only_by_its_start_and_size():
    from churn.kinesis_source import clip

    assert clip(b'{"a": 1}', 100) == '{"a": 1}' and clip(b'{"a": 1}', None) == '{"a": 1}'
    assert clip(b"x" * 5000, 1024) == "x" * 1024
    assert clip("é".encode() * 3, 3) == "é\ufffd"  # a character cut in two is replaced, not an error


def test_a_line_whose_customer_id_is_no_valid_id_is_keyed_by_its_hash():
    now = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
    good = stream_producer.to_record(json.dumps({"event_id": "e1", "customer_id": "C1"}), now)
    assert good["PartitionKey"] == "C1"
    huge = stream_producer.to_record(json.dumps({"event_id": "e1", "customer_id": "C" * 100_000}), now)
    odd = stream_producer.to_record(json.dumps({"event_id": "e1", "customer_id": "C,1\n"}), now)
    assert len(huge["PartitionKey"]) == len(odd["PartitionKey"]) == 16 and odd["PartitionKey"] != "C,1\n"
