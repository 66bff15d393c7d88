"""churn_ml.catalog against moto's Glue (mock_aws, in process) over the test's lake (the ``lake_s3`` fixture), with
the template's database and tables as the local target creates them (local_aws.template.glue_catalog)."""

from __future__ import annotations

import boto3
import pytest
from airflow.sdk.exceptions import AirflowFailException
from botocore.exceptions import ClientError

from churn_ml import catalog, lake
from churn_ml.settings import settings
from local_aws import spark_api
from local_aws.template import glue_catalog


@pytest.fixture
def glue(lake_s3):
    client = boto3.client("glue", region_name="us-east-1")
    databases, tables = glue_catalog(spark_api.glue_refs(""))
    for database in databases:
        client.create_database(DatabaseInput=database)
    for database_name, table_input in tables:
        client.create_table(DatabaseName=database_name, TableInput=table_input)
    return client


def _partitions(glue, table: str) -> dict[str, dict]:
    found = glue.get_partitions(DatabaseName=settings.glue_database, TableName=table)["Partitions"]
    return {p["Values"][0]: p for p in found}


def _swap_in(table: str, day: str, marker: bool = True) -> str:
    where = catalog.location(table, day)
    lake.write_bytes(f"{where}part-00000.snappy.parquet", b"PAR1")
    if marker:
        lake.write_bytes(f"{where}_SUCCESS", b"")
    return where


def test_a_registered_partition_is_the_tables_storage_at_its_location(glue):
    where = _swap_in("features", "2026-03-02")
    assert where == f"s3://{settings.lake_bucket}/features/dt=2026-03-02/"
    assert catalog.register_partition("features", "2026-03-02")["action"] == "created"
    table = glue.get_table(DatabaseName=settings.glue_database, Name="features")["Table"]["StorageDescriptor"]
    partition = _partitions(glue, "features")["2026-03-02"]["StorageDescriptor"]
    assert partition == {**table, "Location": where}
    assert partition["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")


def test_registering_a_reprocessed_date_again_keeps_one_partition_with_the_right_location(glue):
    stale = {"Values": ["2026-03-02"], "StorageDescriptor": {"Location": "s3://elsewhere/predictions/old/"}}
    glue.create_partition(DatabaseName=settings.glue_database, TableName="predictions", PartitionInput=stale)
    where = _swap_in("predictions", "2026-03-02")
    assert catalog.register_partition("predictions", "2026-03-02")["action"] == "updated"
    assert catalog.register_partition("predictions", "2026-03-02")["action"] == "updated"
    found = _partitions(glue, "predictions")
    assert list(found) == ["2026-03-02"]
    assert found["2026-03-02"]["StorageDescriptor"]["Location"] == where
    assert found["2026-03-02"]["StorageDescriptor"]["SerdeInfo"]["Parameters"]["field.delim"] == ","


def test_a_partition_without_its_marker_or_without_data_is_never_registered(glue):
    _swap_in("labels", "2026-02-01", marker=False)
    with pytest.raises(AirflowFailException, match=r"labels/dt=2026-02-01/: it has no _SUCCESS marker"):
        catalog.register_partition("labels", "2026-02-01")
    lake.write_bytes(f"{catalog.location('monitoring_daily', '2026-02-01')}_SUCCESS", b"")  # a marker is not data
    with pytest.raises(AirflowFailException, match="holds no data objects"):
        catalog.register_partition("monitoring_daily", "2026-02-01")
    assert not _partitions(glue, "labels") and not _partitions(glue, "monitoring_daily")
    lake.write_bytes(f"{catalog.location('monitoring_daily', '2026-02-01')}summary.json", b"{}\n")
    assert catalog.register_partition("monitoring_daily", "2026-02-01")["action"] == "created"


@pytest.mark.parametrize(("table", "day", "expected"), [
    ("customers", "2026-01-01", r"'customers' is not a table of the lake; expected one of clean_customers, "),
    ("features", "2026-1-01", r"dt must be a date YYYY-MM-DD, got '2026-1-01'"),
    ("features", "2026-02-30", r"dt must be a date YYYY-MM-DD, got '2026-02-30'"),
])
def test_bad_input_fails_at_once_saying_what_was_expected(glue, table, day, expected):
    with pytest.raises(AirflowFailException, match=expected):
        catalog.register_partition(table, day)


def test_a_table_the_catalog_lacks_fails_without_retries(glue):
    glue.delete_table(DatabaseName=settings.glue_database, Name="clean_events")
    _swap_in("clean_events", "2026-01-05")
    with pytest.raises(AirflowFailException, match="AWS rejected the request.*EntityNotFound"):
        catalog.register_partition("clean_events", "2026-01-05")


def test_a_transient_error_propagates_for_a_retry(glue, monkeypatch):
    _swap_in("features", "2026-03-02")

    class Throttled:
        def get_table(self, **_):
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "GetTable")

    monkeypatch.setattr(catalog, "_client", Throttled)
    with pytest.raises(ClientError, match="ThrottlingException"):
        catalog.register_partition("features", "2026-03-02")


def test_the_streams_partitions_follow_the_lake(glue):
    for day in ("2026-03-01", "2026-03-02"):
        lake.write_bytes(f"{catalog.location('stream_predictions', day)}hour=10/batch_id=3/part-00000.parquet", b"PAR1")
    expired = {"Values": ["2026-01-01"], "StorageDescriptor": {"Location": catalog.location("stream_predictions",
                                                                                           "2026-01-01")}}
    glue.create_partition(DatabaseName=settings.glue_database, TableName="stream_predictions", PartitionInput=expired)
    result = catalog.register_present("stream_predictions")
    assert (result["registered"], result["dropped"]) == (["2026-03-01", "2026-03-02"], ["2026-01-01"])
    assert {d: p["StorageDescriptor"]["Location"] for d, p in _partitions(glue, "stream_predictions").items()} == {
        d: catalog.location("stream_predictions", d) for d in ("2026-03-01", "2026-03-02")}
    assert catalog.register_present("stream_predictions") == {"table": "stream_predictions", "registered": [],
                                                              "dropped": []}


def test_expired_scoring_input_partitions_are_dropped_and_kept_ones_stay(glue):
    _swap_in("scoring_input", "2026-03-02")
    catalog.register_partition("scoring_input", "2026-03-02")
    expired = {"Values": ["2025-11-01"], "StorageDescriptor": {"Location": catalog.location("scoring_input",
                                                                                           "2025-11-01")}}
    glue.create_partition(DatabaseName=settings.glue_database, TableName="scoring_input", PartitionInput=expired)
    assert catalog.drop_expired("scoring_input") == ["2025-11-01"]
    assert list(_partitions(glue, "scoring_input")) == ["2026-03-02"]


def test_a_features_runs_partitions_come_from_its_summary():
    summary = {"ds": "2026-03-03", "entities": {"customers": {"days": ["2026-03-01", "2026-03-02"]},
                                                "events": {"days": ["2026-03-02"]}},
               "features": {"days": ["2026-03-02", "2026-03-03"]}, "labels": {"days": ["2026-02-01"]}}
    assert catalog.features_run_partitions(summary) == [
        ("clean_customers", "2026-03-01"), ("clean_customers", "2026-03-02"), ("clean_events", "2026-03-02"),
        ("features", "2026-03-02"), ("scoring_input", "2026-03-02"), ("features", "2026-03-03"),
        ("scoring_input", "2026-03-03"), ("labels", "2026-02-01")]
    del summary["labels"]["days"]
    with pytest.raises(catalog.CatalogError, match="does not list the partitions it wrote.*Rerun build_features"):
        catalog.features_run_partitions(summary)


def test_the_local_control_plane_creates_and_keeps_the_templates_catalog(lake_root):
    from local_aws.settings import LOCAL_ACCOUNT

    backend = spark_api.LocalGlueBackend("us-east-1", LOCAL_ACCOUNT)
    spark_api.create_catalog(backend, "")
    spark_api.create_catalog(backend, "")  # a restart changes nothing
    restarted = spark_api.LocalGlueBackend("us-east-1", LOCAL_ACCOUNT)  # read back from the lake's .control-plane/
    tables = restarted.get_database(settings.glue_database).tables
    assert sorted(tables) == sorted(catalog.TABLES)
    assert {name: t.versions[str(t._current_version)]["StorageDescriptor"]["Location"] for name, t in tables.items()} \
        == {name: f"s3://{settings.lake_bucket}/{prefix}" for name, prefix in catalog.TABLES.items()}
    assert all(t._current_version == 1 for t in tables.values())


def test_a_history_run_registers_its_many_partitions_in_batches_and_a_rerun_updates_them(glue):
    """More than catalog.FEW partitions: one listing for their data, batched creates, then batched updates; a
    partition without its marker among them refuses the whole registration, naming it."""
    days = [f"2026-03-{d:02d}" for d in range(1, 9)]
    for day in days[:-1]:
        _swap_in("labels", day)
    _swap_in("labels", days[-1], marker=False)
    with pytest.raises(AirflowFailException, match=r"labels/dt=2026-03-08/: no _SUCCESS marker"):
        catalog.register_partitions([("labels", d) for d in days])
    assert _partitions(glue, "labels") == {}  # nothing registered before its data exists
    lake.write_bytes(f"{catalog.location('labels', days[-1])}_SUCCESS", b"")
    assert {r["action"] for r in catalog.register_partitions([("labels", d) for d in days])} == {"created"}
    assert {r["action"] for r in catalog.register_partitions([("labels", d) for d in days])} == {"updated"}
    assert sorted(_partitions(glue, "labels")) == days
