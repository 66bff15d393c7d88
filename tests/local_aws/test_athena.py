"""Athena on the control plane answers like Athena, over the Glue catalog's registered partitions (local_aws/athena.py).

boto3, PyAthena (as the provider's AthenaSQLHook builds it), the provider's AthenaHook and the common-sql check
operator talk to a control plane of this module's own; the data is small Parquet, CSV and JSON files written
into its lake, and the catalog is created with boto3's Glue client, as the template and the tasks do.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from local_aws import control_plane, lake_files
from support import free_port

pytestmark = pytest.mark.e2e
LAKE = "s3://churn-lake"
DB = "qa"
WORKGROUP = "churn"  # the template's, which the control plane creates
PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
}
TEXT = {
    "InputFormat": "org.apache.hadoop.mapred.TextInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe",
                  "Parameters": {"field.delim": ","}},
}
EVENTS = {  # dt -> rows; 2026-01-03 is written but never registered
    "2026-01-01": [("c1", 1.5, 10, True, dt.date(2025, 12, 1), dt.datetime(2026, 1, 1, 8, 30), decimal.Decimal("1.25"), "a"),
                   ("c2", 2.0, 20, False, dt.date(2025, 12, 2), dt.datetime(2026, 1, 1, 9, 0), decimal.Decimal("2.50"), None),
                   ("c3", None, 30, True, None, None, None, "c")],
    "2026-01-02": [("c1", 4.0, 40, False, dt.date(2025, 12, 3), dt.datetime(2026, 1, 2, 10, 15), decimal.Decimal("3.75"), "d"),
                   ("c4", 5.5, 50, True, dt.date(2025, 12, 4), dt.datetime(2026, 1, 2, 11, 45), decimal.Decimal("4.00"), "e")],
    "2026-01-03": [("c9", 9.0, 90, True, dt.date(2025, 12, 9), dt.datetime(2026, 1, 3, 0, 0), decimal.Decimal("9.99"), "z")],
}
EVENT_SCHEMA = pa.schema([("customer_id", pa.string()), ("amount", pa.float64()), ("n", pa.int64()), ("flag", pa.bool_()),
                          ("d", pa.date32()), ("ts", pa.timestamp("us")), ("price", pa.decimal128(10, 2)),
                          ("note", pa.string())])
EVENT_COLUMNS = [{"Name": "customer_id", "Type": "string"}, {"Name": "amount", "Type": "double"},
                 {"Name": "n", "Type": "bigint"}, {"Name": "flag", "Type": "boolean"}, {"Name": "d", "Type": "date"},
                 {"Name": "ts", "Type": "timestamp"}, {"Name": "price", "Type": "decimal(10,2)"},
                 {"Name": "note", "Type": "string"}]


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    """A control plane of this module's own; the Airflow connections of the local target point at it."""
    lake = tmp_path_factory.mktemp("athena") / "lake"
    env = {"LAKE_ROOT": str(lake), "ML_TARGET": "local", "CHURN_LOCAL_AWS_PORT": str(free_port()),
           "CHURN_LOCAL_RUNTIME_PORT": str(free_port())}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        url = control_plane.ensure_server()
        patch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(control_plane.connection(url, role=None)))
        patch.setenv("AIRFLOW_CONN_ATHENA_DEFAULT", json.dumps(control_plane.athena_connection(url)))
        try:
            _catalog(url)
            yield {"url": url, "lake": lake}
        finally:
            control_plane.stop_server()


def _table(glue, name: str, columns: list[dict], descriptor: dict, location: str, parameters: dict | None = None,
           database: str = DB) -> None:
    glue.create_table(DatabaseName=database, TableInput={
        "Name": name, "TableType": "EXTERNAL_TABLE", "Parameters": parameters or {},
        "PartitionKeys": [{"Name": "dt", "Type": "string"}],
        "StorageDescriptor": {**descriptor, "Columns": columns, "Location": location}})


def _register(glue, table: str, day: str, location: str, database: str = DB) -> None:
    glue.create_partition(DatabaseName=database, TableName=table, PartitionInput={
        "Values": [day], "StorageDescriptor": {"Location": location}})


def _write(uri: str, data: bytes) -> None:
    lake_files.write_bytes(uri, data)


def _catalog(url: str) -> None:
    glue = client(url, "glue")
    glue.create_database(DatabaseInput={"Name": DB})
    _table(glue, "events", EVENT_COLUMNS, PARQUET, f"{LAKE}/qa/events/")
    for day, rows in EVENTS.items():
        table = pa.Table.from_pylist([dict(zip(EVENT_SCHEMA.names, row, strict=True)) for row in rows], schema=EVENT_SCHEMA)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        _write(f"{LAKE}/qa/events/dt={day}/part-00000.parquet", sink.getvalue().to_pybytes())
        _write(f"{LAKE}/qa/events/dt={day}/_SUCCESS", b'{"rows": 1}')  # a marker, not data
        if day != "2026-01-03":
            _register(glue, "events", day, f"{LAKE}/qa/events/dt={day}/")
    # CSV with a header line to skip, and a value that does not parse as its column's type (NULL, as Hive reads it)
    _table(glue, "scores", [{"Name": "customer_id", "Type": "string"}, {"Name": "score", "Type": "double"}], TEXT,
           f"{LAKE}/qa/scores/", {"skip.header.line.count": "1"})
    _write(f"{LAKE}/qa/scores/dt=2026-01-01/a.csv", b"customer_id,score\nc1,0.25\nc2,oops\n")
    _write(f"{LAKE}/qa/scores/dt=2026-01-01/b.csv", b"customer_id,score\nc3,0.75\n")
    _register(glue, "scores", "2026-01-01", f"{LAKE}/qa/scores/dt=2026-01-01/")
    # JSON lines
    _table(glue, "docs", [{"Name": "id", "Type": "int"}, {"Name": "tags", "Type": "array<string>"}],
           {**TEXT, "SerdeInfo": {"SerializationLibrary": "org.openx.data.jsonserde.JsonSerDe"}}, f"{LAKE}/qa/docs/")
    _write(f"{LAKE}/qa/docs/dt=2026-01-01/x.json", b'{"id": 1, "tags": ["a", "b"]}\n{"id": 2, "tags": []}\n')
    _register(glue, "docs", "2026-01-01", f"{LAKE}/qa/docs/dt=2026-01-01/")


def client(url: str, service: str):
    return control_plane.client(service, url)


def run(url: str, sql: str, database: str | None = DB, timeout: float = 60.0) -> dict:
    """Start ``sql`` in the template's workgroup and wait for its end; the final QueryExecution."""
    athena = client(url, "athena")
    context = {"Database": database} if database else {}
    query_id = athena.start_query_execution(QueryString=sql, QueryExecutionContext=context,
                                            WorkGroup=WORKGROUP)["QueryExecutionId"]
    deadline = time.monotonic() + timeout
    while True:
        execution = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
        if execution["Status"]["State"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return execution
        assert time.monotonic() < deadline, execution
        time.sleep(0.1)


def rows(url: str, query_id: str, page: int = 1000) -> tuple[list[dict], list[list]]:
    """ColumnInfo and every row (the header included) of a query's results, page by page."""
    athena, token, found, columns = client(url, "athena"), None, [], None
    while True:
        kwargs = {"NextToken": token} if token else {}
        answer = athena.get_query_results(QueryExecutionId=query_id, MaxResults=page, **kwargs)
        assert len(answer["ResultSet"]["Rows"]) <= page
        columns = answer["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]
        found += [[d.get("VarCharValue") for d in row["Data"]] for row in answer["ResultSet"]["Rows"]]
        token = answer.get("NextToken")
        if not token:
            return columns, found


def test_results_come_in_pages_with_the_header_first_athenas_types_and_null_as_no_value(plane):
    execution = run(plane["url"], "SELECT customer_id, amount, n, flag, d, ts, price, note, dt FROM events "
                                  "ORDER BY dt, customer_id")
    assert execution["Status"]["State"] == "SUCCEEDED", execution["Status"]
    assert execution["WorkGroup"] == WORKGROUP and execution["StatementType"] == "DML"
    assert execution["Statistics"]["DataScannedInBytes"] > 0
    columns, found = rows(plane["url"], execution["QueryExecutionId"], page=2)
    assert found[0] == ["customer_id", "amount", "n", "flag", "d", "ts", "price", "note", "dt"]  # the header, once
    assert [c["Type"] for c in columns] == ["varchar", "double", "bigint", "boolean", "date", "timestamp", "decimal",
                                            "varchar", "varchar"]
    assert (columns[6]["Precision"], columns[6]["Scale"]) == (10, 2)
    assert found[1] == ["c1", "1.5", "10", "true", "2025-12-01", "2026-01-01 08:30:00.000", "1.25", "a", "2026-01-01"]
    assert found[3] == ["c3", None, "30", "true", None, None, None, "c", "2026-01-01"]  # NULLs: no VarCharValue
    assert found[2][7] is None
    assert len(found) == 1 + 5  # two registered partitions' rows; the unregistered one's are not there
    # Athena's result object, where Athena writes it: <OutputLocation>/<id>.csv, every field quoted, NULL empty.
    output = execution["ResultConfiguration"]["OutputLocation"]
    assert output == f"{LAKE}/_athena/{execution['QueryExecutionId']}.csv"  # the template's enforced location
    text = lake_files.local_path(output).read_text().splitlines()
    assert text[0] == '"customer_id","amount","n","flag","d","ts","price","note","dt"'
    assert text[3] == '"c3",,"30","true",,,,"c","2026-01-01"'
    s3 = client(plane["url"], "s3")
    assert s3.get_object(Bucket="churn-lake", Key=output.split("/", 3)[3])["Body"].read().decode().splitlines() == text


def test_counts_equal_what_pyarrow_reads_of_the_registered_partitions_only(plane):
    execution = run(plane["url"], "SELECT dt, count(*) AS n, count(DISTINCT customer_id) AS customers FROM "
                                  "qa.events GROUP BY dt ORDER BY dt", database=None)  # db.table, no context
    assert execution["Status"]["State"] == "SUCCEEDED", execution["Status"]
    _, found = rows(plane["url"], execution["QueryExecutionId"])
    glue = client(plane["url"], "glue")
    registered = {p["Values"][0]: p["StorageDescriptor"]["Location"]
                  for p in glue.get_partitions(DatabaseName=DB, TableName="events")["Partitions"]}
    expected = []
    for day, location in sorted(registered.items()):
        table = pq.read_table(str(lake_files.local_path(f"{location}part-00000.parquet")))
        expected.append([day, str(table.num_rows), str(len(set(table.column("customer_id").to_pylist())))])
    assert found[1:] == expected
    assert "2026-01-03" not in {row[0] for row in found[1:]} and lake_files.local_path(f"{LAKE}/qa/events/dt=2026-01-03/").is_dir()
    # Registering the partition makes it visible to the next query.
    _register(glue, "events", "2026-01-03", f"{LAKE}/qa/events/dt=2026-01-03/")
    try:
        execution = run(plane["url"], "SELECT count(*) FROM events WHERE dt = '2026-01-03'")
        assert rows(plane["url"], execution["QueryExecutionId"])[1][1] == ["1"]
    finally:
        glue.delete_partition(DatabaseName=DB, TableName="events", PartitionValues=["2026-01-03"])


def test_csv_skips_its_header_lines_and_json_lines_are_read_per_the_catalog(plane):
    execution = run(plane["url"], "SELECT customer_id, score FROM awsdatacatalog.qa.scores ORDER BY customer_id")
    columns, found = rows(plane["url"], execution["QueryExecutionId"])
    assert found[1:] == [["c1", "0.25"], ["c2", None], ["c3", "0.75"]] and columns[1]["Type"] == "double"
    execution = run(plane["url"], "SELECT id, cardinality(tags) AS k FROM docs ORDER BY id")
    columns, found = rows(plane["url"], execution["QueryExecutionId"])
    assert found[1:] == [["1", "2"], ["2", "0"]] and columns[0]["Type"] == "integer"
    # Aliased and qualified tables in one join.
    execution = run(plane["url"], "SELECT s.customer_id, e.n FROM scores AS s JOIN qa.events e "
                                  "ON e.customer_id = s.customer_id AND e.dt = s.dt ORDER BY s.customer_id")
    assert rows(plane["url"], execution["QueryExecutionId"])[1][1:] == [["c1", "10"], ["c2", "20"], ["c3", "30"]]


def test_an_invalid_query_is_refused_at_start_in_athenas_error_shape(plane):
    athena = client(plane["url"], "athena")
    for sql, words in (("SELEC 1", "syntax error"), ("SELECT 1; SELECT 2", "one sql statement"),
                       ("CREATE TABLE x AS SELECT 1", "queries only"), ("DROP TABLE events", "queries only")):
        with pytest.raises(ClientError) as caught:
            athena.start_query_execution(QueryString=sql, WorkGroup=WORKGROUP)
        error = caught.value.response["Error"]
        assert error["Code"] == "InvalidRequestException" and words in error["Message"], (sql, error)
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(athena.exceptions.InvalidRequestException, match="WorkGroup nope is not found"):
        athena.start_query_execution(QueryString="SELECT 1", WorkGroup="nope")


def test_a_missing_table_or_column_fails_the_query_with_athenas_reason(plane):
    execution = run(plane["url"], "SELECT * FROM nope")
    status = execution["Status"]
    assert status["State"] == "FAILED"
    assert status["StateChangeReason"].startswith("TABLE_NOT_FOUND: ") and "qa.nope" in status["StateChangeReason"]
    assert status["AthenaError"]["ErrorCategory"] == 2 and status["AthenaError"]["Retryable"] is False
    assert status["AthenaError"]["ErrorMessage"] == status["StateChangeReason"]
    status = run(plane["url"], "SELECT missing_column FROM events")["Status"]
    assert status["State"] == "FAILED" and status["StateChangeReason"].startswith("COLUMN_NOT_FOUND: "), status
    # Results of a failed query are Athena's InvalidRequestException, not an empty page.
    with pytest.raises(client(plane["url"], "athena").exceptions.InvalidRequestException):
        client(plane["url"], "athena").get_query_results(QueryExecutionId=execution["QueryExecutionId"])


def test_table_metadata_comes_from_the_glue_catalog(plane):
    table = client(plane["url"], "athena").get_table_metadata(CatalogName="AwsDataCatalog", DatabaseName=DB,
                                                               TableName="events")["TableMetadata"]
    assert table["Parameters"]["location"] == f"{LAKE}/qa/events/"
    assert [c["Name"] for c in table["Columns"]] == [c["Name"] for c in EVENT_COLUMNS]
    assert table["PartitionKeys"] == [{"Name": "dt", "Type": "string"}]
    with pytest.raises(ClientError) as caught:
        client(plane["url"], "athena").get_table_metadata(CatalogName="AwsDataCatalog", DatabaseName=DB, TableName="x")
    assert caught.value.response["Error"]["Code"] == "MetadataException"


def test_pyathena_through_the_providers_sql_hook_returns_typed_rows(plane):
    from airflow.providers.amazon.aws.hooks.athena_sql import AthenaSQLHook

    hook = AthenaSQLHook(athena_conn_id="athena_default")
    records = hook.get_records(f"SELECT customer_id, amount, n, flag, d, price FROM {DB}.events WHERE dt = '2026-01-01' "
                               "ORDER BY customer_id")
    assert [tuple(r) for r in records] == [
        ("c1", 1.5, 10, True, dt.date(2025, 12, 1), decimal.Decimal("1.25")),
        ("c2", 2.0, 20, False, dt.date(2025, 12, 2), decimal.Decimal("2.50")),
        ("c3", None, 30, True, None, None)]


def test_the_providers_athena_hook_runs_and_polls_a_query(plane):
    from airflow.providers.amazon.aws.hooks.athena import AthenaHook

    hook = AthenaHook(aws_conn_id="aws_default")
    query_id = hook.run_query(f"SELECT count(*) AS n FROM {DB}.events", query_context={"Database": DB},
                              result_configuration={}, workgroup=WORKGROUP)
    assert hook.poll_query_status(query_id, sleep_time=1, max_polling_attempts=30) == "SUCCEEDED"
    results = hook.get_query_results(query_id)
    assert results["ResultSet"]["Rows"][1]["Data"][0]["VarCharValue"] == "5"
    assert hook.get_output_location(query_id) == f"{LAKE}/_athena/{query_id}.csv"
    failed = hook.run_query("SELECT * FROM nope", query_context={"Database": DB}, result_configuration={},
                            workgroup=WORKGROUP)
    assert hook.poll_query_status(failed, sleep_time=1, max_polling_attempts=30) == "FAILED"
    assert hook.get_state_change_reason(failed).startswith("TABLE_NOT_FOUND")


def _scoring_day(glue, day: str, input_customers: list[str], predicted: list[str]) -> None:
    """The template's scoring_input and predictions tables (churn_lake) get ``day``'s partitions, registered."""
    features = ",".join(["0.5"] * 19)
    _write(f"{LAKE}/scoring_input/dt={day}/part-00000.csv",
           "".join(f"{c},{features}\n" for c in input_customers).encode())
    _write(f"{LAKE}/scoring_input/dt={day}/_SUCCESS", b"{}")
    _write(f"{LAKE}/predictions/dt={day}/part-00000.csv.out", "".join(f"{c},0.42\n" for c in predicted).encode())
    for table in ("scoring_input", "predictions"):
        _register(glue, table, day, f"{LAKE}/{table}/dt={day}/", database="churn_lake")


def test_the_predictions_check_passes_on_consistent_data_and_fails_on_a_missing_customer(plane):
    from airflow.providers.common.sql.operators.sql import SQLCheckOperator
    from airflow.sdk.exceptions import AirflowException

    from churn_ml.checks import PREDICTIONS_MATCH_SCORING_INPUT

    glue = client(plane["url"], "glue")
    _scoring_day(glue, "2026-02-01", ["c1", "c2", "c3"], ["c1", "c2", "c3"])
    _scoring_day(glue, "2026-02-02", ["c1", "c2", "c3"], ["c1", "c3"])  # c2 missing
    _scoring_day(glue, "2026-02-03", ["c1", "c2"], ["c1", "c2", "c2"])  # c2 twice

    def check(day: str) -> None:
        SQLCheckOperator(task_id="check_predictions", conn_id="athena_default",
                         sql=PREDICTIONS_MATCH_SCORING_INPUT.replace("{{ ds }}", day)).execute({})

    check("2026-02-01")
    with pytest.raises(AirflowException, match="Test failed"):
        check("2026-02-02")
    with pytest.raises(AirflowException, match="Test failed"):
        check("2026-02-03")
    with pytest.raises(AirflowException, match="Test failed"):  # a day with no scoring input is no pass either
        check("2026-02-09")


def test_workgroups_answer_as_athenas_and_the_templates_enforces_its_encrypted_location(plane):
    athena = client(plane["url"], "athena")
    group = athena.get_work_group(WorkGroup=WORKGROUP)["WorkGroup"]
    configuration = group["Configuration"]
    assert configuration["EnforceWorkGroupConfiguration"] is True
    assert configuration["ResultConfiguration"]["OutputLocation"] == f"{LAKE}/_athena/"
    assert configuration["ResultConfiguration"]["EncryptionConfiguration"]["EncryptionOption"] == "SSE_KMS"
    assert WORKGROUP in {g["Name"] for g in athena.list_work_groups()["WorkGroups"]}
    with pytest.raises(athena.exceptions.InvalidRequestException):
        athena.get_work_group(WorkGroup="nope")
