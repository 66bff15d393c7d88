"""moto's Kinesis shard without its O(N) per put and per read: the control plane's Kinesis at benchmark rates.

moto (5.2.5) keeps a shard's records in ``Shard.records``, an OrderedDict of sequence number -> Record,
and walks it from the start for almost everything: ``put_record`` asks ``get_max_sequence_number()``,
which is ``list(self.records.keys())[-1]`` (a copy of every key, per record put), and ``get_records``
iterates every record of the shard from the first on every GetRecords, even to return the newest
1000. Filling a stream is therefore quadratic, and so is reading it: the streaming job's benchmark
(5,000-20,000 records/s, streams of ~200,000 records on 2 shards) could not run against it.

Measured against the control plane (``python -m local_aws.control_plane serve``, one boto3 client in
another process, 200,000 records of ~100 bytes on 2 shards: PutRecords of 500, then GetRecords of
1000 from TRIM_HORIZON per shard to the end; this 2-core machine at a load average of ~5.5 from
other work during both runs, so the absolute figures are low and noisy):

    moto's Shard:  PutRecords    305 records/s overall: 5,323/s for the first 20,000 records,
                                 1,364/s at 40-60k, 103/s for the last 20,000 (655 s in all)
                   GetRecords  6,484 records/s
    this module:   PutRecords  8,576 records/s overall, flat: 6,400-10,300/s per 20,000 from the
                                 first to the last (23 s in all)
                   GetRecords  7,160 records/s

In-process, one shard of 100,000 records (no HTTP): a put 3.4 ms -> 10 us; a GetRecords of the
newest 1000 9.5 ms -> 0.01 ms; a caught-up GetRecords (nothing new) 8.7 ms -> <0.01 ms. What bounds
GetRecords now is not the shard but moto's generic response serializer (moto.core.serialize: ~95% of
the server's time for a GetRecords of 1000, profiled) and botocore's parsing of the answer.

``install()`` replaces, on moto's own ``Shard`` class, the methods that read ``records`` in order
(put_record, get_records, get_min/max_sequence_number, get_sequence_number_at) by ones that
give the same answers from an index kept next to it: the keys, records and arrival times in
insertion order (lists), so that the first key after an iterator's is a bisect, a GetRecords a
slice, the newest key the list's last. ``records`` stays moto's OrderedDict, filled exactly as
before: the rest of moto (to_json, split_shard, merge_shards, the dashboard) reads it unchanged.

Exactly moto's semantics, including its odd corners: "max" sequence number is the last inserted key;
MillisBehindLatest is ``int((newest.created_at - last returned.created_at) * 1000)``; a Limit of 0,
a negative one or one that is not an int takes moto's own loop (whose answers for those are not a
slice), and so does a shard whose keys are not ascending (only if something else writes ``records``:
moto's put_record appends last key + 1) for everything, or whose arrival times go backwards (the
wall clock stepped back) for AT_TIMESTAMP. The
index is rebuilt whenever ``records`` is not the dict it was built from (split_shard replaces it),
or its length or last entry differ: O(N) once, then O(1) per put and O(log N + limit) per read.
Puts and reads of the index hold one lock, so the control plane's threaded server cannot interleave
them (moto's own put_record is documented as not safe for concurrency).

A moto upgrade must not keep a stale patch silently: ``install()`` fingerprints the source of every
method it replaces (and ``Shard.__init__``, which makes ``records``) and raises, naming moto's
version, if any differs from moto 5.2.5's. Re-check the new code against this module's, then update
``FINGERPRINTS``. ``install()`` is idempotent; the control plane calls it before its server serves.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import threading
from bisect import bisect_left, bisect_right
from typing import Any

log = logging.getLogger(__name__)

MOTO_VERSION = "5.2.5"
# sha256 (first 16 hex digits) of inspect.getsource() of each method of moto.kinesis.models.Shard this
# module relies on, as of moto MOTO_VERSION.
FINGERPRINTS = {
    "__init__": "ed0cc26823a9cd92",
    "get_records": "1188a73a6b3db1f9",
    "put_record": "e2d15174261bc63e",
    "get_min_sequence_number": "acae970512147e4e",
    "get_max_sequence_number": "eff48df162f5a63d",
    "get_sequence_number_at": "d40f468a2c48d30d",
}
_MARK = "_churn_fast_shard_originals"  # on moto's Shard once installed: its original methods
_INDEX = "_churn_fast_shard_index"  # on each shard (a leading "_": moto's dashboard skips it)
_LOCK = threading.RLock()


class _Index:
    """``records``' keys, records and arrival times in insertion order, and whether they ascend."""

    __slots__ = ("ascending", "keys", "records", "times", "times_ascending", "values")

    def __init__(self, records: dict) -> None:
        self.records = records
        self.keys = list(records.keys())
        self.values = list(records.values())
        self.times = [record.created_at for record in self.values]
        self.ascending = _ascending(self.keys, strictly=True)
        self.times_ascending = _ascending(self.times, strictly=False)

    def current(self, records: dict) -> bool:
        if self.records is not records or len(self.keys) != len(records):
            return False
        if not records:
            return True
        last = next(reversed(records))
        return last == self.keys[-1] and records[last] is self.values[-1]


def _ascending(items: list, strictly: bool) -> bool:
    try:
        if strictly:
            return all(a < b for a, b in zip(items, items[1:]))
        return all(a <= b for a, b in zip(items, items[1:]))
    except TypeError:  # keys that do not compare (not moto's): moto's own loops, which may not compare them
        return False


def _index(shard: Any) -> _Index:
    index = shard.__dict__.get(_INDEX)
    if index is None or not index.current(shard.records):
        index = _Index(shard.records)
        setattr(shard, _INDEX, index)
    return index


def _original(name: str):
    from moto.kinesis.models import Shard

    return Shard.__dict__.get(_MARK, Shard.__dict__)[name]


class FastShardMethods:
    """The replacements, as methods of a class of their own (tests mix it into moto's Shard)."""

    records: dict

    def put_record(self, partition_key: str, data: str, explicit_hash_key: str) -> str:
        from moto.kinesis.models import Record

        with _LOCK:
            index = _index(self)
            if not index.ascending:
                setattr(self, _INDEX, None)
                return _original("put_record")(self, partition_key, data, explicit_hash_key)
            sequence_number = (index.keys[-1] if index.keys else 0) + 1
            record = Record(partition_key, data, sequence_number, explicit_hash_key)
            self.records[sequence_number] = record
            if index.times and record.created_at < index.times[-1]:
                index.times_ascending = False
            index.keys.append(sequence_number)
            index.values.append(record)
            index.times.append(record.created_at)
            return str(sequence_number)

    def get_records(self, last_sequence_id: str, limit: int | None) -> tuple[list, int, int]:
        last_sequence_int = int(last_sequence_id)
        with _LOCK:
            index = _index(self)
            if not index.ascending or not (limit is None or (isinstance(limit, int) and limit > 0)):
                return _original("get_records")(self, last_sequence_id, limit)
            start = bisect_right(index.keys, last_sequence_int)
            stop = len(index.keys) if limit is None else min(len(index.keys), start + limit)
            results = index.values[start:stop]
            if not results:
                return results, last_sequence_int, 0
            secs_behind_latest = index.values[-1].created_at - results[-1].created_at
            return results, index.keys[stop - 1], int(secs_behind_latest * 1000)

    def get_min_sequence_number(self) -> int:
        records = self.records
        return next(iter(records)) if records else 0

    def get_max_sequence_number(self) -> int:
        records = self.records
        return next(reversed(records)) if records else 0

    def get_sequence_number_at(self, at_timestamp: float) -> int:
        with _LOCK:
            index = _index(self)
            if not index.times_ascending:
                return _original("get_sequence_number_at")(self, at_timestamp)
            if not index.values or at_timestamp <= index.times[0]:
                return 0
            # The last record that arrived before at_timestamp (there is one: the first did, unless
            # at_timestamp compares oddly, e.g. NaN: then moto's loop, and its answer).
            position = bisect_left(index.times, at_timestamp) - 1
            if position < 0 or not index.times[position] < at_timestamp:
                return _original("get_sequence_number_at")(self, at_timestamp)
            return index.values[position].sequence_number


REPLACED = ("put_record", "get_records", "get_min_sequence_number", "get_max_sequence_number",
            "get_sequence_number_at")
FAST_METHODS = {name: FastShardMethods.__dict__[name] for name in REPLACED}


def fingerprint(function: Any) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]


def _moto_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("moto")
    except PackageNotFoundError:
        return "unknown"


def check(shard_class: Any) -> None:
    """Raise if ``shard_class`` (moto's Shard, unpatched) is not the one this module was written for."""
    problems = []
    for name, expected in FINGERPRINTS.items():
        function = shard_class.__dict__.get(name)
        if not inspect.isfunction(function):
            problems.append(f"Shard.{name} is missing (or not a plain function)")
            continue
        try:
            found = fingerprint(function)
        except (OSError, TypeError) as error:
            problems.append(f"the source of Shard.{name} cannot be read ({error})")
            continue
        if found != expected:
            problems.append(f"Shard.{name} changed (fingerprint {found}, expected {expected})")
    if problems:
        raise RuntimeError(
            f"local_aws.kinesis_shard replaces methods of moto.kinesis.models.Shard as of moto {MOTO_VERSION}, "
            f"but the installed moto {_moto_version()} differs: {'; '.join(problems)}. Compare moto's new Shard "
            "with local_aws/kinesis_shard.py, then update or drop the patch and its FINGERPRINTS."
        )


def original_methods() -> dict[str, Any]:
    """moto's own methods that ``install()`` replaces (installed or not)."""
    return {name: _original(name) for name in REPLACED}


def install() -> None:
    """Replace the methods of moto's kinesis Shard by FAST_METHODS (once: idempotent)."""
    from moto.kinesis.models import Shard

    with _LOCK:
        if _MARK in Shard.__dict__:
            if all(Shard.__dict__[name] is FAST_METHODS[name] for name in REPLACED):
                return
            raise RuntimeError("moto.kinesis.models.Shard was patched by local_aws.kinesis_shard, then changed again")
        check(Shard)
        originals = {name: Shard.__dict__[name] for name in REPLACED}
        for name in REPLACED:
            setattr(Shard, name, FAST_METHODS[name])
        setattr(Shard, _MARK, originals)
    log.info("kinesis: moto %s's Shard indexed (local_aws.kinesis_shard)", _moto_version())
