"""Input fingerprints (plugins/churn_ml/inputs.py): what changes the digest, what does not, and the
jobs' input specs rendered for a date against what the jobs read and write.

S3 is moto's, in-process (``mock_aws``): once as AWS answers (ETag = MD5 of the content), once with
the control plane's lake backend installed (local_aws/lake_s3.py: the lake folder as the bucket, the ETag
the MD5 of the file), through the same ``churn_ml.lake`` S3 hook the operators use.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import boto3
import jinja2
import pytest
from airflow.sdk import macros
from moto import mock_aws

from churn_ml import inputs

BUCKET = "churn-lake"
LAKE = f"s3://{BUCKET}"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def s3(monkeypatch):
    for key, value in {"ML_TARGET": "aws", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AIRFLOW_CONN_AWS_DEFAULT": '{"conn_type": "aws"}'}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def lake_view(lake_s3):
    """moto's S3 serving the lake folder as the control plane does (tests/conftest.py's ``lake_s3``):
    the bucket's folder."""
    (lake_s3 / BUCKET).mkdir(exist_ok=True)
    return lake_s3 / BUCKET


def put(s3, key: str, body: bytes = b"x") -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)


def digest(*specs: dict) -> str:
    return inputs.fingerprint(list(specs))["digest"]


EVENTS = {"prefix": f"{LAKE}/raw/events/", "from": "2026-07-01", "before": "2026-07-02"}


def test_the_digest_follows_added_removed_and_rewritten_objects(s3):
    put(s3, "raw/events/dt=2026-07-01/part-0.jsonl", b'{"a": 1}\n')
    put(s3, "raw/events/dt=2026-07-01/_SUCCESS", b"")
    first = inputs.fingerprint([EVENTS])
    assert re.fullmatch(r"[0-9a-f]{16}", first["digest"])
    assert (first["objects"], first["bytes"]) == (2, 9)
    assert first["inputs"] == [{**{k: EVENTS[k] for k in ("prefix", "from", "before")}, "objects": 2, "bytes": 9,
                                "partitions": ["s3://churn-lake/raw/events/dt=2026-07-01"]}]
    assert digest(EVENTS) == first["digest"]  # stable

    put(s3, "raw/events/dt=2026-07-01/part-1.jsonl", b"{}\n")
    added = digest(EVENTS)
    assert added != first["digest"]
    s3.delete_object(Bucket=BUCKET, Key="raw/events/dt=2026-07-01/part-1.jsonl")
    assert digest(EVENTS) == first["digest"]  # removed again: back to the same objects
    put(s3, "raw/events/dt=2026-07-01/part-0.jsonl", b'{"a": 2}\n')  # same size, new content
    same_size = digest(EVENTS)
    assert same_size not in (first["digest"], added)
    put(s3, "raw/events/dt=2026-07-01/part-0.jsonl", b'{"a": 2, "b": 3}\n')
    assert digest(EVENTS) not in (first["digest"], added, same_size)


def test_objects_outside_the_range_or_prefix_do_not_count(s3):
    put(s3, "raw/events/dt=2026-07-01/part-0.jsonl")
    before = digest(EVENTS)
    for key in ("raw/events/dt=2026-06-30/part-0.jsonl", "raw/events/dt=2026-07-02/part-0.jsonl",
                "raw/events/_SUCCESS", "raw/events/notes.txt", "raw/eventsx/dt=2026-07-01/p",
                "raw/customers/dt=2026-07-01/part-0.jsonl", "raw/events/dt=2026-07-01x/p"):
        put(s3, key)
    assert digest(EVENTS) == before
    assert inputs.fingerprint([EVENTS])["objects"] == 1


def test_an_exact_key_is_that_object_only_and_an_empty_input_is_a_fingerprint(s3):
    baseline = {"prefix": f"{LAKE}/registry/v3/baseline.json"}
    empty = inputs.fingerprint([baseline])
    assert (empty["objects"], empty["bytes"]) == (0, 0)
    put(s3, "registry/v3/baseline.json", b"{}")
    found = inputs.fingerprint([baseline])
    assert found["objects"] == 1 and found["digest"] != empty["digest"]
    put(s3, "registry/v3/baseline.json.tmp", b"{}")
    put(s3, "registry/v3/baseline.jsonl", b"{}")
    assert digest(baseline) == found["digest"]
    assert inputs.fingerprint([])["objects"] == 0


def test_the_digest_does_not_depend_on_the_listing_order(s3, monkeypatch):
    for day in ("2026-06-28", "2026-06-29", "2026-06-30"):
        put(s3, f"clean/events/dt={day}/part-0.parquet", day.encode())
    spec = {"prefix": f"{LAKE}/clean/events/", "before": "2026-07-01"}
    listed = digest(spec)
    real = inputs._objects
    monkeypatch.setattr(inputs, "_objects", lambda client, s: list(reversed(list(real(client, s)))))
    assert digest(spec) == listed


def test_a_listing_of_more_than_a_page_is_followed(s3, monkeypatch):
    """Pages of 50 (moto's page size when the request names none; S3's is 1000: the lake view's test
    below lists more than 1000 files), with a range's StartAfter and stop."""
    monkeypatch.setenv("MOTO_S3_DEFAULT_MAX_KEYS", "50")
    for i in range(155):
        put(s3, f"features/dt=2026-07-{1 + i % 3:02d}/part-{i:05d}.parquet")
    whole = inputs.fingerprint([{"prefix": f"{LAKE}/features/"}])
    assert whole["objects"] == 155
    ranged = inputs.fingerprint([{"prefix": f"{LAKE}/features/", "from": "2026-07-02", "before": "2026-07-03"}])
    assert ranged["objects"] == 52
    put(s3, "features/dt=2026-07-02/part-99999.parquet")  # on the listing's last page
    assert digest({"prefix": f"{LAKE}/features/"}) != whole["digest"]
    assert inputs.fingerprint([{"prefix": f"{LAKE}/features/", "from": "2026-07-02", "before": "2026-07-03"}])[
        "objects"] == 53


def test_every_keeps_the_snapshots_spaced_back_from_before(s3):
    for day in range(1, 21):
        put(s3, f"labels/dt=2026-07-{day:02d}/part-0.parquet")
    spec = {"prefix": f"{LAKE}/labels/", "from": "2026-07-03", "before": "2026-07-20", "every": "7"}
    assert [uri.split("/")[-2] for uri, _, _ in inputs.objects(spec)] == ["dt=2026-07-05", "dt=2026-07-12",
                                                                         "dt=2026-07-19"]
    before = digest(spec)
    put(s3, "labels/dt=2026-07-18/part-0.parquet", b"new")  # a day the job does not pick
    assert digest(spec) == before
    put(s3, "labels/dt=2026-07-12/part-0.parquet", b"new")
    assert digest(spec) != before


def test_a_star_segment_is_any_one_segment(s3):
    put(s3, "monitoring/capture/churn-xgboost/blue/2026/07/02/13/00-00-000-a.jsonl")
    put(s3, "monitoring/capture/churn-xgboost/green/2026/07/02/23/00-00-000-b.jsonl")
    put(s3, "monitoring/capture/churn-xgboost/blue/2026/07/03/00/00-00-000-c.jsonl")
    put(s3, "monitoring/capture/other/blue/2026/07/02/01/00-00-000-d.jsonl")
    spec = {"prefix": f"{LAKE}/monitoring/capture/*/*/2026/07/02/"}
    assert [uri.rsplit("/", 1)[-1][-7:] for uri, _, _ in inputs.objects(spec)] == ["a.jsonl", "b.jsonl", "d.jsonl"]


@pytest.mark.parametrize("spec, message", [
    ({"prefix": ""}, "must be an s3://bucket/key URI"),
    ({"prefix": "None"}, "must be an s3://bucket/key URI"),
    ({"prefix": f"{LAKE}/raw/events/", "from": "2026-7-1"}, "'from' must be a date YYYY-MM-DD"),
    ({"prefix": f"{LAKE}/raw/events/", "from": "2026-07-02", "before": "2026-07-01"}, "is after 'before'"),
    ({"prefix": f"{LAKE}/raw/events", "before": "2026-07-01"}, "ends with '/'"),
    ({"prefix": f"{LAKE}/raw/events/", "every": "7"}, "lacks"),
    ({"prefix": f"{LAKE}/raw/events/", "before": "2026-07-01", "every": "0"}, "'every' must be a whole number"),
    ({"prefix": f"{LAKE}/raw/events/", "until": "2026-07-01"}, "unknown keys ['until']"),
])
def test_a_spec_that_cannot_be_listed_says_why_and_is_not_retried(spec, message):
    from churn_ml.errors import CannotSucceedOnRetry

    with pytest.raises(CannotSucceedOnRetry, match=re.escape(message)):
        inputs.InputSpec.parse(spec)


def test_on_the_lake_view_a_rewritten_file_is_a_changed_input_and_pages_are_followed(lake_view, monkeypatch):
    """The local target: the control plane's S3 over the lake folder, the same code path."""
    monkeypatch.setenv("ML_TARGET", "local")
    partition = lake_view / "raw" / "events" / "dt=2026-07-01"
    partition.mkdir(parents=True)
    data = partition / "part-0.jsonl"
    data.write_bytes(b'{"a": 1}\n')
    (partition / "_SUCCESS").write_bytes(b"")
    first = inputs.fingerprint([EVENTS])
    assert first["objects"] == 2
    assert digest(EVENTS) == first["digest"]
    stat = data.stat()
    data.write_bytes(b'{"a": 1}\n')  # rewritten identically, later: S3's ETag (the content's MD5) is the same
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert digest(EVENTS) == first["digest"]
    data.write_bytes(b'{"a": 2}\n')  # same size, other bytes, the modification time set back: still a change
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert digest(EVENTS) != first["digest"]
    later = lake_view / "raw" / "events" / "dt=2026-07-02"
    later.mkdir()
    (later / "part-0.jsonl").write_bytes(b"{}\n")
    changed = digest(EVENTS)
    assert digest(EVENTS) == changed  # another day's partition is not this input
    many = lake_view / "features" / "dt=2026-07-01"
    many.mkdir(parents=True)
    for i in range(1050):
        (many / f"part-{i:05d}.parquet").write_bytes(b"p")
    started = time.perf_counter()
    assert inputs.fingerprint([{"prefix": f"{LAKE}/features/"}])["objects"] == 1050
    assert time.perf_counter() - started < 30


# ------------------------------------------------------------------ the jobs' specs for a date
def render(specs: list[dict], ds: str, **params) -> list[dict]:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    context = {"ds": ds, "macros": macros, "params": params,
               "ti": type("TI", (), {"xcom_pull": staticmethod(lambda task_ids: {})})()}
    return [{k: env.from_string(v).render(context) for k, v in spec.items()} for spec in specs]


def read_by(specs: list[dict], key: str) -> bool:
    """Whether a spec keeps the object ``key`` (the listing's own filters: range, every, exact key)."""
    for spec in specs:
        parsed = inputs.InputSpec.parse(spec)
        bucket, prefix = inputs._split(parsed.prefix)
        if "*" in prefix:
            pattern = re.escape(prefix).replace(r"\*", "[^/]+")
            if re.match(pattern, key):
                return True
        elif key.startswith(prefix.rsplit("/", 1)[0]) and parsed.keeps(key):
            return True
    return False


def test_the_features_job_reads_the_new_raw_day_and_the_clean_days_before_it():
    specs = render(inputs.features_job_inputs(LAKE), "2026-07-02", history_days=0)
    for entity in ("customers", "events"):
        assert read_by(specs, f"raw/{entity}/dt=2026-07-01/part-0.jsonl")
        assert read_by(specs, f"raw/{entity}/dt=2026-07-01/_SUCCESS")
        assert not read_by(specs, f"raw/{entity}/dt=2026-06-30/part-0.jsonl")  # cleaned by an earlier run
        assert not read_by(specs, f"raw/{entity}/dt=2026-07-02/part-0.jsonl")  # the snapshot's own day
        assert not read_by(specs, f"clean/{entity}/dt=2026-07-01/part-0.parquet")  # written by this run
        assert read_by(specs, f"clean/{entity}/dt=2026-06-30/part-0.parquet")
        assert read_by(specs, f"clean/{entity}/dt=2025-01-01/part-0.parquet")  # customers, cancellations
    for written in ("features/dt=2026-07-02/p", "scoring_input/dt=2026-07-02/p", "labels/dt=2026-06-02/p",
                    "errors/events/dt=2026-07-01/p", "_runs/churn_features/ds=2026-07-02/summary.json"):
        assert not read_by(specs, written)


def test_the_features_job_with_history_reads_raw_history_and_only_the_clean_events_before_the_window():
    specs = render(inputs.features_job_inputs(LAKE), "2026-07-02", history_days=10)
    window = "2026-03-24"  # 2026-07-02 - 10 - 90 days
    assert read_by(specs, "raw/customers/dt=2025-01-01/p") and read_by(specs, "raw/customers/dt=2026-07-01/p")
    assert read_by(specs, f"raw/events/dt={window}/p") and not read_by(specs, "raw/events/dt=2026-03-23/p")
    assert read_by(specs, "clean/events/dt=2026-03-23/p")  # cancellations before the window
    assert not read_by(specs, f"clean/events/dt={window}/p")  # re-cleaned by this run
    assert not read_by(specs, "clean/customers/dt=2025-01-01/p")  # every customers partition re-cleaned


def test_the_training_set_job_reads_the_picked_snapshots_of_features_and_labels():
    specs = render(inputs.training_set_job_inputs(LAKE), "2026-07-06", lookback_days=60, snapshot_every=7)
    # newest closed snapshot 2026-06-06, then every 7 days back to 2026-05-07 (ds - 60)
    for name in ("features", "labels"):
        for day in ("2026-06-06", "2026-05-30", "2026-05-09"):
            assert read_by(specs, f"{name}/dt={day}/part-0.parquet"), (name, day)
        for day in ("2026-06-07", "2026-06-05", "2026-05-02", "2026-07-05"):
            assert not read_by(specs, f"{name}/dt={day}/part-0.parquet"), (name, day)
    assert not read_by(specs, "training_sets/ds=2026-07-06/train/part-0.csv")


def test_the_monitoring_job_reads_the_day_the_closed_window_and_the_baseline():
    baseline = f"{LAKE}/registry/churn/v4/baseline.json"
    specs = render(inputs.monitoring_job_inputs(LAKE, baseline), "2026-07-02")
    for key in ("registry/churn/v4/baseline.json", "predictions/dt=2026-07-02/_SUCCESS",
                "predictions/dt=2026-07-02/part-0.csv.out", "features/dt=2026-07-02/part-0.parquet",
                "monitoring/capture/churn-xgboost/blue/2026/07/02/23/x.jsonl",
                "stream_predictions/dt=2026-07-02/part-0.parquet", "predictions/dt=2026-06-02/_SUCCESS",
                "labels/dt=2026-06-02/part-0.parquet"):
        assert read_by(specs, key), key
    for key in ("registry/churn/v3/baseline.json", "predictions/dt=2026-07-01/_SUCCESS",
                "monitoring/capture/churn-xgboost/blue/2026/07/03/00/x.jsonl", "labels/dt=2026-06-03/p",
                "monitoring/daily/dt=2026-07-02/summary.json"):
        assert not read_by(specs, key), key


def test_the_transform_reads_its_scoring_input_partition():
    specs = render(inputs.scoring_inputs(f"{LAKE}/scoring_input/dt={{{{ ds }}}}/"), "2026-07-02")
    assert read_by(specs, "scoring_input/dt=2026-07-02/part-0.csv")
    assert not read_by(specs, "scoring_input/dt=2026-07-01/part-0.csv")


def test_a_clear_with_nothing_changed_sees_the_same_inputs_after_the_job_rewrote_its_outputs(s3):
    """churn_features at 2026-07-02: its own outputs rewritten (as a rerun does) leave the digest alone;
    a corrected raw re-delivery changes it."""
    for entity in ("customers", "events"):
        for day in ("2026-06-29", "2026-06-30", "2026-07-01"):
            put(s3, f"raw/{entity}/dt={day}/part-0.jsonl", b"raw")
            put(s3, f"clean/{entity}/dt={day}/part-0.parquet", b"clean")
    specs = render(inputs.features_job_inputs(LAKE), "2026-07-02", history_days=0)
    first = inputs.fingerprint(specs)
    assert [s["objects"] for s in first["inputs"]] == [1, 1, 2, 2]
    for entity in ("customers", "events"):
        put(s3, f"clean/{entity}/dt=2026-07-01/part-0.parquet", b"clean, rewritten by the rerun")
    put(s3, "features/dt=2026-07-02/part-0.parquet", b"f")
    assert inputs.fingerprint(specs)["digest"] == first["digest"]
    put(s3, "raw/events/dt=2026-07-01/part-0.jsonl", b"raw + one record")
    assert inputs.fingerprint(specs)["digest"] != first["digest"]


def test_the_job_constants_are_the_jobs_own():
    from churn import features, schema

    assert (inputs.LOOKBACK_DAYS, inputs.LABEL_WINDOW_DAYS) == (features.LOOKBACK_DAYS, features.LABEL_WINDOW_DAYS)
    assert inputs.ENTITIES == schema.ENTITIES
