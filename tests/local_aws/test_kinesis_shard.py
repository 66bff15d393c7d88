"""local_aws.kinesis_shard: the indexed Shard answers exactly as moto's own, op for op.

The equivalence tests run in-process, no server: the same random puts, GetRecords (random starting
points and limits, moto's odd limits included), min/max, AT_TIMESTAMP look-ups and shard
descriptions against moto's Shard and the patched one, with moto's clock replaced by one the test
moves (so the arrival times, hence MillisBehindLatest, are the same on both sides), and the same
writes to ``records`` behind the shard's back (a replaced dict, as split_shard does; keys out of
order; time going backwards). One test goes through boto3 to a control plane, which installs it.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections import OrderedDict

import pytest
from moto.kinesis import models
from test_control_plane import plane  # noqa: F401  (the module's control plane, reused)

from local_aws import control_plane, kinesis_shard

ReferenceShard = type("ReferenceShard", (models.Shard,),
                      {**kinesis_shard.original_methods(), "__module__": "tests.kinesis_shard"})
FastShard = type("FastShard", (kinesis_shard.FastShardMethods, models.Shard), {"__module__": "tests.kinesis_shard"})


class Clock:
    """moto's utcnow() in moto.kinesis.models, at a time the test sets."""

    def __init__(self) -> None:
        self.start = dt.datetime(2026, 7, 1, 12, 0, 0)
        self.seconds = 0.0

    def __call__(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=self.seconds)

    def unix(self, seconds: float) -> float:
        return models.unix_time(self.start + dt.timedelta(seconds=seconds))


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(models, "utcnow", clock)
    return clock


def state(shard) -> list[tuple]:
    return [(key, r.partition_key, r.data, r.sequence_number, r.explicit_hash_key, r.created_at)
            for key, r in shard.records.items()]


def answer(result) -> tuple:
    """get_records' answer with the records as their contents (the two shards' records are not the same objects)."""
    records, last, millis = result
    return [(r.sequence_number, r.partition_key, r.data, r.created_at) for r in records], last, millis


def call(shards, method: str, *args):
    """The same call on both shards: the same answer or the same exception."""
    outcomes = []
    for shard in shards:
        try:
            outcomes.append(("ok", getattr(shard, method)(*args)))
        except Exception as error:  # the same error on both sides is the same semantics
            outcomes.append(("error", type(error).__name__))
    (kind, reference), (fast_kind, fast) = outcomes
    if kind == "ok" and method == "get_records":
        reference, fast = answer(reference), answer(fast)
    assert (kind, reference) == (fast_kind, fast), f"{method}{args}"
    return reference


LIMITS = [None, 1, 2, 3, 7, 50, 1000, 10_000, 0, -1, True, 3.0]


def mutate(rng: random.Random, shards, clock: Clock) -> None:
    """The same write to both shards' ``records``, behind their methods' back."""
    kind = rng.choice(["replace", "replace_edited", "replace_empty", "insert_low", "pop", "move_to_end",
                       "clock_back", "clock_back"])
    if kind == "clock_back":
        clock.seconds -= rng.choice([0.001, 0.5, 3.0])
        return
    for shard in shards:
        records = shard.records
        if kind == "replace":  # split_shard's way: a new dict (here with the same records)
            shard.records = OrderedDict(records)
        elif kind == "replace_edited" and len(records) > 1:  # the same length and last record, another first one
            first = next(iter(records))
            shard.records = OrderedDict(records)
            shard.records[first] = models.Record("edited", "ZWQ=", first, None)
        elif kind == "replace_empty":
            shard.records = OrderedDict()
        elif kind == "insert_low":
            records[-5] = models.Record("low", "bG93", -5, None)
        elif kind == "pop" and records:
            records.pop(next(iter(records)))
        elif kind == "move_to_end" and records:
            records.move_to_end(next(iter(records)))


def run_random_ops(seed: int, clock: Clock, steps: int, mutations: bool) -> None:
    rng = random.Random(seed)
    shards = [ReferenceShard(0, 0, 2**128 - 1), FastShard(0, 0, 2**128 - 1)]
    for _ in range(steps):
        op = rng.random()
        if op < 0.5:
            clock.seconds += rng.choice([0.0, 0.0, 0.0004, 0.001, 0.25, 2.0])
            key = f"pk-{rng.randrange(50)}"
            call(shards, "put_record", key, f"ZGF0YS0{rng.randrange(9)}", rng.choice([None, "7"]))
        elif op < 0.8:
            top = shards[0].get_max_sequence_number()
            start = rng.choice([0, -3, top, top + 2, rng.randint(-2, top + 3), rng.randint(-2, top + 3)])
            call(shards, "get_records", str(start), rng.choice(LIMITS))
        elif op < 0.9:
            times = [r.created_at for r in shards[0].records.values()] or [clock.unix(0)]
            at = rng.choice([*rng.sample(times, min(3, len(times))), times[0] - 1, times[-1] + 1,
                             rng.choice(times) + rng.choice([-1e-4, 1e-4]), clock.unix(rng.uniform(-5, 60))])
            call(shards, "get_sequence_number_at", at)
        elif op < 0.97 or not mutations:
            call(shards, "get_min_sequence_number")
            call(shards, "get_max_sequence_number")
            call(shards, "to_json")
            shards[0].is_open = shards[1].is_open = rng.random() < 0.7
        else:
            mutate(rng, shards, clock)
        assert state(shards[0]) == state(shards[1])
    # Everything, from every starting point, in pages of every limit.
    top = shards[0].get_max_sequence_number()
    for start in range(-1, top + 2):
        for limit in (None, 1, 4, 1000):
            call(shards, "get_records", str(start), limit)


@pytest.mark.parametrize("seed", range(6))
def test_puts_and_reads_answer_as_moto(clock, seed):
    run_random_ops(seed, clock, steps=600, mutations=False)


@pytest.mark.parametrize("seed", range(6))
def test_writes_behind_the_shards_back_answer_as_moto(clock, seed):
    run_random_ops(100 + seed, clock, steps=600, mutations=True)


def test_keys_that_do_not_compare_answer_as_moto(clock):
    shards = [ReferenceShard(0, 0, 2**128 - 1), FastShard(0, 0, 2**128 - 1)]
    call(shards, "put_record", "a", "ZA==", None)
    clock.seconds += 1
    for shard in shards:
        shard.records["x"] = models.Record("b", "ZQ==", "x", None)
    for method, args in (("get_records", ("0", 10)), ("put_record", ("c", "ZQ==", None)),
                         ("get_sequence_number_at", (clock.unix(0.5),)), ("get_sequence_number_at", (clock.unix(9),)),
                         ("get_min_sequence_number", ()), ("get_max_sequence_number", ())):
        call(shards, method, *args)
    assert state(shards[0]) == state(shards[1])


def moto_loop_refused(*args):
    raise AssertionError(f"took moto's own loop for {args}")


def test_a_long_shard_pages_as_moto_without_moto_loops(clock, monkeypatch):
    monkeypatch.setattr(kinesis_shard, "_original", moto_loop_refused)  # the indexed answers only
    shards = [ReferenceShard(0, 0, 2**128 - 1), FastShard(0, 0, 2**128 - 1)]
    for i in range(5000):
        clock.seconds = i // 7 * 0.003  # several records per millisecond, as a PutRecords batch gives
        call(shards, "put_record", f"k{i}", "ZA==", None)
    for limit in (1, 999, 1000, 4999, 5000, 6000):
        last = "0"
        while True:
            records, last, millis = call(shards, "get_records", last, limit)
            if not records:
                break
    for seconds in (-1.0, 0.0, 0.0015, 0.003, 1.5, 2.139, 2.142, 100.0):
        call(shards, "get_sequence_number_at", clock.unix(seconds))


def test_streams_split_merge_and_reshard_alike(clock, monkeypatch):
    """Stream's resharding (which replaces and re-puts shards' records), once on each class."""
    monkeypatch.setattr(kinesis_shard, "_original", moto_loop_refused)
    outcomes = {}
    for name, cls in (("ReferenceShard", ReferenceShard), ("FastShard", FastShard)):
        monkeypatch.setattr(models, "Shard", cls)
        clock.seconds = 0.0
        rng = random.Random(7)
        stream = models.Stream("s", 2, None, None, "123456789012", "us-east-1")

        def put(n, stream=stream, rng=rng):
            for _ in range(n):
                clock.seconds += rng.choice([0.0, 0.001, 0.2])
                stream.put_record(f"pk-{rng.randrange(1000)}", None, "ZA==")

        put(300)
        stream.split_shard("shardId-000000000000", str(2**126))
        put(200)
        stream.merge_shards("shardId-000000000002", "shardId-000000000003")
        put(100)
        stream.update_shard_count(4)
        put(100)
        stream.update_shard_count(1)
        put(50)
        reads = {}
        for shard_id, shard in stream.shards.items():
            reads[shard_id] = [answer(shard.get_records(str(start), limit))
                               for start in (0, 3, shard.get_max_sequence_number() - 2) for limit in (None, 1, 10)]
            reads[shard_id].append([shard.get_sequence_number_at(clock.unix(s)) for s in (-1, 0.5, 10, 99)])
        outcomes[name] = ({shard_id: state(shard) for shard_id, shard in stream.shards.items()},
                          stream.to_json(), reads)
    assert len(outcomes["ReferenceShard"][0]) > 4  # the resharding happened
    assert outcomes["ReferenceShard"] == outcomes["FastShard"]


def test_concurrent_puts_lose_nothing(clock):
    """The control plane's server is threaded: puts from several threads get distinct sequence numbers."""
    shard = FastShard(0, 0, 2**128 - 1)

    def put(worker):
        for i in range(2000):
            shard.put_record(f"w{worker}-{i}", "ZA==", None)

    threads = [threading.Thread(target=put, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert list(shard.records) == list(range(1, 8001))
    records, last, _ = shard.get_records("7990", None)
    assert [r.sequence_number for r in records] == list(range(7991, 8001)) and last == 8000


@pytest.fixture
def pristine_shard(monkeypatch):
    """moto's Shard as moto ships it for the test (whatever this process did before), restored after."""
    shard = models.Shard
    for name, method in kinesis_shard.original_methods().items():
        monkeypatch.setattr(shard, name, method)
    if kinesis_shard._MARK in shard.__dict__:
        monkeypatch.delattr(shard, kinesis_shard._MARK)
    return shard


def test_install_is_idempotent_and_replaces_the_methods(pristine_shard):
    originals = kinesis_shard.original_methods()
    kinesis_shard.install()
    kinesis_shard.install()
    for name in kinesis_shard.REPLACED:
        assert pristine_shard.__dict__[name] is kinesis_shard.FAST_METHODS[name]
    assert kinesis_shard.original_methods() == originals
    stream = models.Stream("s", 1, None, None, "123456789012", "us-east-1")
    assert stream.put_record("a", None, "ZA==")[0] == "1"
    assert stream.put_record("b", None, "ZQ==")[0] == "2"
    shard = next(iter(stream.shards.values()))
    records, last, _ = shard.get_records("1", 1000)
    assert ([r.partition_key for r in records], last) == (["b"], 2)


def test_install_fails_loudly_when_moto_changed(pristine_shard, monkeypatch):
    def get_records(self, last_sequence_id, limit):  # a different moto
        return [], int(last_sequence_id), 0

    monkeypatch.setattr(pristine_shard, "get_records", get_records)
    with pytest.raises(RuntimeError, match=r"as of moto 5\.2\.5, but the installed moto \S+ differs: "
                                           r"Shard\.get_records changed"):
        kinesis_shard.install()
    assert pristine_shard.__dict__["get_records"] is get_records  # nothing half-installed
    assert pristine_shard.__dict__["put_record"] is kinesis_shard.original_methods()["put_record"]
    monkeypatch.delattr(pristine_shard, "get_sequence_number_at")
    with pytest.raises(RuntimeError, match=r"Shard\.get_sequence_number_at is missing"):
        kinesis_shard.install()


@pytest.mark.e2e
def test_the_control_planes_kinesis_takes_and_serves_records_in_order(plane):  # noqa: F811
    log = (plane["lake"] / ".control-plane" / "server.log").read_text()
    assert "Shard indexed (local_aws.kinesis_shard)" in log  # installed in the server's process
    from local_aws.kinesis import ensure_stream

    kinesis = control_plane.client("kinesis", plane["url"])
    ensure_stream(plane["url"], "shard-test", shards=2)
    sent: dict[str, list[bytes]] = {}
    for batch in range(4):
        records = [{"Data": f"{batch}-{i}".encode(), "PartitionKey": f"k{batch}-{i}"} for i in range(500)]
        put = kinesis.put_records(StreamName="shard-test", Records=records)
        assert put["FailedRecordCount"] == 0
        for record, entry in zip(records, put["Records"]):
            sent.setdefault(entry["ShardId"], []).append(record["Data"])
    assert len(sent) == 2

    def read(shard_id, **start):
        iterator = kinesis.get_shard_iterator(StreamName="shard-test", ShardId=shard_id, **start)["ShardIterator"]
        pages = []
        while True:
            page = kinesis.get_records(ShardIterator=iterator, Limit=333)
            if not page["Records"]:
                return pages, page
            pages.append(page)
            iterator = page["NextShardIterator"]

    for shard_id, data in sent.items():
        pages, last = read(shard_id, ShardIteratorType="TRIM_HORIZON")
        records = [r for page in pages for r in page["Records"]]
        assert [r["Data"] for r in records] == data
        assert [int(r["SequenceNumber"]) for r in records] == list(range(1, len(data) + 1))
        assert all(page["MillisBehindLatest"] >= 0 for page in pages) and pages[-1]["MillisBehindLatest"] == 0
        assert last["MillisBehindLatest"] == 0
        after, _ = read(shard_id, ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber="10")
        assert after[0]["Records"][0]["SequenceNumber"] == "11"
        at, _ = read(shard_id, ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber="10")
        assert at[0]["Records"][0]["SequenceNumber"] == "10"
        first = records[0]["ApproximateArrivalTimestamp"]
        since, _ = read(shard_id, ShardIteratorType="AT_TIMESTAMP", Timestamp=first - dt.timedelta(seconds=1))
        assert sum(len(page["Records"]) for page in since) == len(data)
        latest, _ = read(shard_id, ShardIteratorType="LATEST")
        assert latest == []
    shards = kinesis.describe_stream(StreamName="shard-test")["StreamDescription"]["Shards"]
    assert {s["SequenceNumberRange"]["StartingSequenceNumber"] for s in shards} == {"1"}
