"""Write aside, then swap: publishing staged objects, transform manifests and outputs, Spark partitions."""

from __future__ import annotations

import json

import pytest
from pyspark.sql import functions as F

from churn import sparkio
from churn_ml import lake, transform_io

# The plugins read and write the lake through S3: moto's, in this process, over the test's lake folder.
pytestmark = pytest.mark.usefixtures("lake_s3")

PARTITION = "s3://churn-lake/predictions/dt=2026-07-02/"
STAGING = "s3://churn-lake/_staging/predictions/dt=2026-07-02/run-1/out/"


def _put(uri: str, text: str) -> None:
    lake.write_bytes(uri, text.encode())


def test_publish_replaces_each_object_then_drops_what_the_new_set_lacks(lake_root):
    _put(PARTITION + "part-00000.csv.out", "C1,0.1\n")
    _put(PARTITION + "part-00001.csv.out", "C2,0.2\n")  # not in the new set: removed after the swap
    _put(PARTITION + "_SUCCESS", "{}")
    _put(STAGING + "part-00000.csv.out", "C1,0.9\n")
    assert lake.publish({STAGING + "part-00000.csv.out": PARTITION + "part-00000.csv.out"}, PARTITION) == 1
    assert lake.list_keys(PARTITION) == [PARTITION + "_SUCCESS", PARTITION + "part-00000.csv.out"]
    assert lake.read_text(PARTITION + "part-00000.csv.out") == "C1,0.9\n"
    assert lake.list_keys(STAGING) == []  # moved, not copied: a completed job's outputs are gone once published


def test_publish_refuses_missing_staged_objects_and_leaves_the_partition(lake_root):
    _put(PARTITION + "part-00000.csv.out", "C1,0.1\n")
    with pytest.raises(FileNotFoundError, match="did not finish"):
        lake.publish({STAGING + "part-00000.csv.out": PARTITION + "part-00000.csv.out"}, PARTITION)
    with pytest.raises(ValueError, match="not under"):
        lake.publish({STAGING + "x.out": "s3://churn-lake/elsewhere/x.out"}, PARTITION)
    assert lake.read_text(PARTITION + "part-00000.csv.out") == "C1,0.1\n"


def test_the_manifest_lists_data_objects_only_and_outputs_follow_it(lake_root):
    prefix = "s3://churn-lake/scoring_input/dt=2026-07-02/"
    _put(prefix + "part-00000.c000.csv", "C1,1\n")
    _put(prefix + "_SUCCESS", "")
    manifest = "s3://churn-lake/_staging/m.manifest"
    assert transform_io.write_manifest(prefix, manifest) == [prefix + "part-00000.c000.csv"]
    assert json.loads(lake.read_text(manifest)) == [{"prefix": prefix}, "part-00000.c000.csv"]
    job = {"TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": manifest}}},
           "TransformOutput": {"S3OutputPath": STAGING}}
    assert transform_io.outputs(job) == {prefix + "part-00000.c000.csv": STAGING + "part-00000.c000.csv.out"}
    assert not transform_io.outputs_present(job)
    _put(STAGING + "part-00000.c000.csv.out", "C1,0.5\n")
    assert transform_io.outputs_present(job)
    with pytest.raises(FileNotFoundError, match="no data objects"):
        transform_io.write_manifest("s3://churn-lake/scoring_input/dt=2026-07-03/", manifest)
    _put(manifest, '{"not": "a manifest"}')
    with pytest.raises(ValueError, match="not a SageMaker manifest"):
        transform_io.read_manifest(manifest)


def test_published_predictions_say_which_job_code_version_and_inputs_scored_them(lake_root):
    prefix = "s3://churn-lake/scoring_input/dt=2026-07-02/"
    _put(prefix + "part-00000.c000.csv", "C1,1\nC2,2\n")
    manifest = "s3://churn-lake/_staging/m.manifest"
    transform_io.write_manifest(prefix, manifest)
    job = {"TransformJobName": "churn-score-20260702-abc", "TransformOutput": {"S3OutputPath": STAGING},
           "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": manifest}}}}
    _put(STAGING + "part-00000.c000.csv.out", "C1,0.5\n")
    with pytest.raises(ValueError, match="1 predictions for 2 input records"):
        transform_io.publish_predictions(job, PARTITION, run_id="r", model_package_version=3, job_identity=None)
    _put(STAGING + "part-00000.c000.csv.out", "C1,0.5\nC2,0.7\n")
    identity = {"code_version": "0123456789abcdef", "inputs": {"digest": "d1", "objects": 2, "bytes": 20}}
    published = transform_io.publish_predictions(job, PARTITION, run_id="r", model_package_version=3,
                                                 job_identity=identity)
    assert published == {"rows": 2, "objects": 1, "uri": PARTITION}
    assert json.loads(lake.read_text(PARTITION + "_SUCCESS")) == {
        "rows": 2, "objects": 1, "run_id": "r", "transform_job": "churn-score-20260702-abc", "model_package_version": 3,
        "code_version": "0123456789abcdef", "inputs_digest": "d1",
    }


def _rows(spark, root: str) -> list[tuple]:
    return sorted((r["customer_id"], r["dt"]) for r in spark.read.parquet(root).collect())


def test_replace_partitions_stages_then_swaps_with_stable_names(spark, tmp_path):
    root = f"file://{tmp_path}/features"
    first = spark.createDataFrame([("A", "2026-07-01"), ("B", "2026-07-02")], ["customer_id", "dt"])
    sparkio.replace_partitions(spark, first, root, ["2026-07-01", "2026-07-02"], "parquet")
    names = sorted(p.name for p in (tmp_path / "features/dt=2026-07-01").iterdir() if not p.name.startswith("."))
    assert names == ["_SUCCESS", "part-00000.c000.snappy.parquet"]
    # A rerun of 2026-07-02 only, whose output for that day is empty: an empty, complete partition.
    second = spark.createDataFrame([("C", "2026-07-01")], ["customer_id", "dt"])
    sparkio.replace_partitions(spark, second, root, ["2026-07-01", "2026-07-02"], "parquet")
    assert _rows(spark, root) == [("C", "2026-07-01")]
    assert (tmp_path / "features/dt=2026-07-02/_SUCCESS").exists()
    assert not (tmp_path / "features/_staging").exists() or not any((tmp_path / "features/_staging").iterdir())


def test_the_object_store_swap_copies_each_object_then_writes_the_marker(spark, tmp_path):
    root = f"file://{tmp_path}/scoring"
    first = spark.createDataFrame([("A", "2026-07-01"), ("B", "2026-07-01")], ["customer_id", "dt"]).coalesce(1)
    sparkio.replace_partitions(spark, first, root, ["2026-07-01"], "parquet", object_store=True)
    (tmp_path / "scoring/dt=2026-07-01/part-00009.c000.snappy.parquet").write_bytes(b"an object of an earlier run")
    second = spark.createDataFrame([("C", "2026-07-01")], ["customer_id", "dt"]).coalesce(1)
    sparkio.replace_partitions(spark, second, root, ["2026-07-01", "2026-07-02"], "parquet", object_store=True)
    assert _rows(spark, root) == [("C", "2026-07-01")]
    names = sorted(p.name for p in (tmp_path / "scoring/dt=2026-07-01").iterdir() if not p.name.startswith("."))
    assert names == ["_SUCCESS", "part-00000.c000.snappy.parquet"]
    assert (tmp_path / "scoring/dt=2026-07-02/_SUCCESS").exists()


def test_a_failing_write_leaves_the_published_partitions(spark, tmp_path):
    root = f"file://{tmp_path}/features"
    good = spark.createDataFrame([("A", "2026-07-01")], ["customer_id", "dt"])
    sparkio.replace_partitions(spark, good, root, ["2026-07-01"], "parquet")
    bad = good.withColumn("customer_id", F.raise_error(F.lit("boom")).cast("string"))
    with pytest.raises(Exception, match="boom"):
        sparkio.replace_partitions(spark, bad, root, ["2026-07-01"], "parquet")
    assert _rows(spark, root) == [("A", "2026-07-01")]
    assert (tmp_path / "features/dt=2026-07-01/_SUCCESS").exists()
