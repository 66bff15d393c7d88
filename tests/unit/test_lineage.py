"""Lineage: every task declares what it reads and writes, in one naming scheme; the transport writes one
event per object into the lake; the graph answers what produced a dataset and what it reached."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from churn_ml import dag_support as ds
from churn_ml.lineage import declared, extractor, graph, names
from churn_ml.lineage.declared import LINEAGE, TaskRun
from support import lineage_event_problems

REPO = Path(__file__).resolve().parents[2]
LAKE = "s3://churn-lake"
DS = "2026-07-02"
ARN_PREFIX = "arn:aws:sagemaker:us-east-1:000000000000:"


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag.dags


# ------------------------------------------------------------------ a run of every task, synthetic
TRAINING_JOB = {
    "TrainingJobName": "churn-xgb-1",
    "InputDataConfig": [{"ChannelName": c, "DataSource": {"S3DataSource": {"S3Uri": f"{LAKE}/training_sets/ds={DS}/{c}"}}}
                        for c in ("train", "validation")],
    "ModelArtifacts": {"S3ModelArtifacts": f"{LAKE}/models/churn/churn-xgb-1/output/model.tar.gz"},
}
VERSION = {"ModelPackageArn": f"{ARN_PREFIX}model-package/churn-xgboost/3", "ModelPackageVersion": 3,
           "CardUri": f"{LAKE}/registry/churn-xgboost/v3/card.json",
           "EvaluationUri": f"{LAKE}/models/churn/churn-xgb-1/output/evaluation.json", "BaselineUri": None}
POINTER = {"model_package_arn": VERSION["ModelPackageArn"], "model_package_version": 3,
           "model_data_url": TRAINING_JOB["ModelArtifacts"]["S3ModelArtifacts"],
           "evaluation_uri": VERSION["EvaluationUri"], "baseline_uri": f"{LAKE}/registry/churn-xgboost/baseline.json"}
STAGING = f"{LAKE}/_staging/predictions/dt={DS}/manual__{DS}/"
XCOMS = {
    ("train_model", "return_value"): {"Training": TRAINING_JOB},
    ("train_model", "job_identity"): {"name": "churn-xgb-1", "code_version": "abc123", "inputs": None},
    ("tune_hyperparameters", "return_value"): {"Tuning": {
        "HyperParameterTuningJobName": "churn-hpo-1", "TrainingJobDefinition": {"InputDataConfig": TRAINING_JOB["InputDataConfig"]}}},
    ("inspect_training_set", "return_value"): {"splits": {"train": {}, "validation": {}, "holdout": {}}},
    ("resolve_champion", "return_value"): {"model_data_url": "", "version": None},
    ("register_model", "return_value"): {**VERSION, "Publish": True},
    ("publish_model", "return_value"): POINTER,
    ("deploy_model", "return_value"): {"EndpointConfig": {"EndpointConfigName": "churn-xgboost-v3"},
                                       "Endpoint": {"EndpointName": "churn-xgboost"}},
    ("resolve_model", "return_value"): POINTER,
    ("list_scoring_input", "return_value"): {"manifest": f"{STAGING}scoring_input.manifest", "objects": 1},
    ("batch_transform", "return_value"): {"Transform": {"TransformOutput": {"S3OutputPath": f"{STAGING}out/"}}},
    ("resolve_baseline", "return_value"): {"model_package_version": 3, "baseline_uri": POINTER["baseline_uri"]},
    ("ensure_endpoint", "return_value"): {"name": "churn-xgboost", "config": "churn-xgboost-v3"},
}
JSON_OBJECTS = {
    f"{LAKE}/_runs/churn_features/ds={DS}/summary.json": {
        "entities": {"customers": {"partitions": {"2026-07-01": {}}}, "events": {"partitions": {"2026-07-01": {}}}},
        "features": {"per_day": {DS: 10}}, "labels": {"snapshots": "2026-06-02..2026-06-02"}},
    f"{LAKE}/training_sets/ds={DS}/_manifest.json": {"splits": {"train": {}, "validation": {}, "holdout": {}}},
}
# What each job operator's input specs keep (churn_ml.inputs.partitions), as a lake would list them.
JOB_INPUTS = {
    "build_features": [f"{LAKE}/raw/customers/dt=2026-07-01", f"{LAKE}/raw/events/dt=2026-07-01",
                       f"{LAKE}/clean/events/dt=2026-06-30"],
    "build_training_set": [f"{LAKE}/features/dt=2026-06-02", f"{LAKE}/labels/dt=2026-06-02"],
    "batch_transform": [f"{LAKE}/scoring_input/dt={DS}"],
    "monitor": [POINTER["baseline_uri"], f"{LAKE}/predictions/dt={DS}", f"{LAKE}/features/dt={DS}",
                f"{LAKE}/monitoring/capture/churn-xgboost/AllTraffic/2026/07/02/10"],
}


class _Operator:
    def __init__(self, task_id: str):
        self.inputs = [{"prefix": "s3://churn-lake/x/"}] if task_id in JOB_INPUTS else []
        self.task_id = task_id


def synthetic_run(task_id: str) -> TaskRun:
    return TaskRun(
        ds=DS, lake=LAKE, result=XCOMS.get((task_id, "return_value")),
        xcoms=lambda t, k: XCOMS.get((t, k)), operator=_Operator(task_id), read_json=JSON_OBJECTS.__getitem__,
        partitions=lambda spec, task_id=task_id: JOB_INPUTS[task_id], region="us-east-1", account="000000000000",
    )


def _lake_prefix_granted(uri: str, granted: dict[str, str], mode: str) -> bool:
    key = uri[len(LAKE) + 1:]
    return any((key + "/").startswith(prefix) and mode in modes for prefix, modes in granted.items())


# ------------------------------------------------------------------ every task declared
def test_every_task_of_every_dag_has_a_declaration_and_the_extractor_covers_its_operator(dags):
    for dag_id, dag in dags.items():
        for task in dag.tasks:
            assert task.task_id in LINEAGE.get(dag_id, {}), f"{dag_id}.{task.task_id}: no lineage declaration"
            assert task.task_type in extractor.OPERATORS, f"{dag_id}.{task.task_id}: {task.task_type} not extracted"
    assert {t for d in dags.values() for t in d.task_ids} >= {t for tasks in LINEAGE.values() for t in tasks} - {
        "check_predictions"}  # no declaration of a task that no longer exists
    assert {"SparkOnEmrServerlessOperator", "SparkOnGlueOperator"} <= set(extractor.OPERATORS)  # both backends


def test_an_undeclared_task_is_an_error_naming_where_to_declare_it():
    with pytest.raises(KeyError, match="churn_ml.lineage.declared.LINEAGE"):
        declared.declared("churn_features", "a_new_task", synthetic_run("a_new_task"))


@pytest.mark.parametrize("dag_id,task_id", [(d, t) for d, tasks in ds.LAKE_ACCESS.items() for t in tasks])
def test_a_task_that_touches_the_lake_declares_it_within_what_its_roles_may_touch(dag_id, task_id):
    """Inputs are locations its roles may read, outputs locations they may write: the lineage and the
    access table describe the same task. A task with lake access declares something."""
    access = ds.role_access({dag_id: {task_id: ds.LAKE_ACCESS[dag_id][task_id]}})
    granted: dict[str, str] = {}
    for prefixes in access.values():
        for prefix, modes in prefixes.items():
            granted[prefix] = granted.get(prefix, "") + modes
    found = declared.declared(dag_id, task_id, synthetic_run(task_id))
    if granted:
        assert found.inputs or found.outputs, f"{dag_id}.{task_id} touches the lake but its lineage names nothing"
    for uri in found.inputs:
        if uri.startswith(LAKE + "/"):
            assert _lake_prefix_granted(uri, granted, "r"), f"{dag_id}.{task_id} reads {uri}, which LAKE_ACCESS lacks"
    for uri in found.outputs:
        if uri.startswith(LAKE + "/"):
            assert _lake_prefix_granted(uri, granted, "w"), f"{dag_id}.{task_id} writes {uri}, which LAKE_ACCESS lacks"


def test_the_label_window_is_the_features_libraries():
    from churn.features import LABEL_WINDOW_DAYS

    assert declared.LABEL_WINDOW_DAYS == LABEL_WINDOW_DAYS


# ------------------------------------------------------------------ naming
def test_lake_locations_are_s3_datasets_with_their_glue_table_as_symlink(monkeypatch):
    monkeypatch.setattr(names, "_catalog", lambda: ("arn:aws:glue:us-east-1:000000000000", "churn",
                                                       {"predictions": "predictions"}))
    found = names.dataset(f"{LAKE}/predictions/dt={DS}/")
    assert (found.namespace, found.name) == ("s3://churn-lake", f"predictions/dt={DS}")
    link = found.facets["symlinks"].identifiers[0]
    assert (link.namespace, link.name, link.type) == ("arn:aws:glue:us-east-1:000000000000", "table/churn/predictions",
                                                      "TABLE")
    assert "symlinks" not in names.dataset(f"{LAKE}/models/churn/x/model.tar.gz").facets


def test_resources_are_named_by_their_arn_and_anything_else_is_refused():
    assert names.identify(VERSION["ModelPackageArn"]) == ("arn:aws:sagemaker:us-east-1:000000000000",
                                                             "model-package/churn-xgboost/3")
    with pytest.raises(names.LineageNameError, match="s3://bucket/key"):
        names.identify("/tmp/local/file")


def test_the_provider_operators_datasets_join_the_declared_ones_once():
    from airflow.providers.openlineage.extractors.base import OperatorLineage
    from openlineage.client.event_v2 import Dataset

    own = OperatorLineage(inputs=[Dataset("s3://churn-lake", f"training_sets/ds={DS}/train/")],
                          outputs=[Dataset("s3://churn-lake", "models/churn/churn-xgb-1/output/model.tar.gz")])
    lineage = extractor.lineage_of("churn_training", "train_model", synthetic_run("train_model"), own)
    assert sorted(d.name for d in lineage.inputs) == [f"training_sets/ds={DS}/train", f"training_sets/ds={DS}/validation"]
    assert [d.name for d in lineage.outputs] == ["models/churn/churn-xgb-1/output/model.tar.gz",
                                                 "training-job/churn-xgb-1"]
    assert lineage.run_facets["churn_job"].codeVersion == "abc123"


# ------------------------------------------------------------------ transport
def test_the_transport_writes_one_event_per_object_as_one_json_line(lake_s3):
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState

    from churn_ml.lineage import transport

    sink = transport.LakeTransport(transport.LakeConfig.from_dict({"uri": "s3://churn-lake/_lineage/"}))
    run_id = str(uuid.uuid4())
    for state in (RunState.START, RunState.COMPLETE):
        sink.emit(RunEvent(eventType=state, eventTime="2026-07-02T10:00:00.000000+00:00", run=Run(runId=run_id),
                           job=Job(namespace="churn", name="churn_batch_scoring.publish_predictions"),
                           producer="https://github.com/apache/airflow", inputs=[], outputs=[]))
    files = sorted((lake_s3 / "churn-lake" / "_lineage" / "events" / "date=2026-07-02").iterdir())
    assert len(files) == 2
    lines = files[0].read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["run"]["runId"] == run_id
    assert {json.loads(f.read_text())["eventType"] for f in files} == {"START", "COMPLETE"}
    assert all(lineage_event_problems(json.loads(f.read_text())) == [] for f in files)


def test_the_schema_check_fails_an_event_without_what_the_spec_requires():
    event = {"eventType": "DONE", "eventTime": "yesterday", "producer": "x", "run": {"runId": "r1"},
             "job": {"namespace": "churn"}, "inputs": [{"namespace": "s3://b", "name": "k", "facets": {"symlinks": {}}}]}
    problems = "\n".join(lineage_event_problems(event))
    for expected in ("'DONE' is not one of", "'yesterday' is not a 'date-time'", "'r1' is not a 'uuid'",
                     "'name' is a required property", "'schemaURL' is a required property", "'_producer' is a required",
                     "'x' is not a URI"):
        assert expected in problems


def test_the_transport_refuses_a_uri_it_cannot_write_under():
    from churn_ml.lineage import transport

    with pytest.raises(transport.LakeTransportError, match="ending with '/'"):
        transport.LakeConfig.from_dict({"uri": "s3://churn-lake/_lineage"})


# ------------------------------------------------------------------ graph
def _event(job: str, inputs: list[str], outputs: list[str], time: str, state: str = "COMPLETE",
           code: str | None = None, run_id: str | None = None) -> dict:
    def named(ref: str) -> dict:
        namespace, name = names.identify(ref)
        return {"namespace": namespace, "name": name}

    facets = {"churn_job": {"codeVersion": code}} if code else {}
    return {"eventType": state, "eventTime": time, "run": {"runId": run_id or str(uuid.uuid4()), "facets": facets},
            "job": {"namespace": "churn", "name": job}, "inputs": [named(i) for i in inputs],
            "outputs": [named(o) for o in outputs]}


CHAIN = [
    _event("churn_features.build_features", [f"{LAKE}/raw/events/dt=2026-07-01", f"{LAKE}/raw/customers/dt=2026-07-01"],
           [f"{LAKE}/scoring_input/dt={DS}", f"{LAKE}/features/dt={DS}"], "2026-07-02T01:00:00", code="v1"),
    _event("churn_training.train_model", [f"{LAKE}/features/dt={DS}"], [POINTER["model_data_url"]], "2026-07-02T02:00:00",
           code="v1"),
    _event("churn_training.register_model", [POINTER["model_data_url"]], [VERSION["ModelPackageArn"]], "2026-07-02T03:00:00"),
    _event("churn_batch_scoring.batch_transform", [f"{LAKE}/scoring_input/dt={DS}", VERSION["ModelPackageArn"]],
           [f"{STAGING}out"], "2026-07-02T04:00:00"),
    _event("churn_batch_scoring.publish_predictions", [f"{STAGING}out"], [f"{LAKE}/predictions/dt={DS}"],
           "2026-07-02T05:00:00"),
    _event("churn_batch_scoring.publish_predictions", [f"{STAGING}out"], [f"{LAKE}/predictions/dt={DS}"],
           "2026-07-02T06:00:00", state="FAIL"),
]


def test_upstream_of_a_predictions_partition_names_its_raw_partitions_code_and_model():
    trace = graph.Graph.of(CHAIN).upstream(("s3://churn-lake", f"predictions/dt={DS}"))
    found = trace.to_dict()
    assert found["sources"] == {"s3://churn-lake/raw/customers": ["dt=2026-07-01"],
                                "s3://churn-lake/raw/events": ["dt=2026-07-01"]}
    assert found["code_versions"] == ["v1"]
    assert found["model_versions"] == ["model-package/churn-xgboost/3"]
    assert [r["job"] for r in found["runs"]][0] == "churn_batch_scoring.publish_predictions"


def test_downstream_of_a_raw_partition_reaches_the_predictions():
    trace = graph.Graph.of(CHAIN).downstream(("s3://churn-lake", "raw/events/dt=2026-07-01"))
    assert ("s3://churn-lake", f"predictions/dt={DS}") in trace.datasets
    assert ("arn:aws:sagemaker:us-east-1:000000000000", "model-package/churn-xgboost/3") in trace.datasets


def test_the_newest_completed_run_is_what_produced_a_rewritten_dataset():
    rerun = _event("churn_batch_scoring.publish_predictions", [f"{LAKE}/_staging/predictions/dt={DS}/rerun/out"],
                   [f"{LAKE}/predictions/dt={DS}"], "2026-07-03T00:00:00")
    trace = graph.Graph.of([*CHAIN, rerun]).upstream(("s3://churn-lake", f"predictions/dt={DS}"))
    assert trace.runs[0].run_id == rerun["run"]["runId"]


def test_the_chain_is_one_connected_graph():
    assert len(graph.Graph.of(CHAIN).components()) == 1


def test_the_command_traces_from_a_folder_of_events(tmp_path, capsys, monkeypatch):
    from churn_ml.lineage import cli

    monkeypatch.setenv("CHURN_LAKE_BUCKET", "churn-lake")
    for n, event in enumerate(CHAIN):
        (tmp_path / f"{n}.json").write_text(json.dumps(event) + "\n")
    assert cli.main(["--events", str(tmp_path), "trace", f"predictions/dt={DS}"]) == 0
    out = capsys.readouterr().out
    assert "raw/events  dt=2026-07-01" in out and "model-package/churn-xgboost/3" in out and "v1" in out
    assert cli.main(["--events", str(tmp_path), "trace", "predictions/dt=1999-01-01"]) == 2


def test_no_plugin_module_runs_as_the_program():
    """Airflow's plugin loader imports every file of plugins/ under its own name (sys.modules[stem]): a
    ``__main__.py`` there would replace the running program's __main__ and run its main() in every
    Airflow process (it did: ``airflow api-server`` answered with the lineage CLI's usage)."""
    assert not list((REPO / "plugins").rglob("__main__.py"))


def test_a_runs_datasets_are_its_final_events_not_what_its_start_guessed():
    run_id = str(uuid.uuid4())
    start = _event("churn_features.report_features", [], [f"{LAKE}/features"], "2026-07-02T01:00:00", state="START",
                   run_id=run_id)
    end = _event("churn_features.report_features", [f"{LAKE}/_runs/churn_features/ds={DS}/summary.json"], [],
                 "2026-07-02T01:01:00", run_id=run_id)
    for order in ([start, end], [end, start]):
        node = graph.Graph.of(order).runs[run_id]
        assert (node.state, node.outputs) == ("COMPLETE", set())
        assert node.inputs == {("s3://churn-lake", f"_runs/churn_features/ds={DS}/summary.json")}
