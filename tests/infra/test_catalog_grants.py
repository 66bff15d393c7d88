"""The Glue Data Catalog in the template: the lake's tables as ``dag_support.TABLES`` names them, and exactly the
catalog rights ``dag_support.CATALOG_ACCESS`` (registering partitions) and ``QUERY_ACCESS`` (Athena's reads) give
each task, granted to the MWAA role only.

The columns of each table are checked against what the jobs write in tests/unit/test_catalog_schemas.py.
"""

from __future__ import annotations

import ast
import inspect
import textwrap

import pytest
from built_dags import dags
from cfn_template import as_list, load, role_statements, sub_text

from churn_ml import catalog
from churn_ml import dag_support as ds

FORMATS = {
    "parquet": ("org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"),
    "csv": ("org.apache.hadoop.mapred.TextInputFormat", "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
            "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe"),
    "json": ("org.apache.hadoop.mapred.TextInputFormat", "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
             "org.openx.data.jsonserde.JsonSerDe"),
}
# What each table's writer writes (include/jobs/*.py, transform_io.publish_predictions).
TABLE_FORMATS = {"clean_customers": "parquet", "clean_events": "parquet", "features": "parquet", "labels": "parquet",
                 "scoring_input": "csv", "predictions": "csv", "stream_predictions": "parquet",
                 "monitoring_daily": "json"}
TEMPLATE_ROLES = {ds.MWAA: "MwaaExecutionRole", ds.SAGEMAKER: "SageMakerRole", ds.EMR: "EmrServerlessJobRole",
                  ds.GLUE: "GlueJobRole"}
ARN = "arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}:"


@pytest.fixture(scope="module")
def template() -> dict:
    return load()


def tables(template: dict) -> dict[str, dict]:
    return {r["Properties"]["TableInput"]["Name"]: r["Properties"]
            for r in template["Resources"].values() if r["Type"] == "AWS::Glue::Table"}


def test_the_template_declares_the_database_and_one_table_per_dataset(template, monkeypatch):
    databases = [r for r in template["Resources"].values() if r["Type"] == "AWS::Glue::Database"]
    assert [d["Properties"]["DatabaseInput"]["Name"] for d in databases] == [{"!Ref": "LakeDatabaseName"}]
    monkeypatch.delenv("CHURN_GLUE_DATABASE", raising=False)
    assert template["Parameters"]["LakeDatabaseName"]["Default"] == ds.settings.glue_database
    assert template["Outputs"]["LakeDatabase"] == {"Value": {"!Ref": "LakeDatabase"}, "Description": "CHURN_GLUE_DATABASE"}
    found = tables(template)
    assert set(found) == set(ds.TABLES) == set(TABLE_FORMATS)
    for name, properties in found.items():
        table = properties["TableInput"]
        storage = table["StorageDescriptor"]
        assert properties["DatabaseName"] == {"!Ref": "LakeDatabase"}, name
        assert table["TableType"] == "EXTERNAL_TABLE", name
        assert table["PartitionKeys"] == [{"Name": "dt", "Type": "string"}], name
        assert sub_text(storage["Location"]) == f"s3://${{LakeBucket}}/{ds.TABLES[name]}", name
        fmt = TABLE_FORMATS[name]
        assert (storage["InputFormat"], storage["OutputFormat"], storage["SerdeInfo"]["SerializationLibrary"]) \
            == FORMATS[fmt], name
        assert table["Parameters"]["classification"] == fmt, name
        if fmt == "csv":  # written without a header row (Spark header=false, the transform's output lines)
            assert storage["SerdeInfo"]["Parameters"]["field.delim"] == ","
            assert table["Parameters"]["skip.header.line.count"] == "0"
        assert "dt" not in [c["Name"] for c in storage["Columns"]], f"{name}: dt is the partition key, not a column"


def test_the_catalog_access_rows_name_tasks_and_tables_that_exist():
    built = {(dag_id, t.task_id) for dag_id, dag in dags("emr_serverless").items() for t in dag.tasks}
    for dag_id, tasks in ds.CATALOG_ACCESS.items():
        for task_id, grants in tasks.items():
            assert (dag_id, task_id) in built, f"CATALOG_ACCESS names {dag_id}.{task_id}, which is not a task"
            assert set(grants) <= set(ds.TABLES), grants
            assert all(set(actions) <= {*ds.CATALOG_REGISTER, *ds.CATALOG_EXPIRE} for actions in grants.values())


def _catalog_calls(task) -> dict[str, set[str]]:
    """What a task's code asks of churn_ml.catalog: {"register": tables, "expire": tables}."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(task.python_callable)))
    found: dict[str, set[str]] = {"register": set(), "expire": set()}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "catalog"):
            continue
        name = node.func.attr
        literal = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
        if name == "register_partition":
            found["register"].add(literal)
        elif name == "register_present":
            found["register"].add(literal)
            found["expire"].add(literal)
        elif name == "drop_expired":
            found["expire"].add(literal)
        elif name == "register_partitions":
            assert ast.unparse(node.args[0]).startswith("catalog.features_run_partitions("), ast.unparse(node)
            summary = {"entities": {"customers": {"days": ["2026-01-01"]}, "events": {"days": ["2026-01-01"]}},
                       "features": {"days": ["2026-01-02"]}, "labels": {"days": ["2025-12-03"]}}
            found["register"] |= {table for table, _ in catalog.features_run_partitions(summary)}
    return found


def test_the_tasks_ask_the_catalog_for_exactly_their_rows():
    for dag_id, dag in dags("emr_serverless").items():
        for task in dag.tasks:
            grants = ds.CATALOG_ACCESS.get(dag_id, {}).get(task.task_id, {})
            calls = _catalog_calls(task) if hasattr(task, "python_callable") else {"register": set(), "expire": set()}
            assert calls["register"] == {t for t, a in grants.items() if set(ds.CATALOG_REGISTER) <= set(a)}, \
                f"{dag_id}.{task.task_id} registers {calls['register']}; CATALOG_ACCESS says {grants}"
            assert calls["expire"] == {t for t, a in grants.items() if set(ds.CATALOG_EXPIRE) <= set(a)}, \
                f"{dag_id}.{task.task_id} drops expired partitions of {calls['expire']}; CATALOG_ACCESS says {grants}"


def expected_grants() -> dict[str, set[tuple[str, str]]]:
    """Per role, the (action, resource) pairs CATALOG_ACCESS (registering) and QUERY_ACCESS (Athena's reads of the
    catalog as the caller) need: each action on the catalog, the database and the table (Glue authorizes a table's
    operations on all three)."""
    pairs: set[tuple[str, str]] = set()
    queries = {dag_id: {task_id: {table: ds.QUERY_CATALOG for table in names} for task_id, names in tasks.items()}
               for dag_id, tasks in ds.QUERY_ACCESS.items()}
    for tasks in [*ds.CATALOG_ACCESS.values(), *queries.values()]:
        for grants in tasks.values():
            for table, actions in grants.items():
                for action in actions:
                    pairs |= {(action, f"{ARN}catalog"), (action, f"{ARN}database/${{LakeDatabase}}"),
                              (action, f"{ARN}table/${{LakeDatabase}}/{table}")}
    return {role: pairs if role == ds.MWAA else set() for role in ds.ROLES}


def granted(template: dict, role: str) -> set[tuple[str, str]]:
    """(glue action, resource) of every statement of the role that is not about Glue jobs."""
    pairs = set()
    for statement in role_statements(template, TEMPLATE_ROLES[role]):
        resources = [sub_text(r) or str(r) for r in as_list(statement["Resource"])]
        actions = [a for a in as_list(statement["Action"]) if a.startswith("glue:")]
        if not actions or all(":job/" in r for r in resources):
            continue
        assert statement["Effect"] == "Allow" and "Condition" not in statement, statement["Sid"]
        pairs |= {(action, resource) for action in actions for resource in resources}
    return pairs


@pytest.mark.parametrize("role", ds.ROLES)
def test_each_roles_catalog_grants_are_exactly_the_table(template, role):
    want, have = expected_grants()[role], granted(template, role)
    assert not want - have, f"{role} lacks {sorted(want - have)}"
    assert not have - want, f"{role} has catalog grants no task needs: {sorted(have - want)}"


def test_a_missing_or_an_extra_catalog_grant_is_found(template):
    import copy

    mutated = copy.deepcopy(template)
    statements = role_statements(mutated, "MwaaExecutionRole")
    register = next(s for s in statements if "glue:CreatePartition" in as_list(s["Action"]))
    register["Resource"] = [r for r in register["Resource"] if not str(sub_text(r)).endswith("/predictions")]
    assert (("glue:CreatePartition", f"{ARN}table/${{LakeDatabase}}/predictions")
            in expected_grants()[ds.MWAA] - granted(mutated, ds.MWAA))
    glue_role = mutated["Resources"]["GlueJobRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    glue_role.append({"Sid": "Extra", "Effect": "Allow", "Action": "glue:GetTable", "Resource": f"{ARN}catalog"})
    assert granted(mutated, ds.GLUE) == {("glue:GetTable", f"{ARN}catalog")}
