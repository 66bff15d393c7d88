"""The streaming job's progress.json is replaced whole: a process polling it never reads a partial file.

The job rewrites the file every few seconds while the DAG's health check and the benchmark read it;
a write in place (truncate, then write) once gave the benchmark an empty file (JSONDecodeError).
``sparkio.write_text`` now writes local files aside and renames them over the target; object
stores get one PUT, which is atomic already.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from churn import sparkio
from churn_ml import lake, stream_job
from local_aws import lake_files

WRITES = 150
BATCHES = 200  # recent_batches per payload: about 60 KB, so a write in place is caught half-done


def _payload(seq: int) -> dict:
    """A progress.json of the job's size; ``seq`` tells the versions apart, ``recent_batches`` the length."""
    batch = {"batch_id": 0, "committed_at": "2026-06-09T00:00:00+00:00", "duration_ms": 2900, "input": 100,
             "latency_ms": {"max": 7770.0, "p50": 4810.0, "p99": 7540.0}, "phases_ms": {"read_validate": 700}}
    return {"job": "churn_streaming", "seq": seq, "state": "RUNNING", "totals": {"input": seq},
            "recent_batches": [dict(batch, batch_id=i) for i in range(BATCHES)]}


class Reader(threading.Thread):
    """Reads the file as fast as it can until told to stop; records every read that is not a whole version."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.stop, self.reads, self.problems = path, threading.Event(), 0, []

    def run(self) -> None:
        last = -1
        while not self.stop.is_set():
            try:
                text = self.path.read_text(encoding="utf-8")
            except FileNotFoundError:
                if last >= 0:  # once written, the file is replaced, never removed
                    self.problems.append("the file was missing after it had been written")
                continue
            try:
                payload = json.loads(text)
            except json.JSONDecodeError as err:
                self.problems.append(f"{len(text)} characters that are not JSON ({err})")
                continue
            self.reads += 1
            if len(payload["recent_batches"]) != BATCHES or payload["seq"] < last:
                self.problems.append(f"version {payload['seq']} after {last}, {len(payload['recent_batches'])} batches")
            last = payload["seq"]


def test_a_reader_polling_progress_never_sees_an_empty_or_partial_file(spark, tmp_path):
    """What the job does (``sparkio.write_json`` of a ``file://`` URI, as the local target passes it)
    while another thread polls the file like the health check; rewritten in place, this fails."""
    path = tmp_path / "runs" / "jr_test" / "progress.json"
    uri = f"file://{path}"
    sparkio.write_json(spark, uri, _payload(0))
    reader = Reader(path)
    reader.start()
    try:
        for seq in range(1, WRITES + 1):
            sparkio.write_json(spark, uri, _payload(seq))
    finally:
        reader.stop.set()
        reader.join(30)
    assert reader.problems == [], f"{len(reader.problems)} bad reads of {reader.reads + len(reader.problems)}, " \
                                  f"e.g. {reader.problems[:3]}"
    assert reader.reads > 0
    assert json.loads(path.read_text())["seq"] == WRITES
    assert [p.name for p in path.parent.iterdir()] == ["progress.json"], "temporary files were left behind"


def test_a_failed_write_leaves_the_previous_version_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "progress.json"
    sparkio.replace_file(path, b'{"seq": 1}')

    def no_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sparkio.os, "replace", no_rename)
    with pytest.raises(OSError, match="No space left"):
        sparkio.replace_file(path, b'{"seq": 2}')
    assert path.read_text() == '{"seq": 1}'
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"]


class _FakeObjectStore:
    """The few Hadoop FileSystem calls write_text makes, for an ``s3://`` filesystem."""

    def __init__(self) -> None:
        self.created: list[tuple[str, bool]] = []
        self.data = bytearray()
        self.closed = False

    def getUri(self):
        return type("Uri", (), {"getScheme": lambda _self: "s3"})()

    def create(self, path, overwrite):
        self.created.append((path, overwrite))
        store = self

        class Stream:
            def write(self, data):
                store.data += data

            def close(self):
                store.closed = True

        return Stream()


def test_an_object_store_gets_one_put_and_no_local_file(monkeypatch, tmp_path):
    """On S3 (Glue, EMR Serverless) a single PUT is atomic: the object is written directly, and
    nothing is written on the driver's disk."""
    store = _FakeObjectStore()
    monkeypatch.setattr(sparkio, "_fs_path", lambda spark, uri: (store, uri))
    monkeypatch.chdir(tmp_path)
    uri = "s3://churn-lake/_streaming/churn_streaming/runs/jr_1/progress.json"
    sparkio.write_json(None, uri, {"seq": 3})
    assert store.created == [(uri, True)] and store.closed
    assert json.loads(bytes(store.data)) == {"seq": 3}
    assert list(tmp_path.iterdir()) == []


def test_reading_progress_of_a_run_that_wrote_none_gives_none(lake_s3, monkeypatch):
    assert stream_job.read_progress("jr_none") is None
    uri = f"{stream_job.root()}/runs/jr_1/progress.json"
    sparkio.replace_file(lake_files.local_path(uri), json.dumps(_payload(5)).encode())
    assert stream_job.read_progress("jr_1")["seq"] == 5
    # Removed between the existence check and the read (a lake being cleaned up): still None, no error.
    monkeypatch.setattr(lake, "exists", lambda uri: True)
    assert stream_job.read_progress("jr_gone") is None
