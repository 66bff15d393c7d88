"""The template's table schemas are what the code writes: the features job run on a small generated lake (local
Spark), the streaming job's prediction files, the batch transform's output columns. Each Parquet file's schema,
read with pyarrow, equals the table's columns (names, order and types); the scoring input CSV has no header and
its columns in the table's order; the features job's run summary lists every partition it wrote."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churn import datagen, features
from churn_ml import catalog
from churn_ml.dag_support import TABLES
from local_aws.template import load

START = dt.date(2026, 1, 1)
DAYS = 34
DS = START + dt.timedelta(days=DAYS)  # the snapshot after the last landed day
HISTORY_DAYS = 2


def columns(table: str) -> list[tuple[str, str]]:
    found = [r["Properties"]["TableInput"] for r in load()["Resources"].values()
             if r["Type"] == "AWS::Glue::Table" and r["Properties"]["TableInput"]["Name"] == table]
    assert len(found) == 1, table
    return [(c["Name"], c["Type"]) for c in found[0]["StorageDescriptor"]["Columns"]]


def glue_type(arrow: pa.DataType) -> str:
    """The Hive/Glue type Athena reads a Parquet column of this Arrow type as."""
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return "string"
    if pa.types.is_timestamp(arrow):
        return "timestamp"
    simple = {pa.date32(): "date", pa.float64(): "double", pa.int32(): "int", pa.int64(): "bigint",
              pa.float32(): "float", pa.bool_(): "boolean"}
    if arrow in simple:
        return simple[arrow]
    raise AssertionError(f"no Glue type for {arrow}: say in this test what Athena reads it as")


def parquet_columns(path: Path | io.BytesIO) -> list[tuple[str, str]]:
    return [(field.name, glue_type(field.type)) for field in pq.read_schema(path)]


@pytest.fixture(scope="module")
def features_run(spark, tmp_path_factory):
    from jobs import churn_features

    lake = tmp_path_factory.mktemp("catalog-schemas") / "lake"
    datagen.generate(datagen.GeneratorConfig(out=lake / "raw", customers=40, start=START, days=DAYS, seed=5))
    summary = churn_features.run(spark, churn_features.parse_args(
        ["--ds", DS.isoformat(), "--lake", f"file://{lake}", "--history-days", str(HISTORY_DAYS)]))
    return lake, summary


@pytest.mark.parametrize("table", ["clean_customers", "clean_events", "features", "labels"])
def test_the_spark_tables_parquet_schema_is_the_templates(features_run, table):
    lake, _ = features_run
    files = sorted((lake / TABLES[table]).glob("dt=*/part-*.parquet"))
    assert files, f"the features job wrote no {table} files"
    for path in files:
        assert parquet_columns(path) == columns(table), path


def test_the_run_summary_lists_every_partition_the_job_wrote(features_run):
    lake, summary = features_run
    written = {(table, folder.name[len("dt="):]) for table in ("clean_customers", "clean_events", "features",
                                                                "scoring_input", "labels")
               for folder in (lake / TABLES[table]).glob("dt=*") if (folder / "_SUCCESS").exists()}
    listed = set(catalog.features_run_partitions(summary))
    assert listed == written
    assert {d for t, d in listed if t == "features"} == {(DS - dt.timedelta(days=n)).isoformat()
                                                         for n in range(HISTORY_DAYS + 1)}


def test_the_scoring_input_is_headerless_csv_in_the_tables_column_order(features_run):
    lake, _ = features_run
    day = DS.isoformat()
    names = [name for name, _ in columns("scoring_input")]
    assert names == ["customer_id", *features.FEATURE_COLUMNS]
    rows = pd.concat([pd.read_csv(p, header=None, names=names, dtype={"customer_id": str})
                      for p in (lake / TABLES["scoring_input"] / f"dt={day}").glob("part-*.csv")])
    assert "customer_id" not in set(rows["customer_id"])  # no header row
    assert all(t == "double" for name, t in columns("scoring_input")[1:])
    feats = pd.read_parquet(lake / TABLES["features"] / f"dt={day}")
    merged = rows.merge(feats, on="customer_id", suffixes=("_csv", ""))
    assert len(merged) == len(rows) == len(feats) > 0
    for name in features.FEATURE_COLUMNS:  # the CSV's column i is the table's column i
        assert np.allclose(merged[f"{name}_csv"], merged[name], equal_nan=True), name


def test_the_predictions_are_the_transforms_customer_id_and_score():
    from churn_ml.training_requests import transform_request

    request = transform_request(model_data_url="s3://b/m.tar.gz", manifest="s3://b/x.manifest", output_path="s3://b/o/")
    processing = request["Transform"]["DataProcessing"]
    # The input's first column is customer_id (the scoring input), the output joins the score after the input
    # and keeps the first and the last column, with no header (AssembleWith Line).
    assert (processing["JoinSource"], processing["OutputFilter"]) == ("Input", "$[0,-1]")
    assert request["Transform"]["TransformOutput"]["AssembleWith"] == "Line"
    assert columns("predictions") == [(columns("scoring_input")[0][0], "string"), ("score", "double")]


def test_the_stream_predictions_files_schema_is_the_templates(tmp_path):
    from jobs.churn_stream_scoring import PREDICTION_COLUMNS, BatchProcessor

    written: dict[str, bytes] = {}
    processor = types.SimpleNamespace(args=argparse.Namespace(output=f"file://{tmp_path}"),
                                      _write=lambda uri, data, done: (written.__setitem__(uri, data), done.add(uri)))
    ts = pd.Series(pd.to_datetime(["2026-03-02T10:15:00", "2026-03-02T11:00:00"], utc=True))
    scorable = pd.DataFrame({"event_id": ["e1", "e2"], "customer_id": ["c1", "c2"], "event_ts": ts,
                             "event_type": ["usage", "support_ticket"], "produced_at": ts, "arrival_ts": ts,
                             "source_position": ["shard-0:1", "shard-0:2"], "dt": ["2026-03-02", "2026-03-02"]})
    matrix = np.arange(2 * len(features.FEATURE_COLUMNS), dtype=float).reshape(2, -1)
    BatchProcessor._write_predictions(processor, 7, scorable, np.array(["2026-03-02"] * 2, dtype="datetime64[D]"),
                                      np.array([0, 1]), matrix, np.array([0.1, 0.9]), 1.77e9, set(), set())
    assert sorted(written) == [f"file://{tmp_path}/dt=2026-03-02/hour={h}/batch_id=7/part-00000.parquet"
                               for h in ("10", "11")]
    for data in written.values():
        assert parquet_columns(io.BytesIO(data)) == columns("stream_predictions")
    assert [name for name, _ in columns("stream_predictions")] == list(PREDICTION_COLUMNS)
