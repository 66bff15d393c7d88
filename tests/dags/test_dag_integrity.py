"""DAG integrity: imports, conventions, light parsing, and one graph for every target."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from functools import cache
from itertools import pairwise
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((REPO / "dags").glob("*.py"))
EXPECTED_DAGS = {"churn_features", "churn_training", "churn_batch_scoring", "churn_monitoring", "churn_streaming",
                 "churn_streaming_stop"}
# Checks that run every few minutes (or only by hand): the next run is the retry, so no retries.
NO_RETRIES = {"churn_streaming", "churn_streaming_stop"}
HEAVY_TOP_LEVEL = {"boto3", "botocore", "sagemaker", "pyspark", "xgboost", "pandas", "numpy", "sklearn"}


@cache
def describe(target: str, backend: str = "emr_serverless") -> dict:
    env = {**os.environ, "ML_TARGET": target, "CHURN_SPARK_BACKEND": backend}
    for name in ("CHURN_TASK_RETRIES", "CHURN_RETRY_DELAY_SECONDS"):
        env.pop(name, None)  # the deployed defaults
    out = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("describe_dags.py"))],
        env=env, capture_output=True, text=True, check=True, timeout=300,
    )
    line = next(row for row in out.stdout.splitlines() if row.startswith("DAG_REPORT "))
    return json.loads(line[len("DAG_REPORT "):])


def test_no_import_errors_and_all_dags_present():
    report = describe("local")
    assert report["import_errors"] == {}
    assert set(report["dags"]) == EXPECTED_DAGS


def test_no_heavy_modules_loaded_at_parse_time(record_property):
    """Parse times are reported (`pytest -s`, junit XML), not asserted: a wall-clock bound fails on a
    busy machine. What makes a parse slow is checked here (heavy imports), and a parse slower than
    Airflow's dagbag_import_timeout is an import error, which test_no_import_errors_and_all_dags_present
    catches."""
    report = describe("local")
    print("\nDAG file parse times (fresh interpreter, first file pays the provider import):")
    for name, info in report["files"].items():
        print(f"  {name:28s} {info['parse_seconds']:.3f}s")
        record_property(f"parse_seconds {name}", info["parse_seconds"])
        assert info["heavy_modules"] == [], f"{name} loads {info['heavy_modules']} at parse time"


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_conventions(dag_id):
    dag = describe("local")["dags"][dag_id]
    assert "churn" in dag["tags"] and len(dag["tags"]) >= 2
    assert dag["has_doc"], "module docstring must be the DAG's doc_md"
    assert dag["catchup"] is False and dag["max_active_runs"] >= 1
    for task_id, task in dag["tasks"].items():
        assert task["owner"] == "ml-platform", task_id
        assert task["retries"] == 0 if dag_id in NO_RETRIES else task["retries"] >= 2, task_id


def test_graph_is_identical_for_every_target_and_spark_backend():
    local = describe("local")["dags"]
    assert describe("aws")["dags"] == local
    assert describe("local", "glue")["dags"] == local
    assert describe("aws", "glue")["dags"] == local


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_no_heavy_imports_or_variable_get_at_module_level(path):
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            heavy = {n.split(".")[0] for n in names} & HEAVY_TOP_LEVEL
            assert not heavy, f"{path.name}:{node.lineno} imports {heavy} at module level"
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Attribute) and sub.attr == "get" and getattr(sub.value, "id", "") == "Variable":
                    pytest.fail(f"{path.name}:{sub.lineno} calls Variable.get at module level")


def test_training_tunes_trains_gates_registers_publishes_and_deploys_only_through_the_gate():
    tasks = describe("local")["dags"]["churn_training"]["tasks"]
    order = ["resolve_champion", "tune_hyperparameters", "train_model", "quality_gate", "register_model",
             "approved", "publish_model", "deploy_model"]
    for upstream, downstream in pairwise(order):
        assert downstream in tasks[upstream]["downstream"], f"{upstream} -> {downstream}"
    assert tasks["tune_hyperparameters"]["operator"] == "ChurnTuningOperator"
    assert tasks["approved"]["operator"] == "_ShortCircuitDecoratedOperator"
    # publish_model is downstream of the short-circuit (which skips everything after it when Rejected).
    assert sorted(t for t, info in tasks.items() if "publish_model" in info["downstream"]) == ["approved", "register_model"]
    # deploy_model runs only after publish_model, so only for an Approved model.
    assert [t for t, info in tasks.items() if "deploy_model" in info["downstream"]] == ["publish_model"]
    assert tasks["deploy_model"]["operator"] == "EndpointDeployOperator"


def _descendants(tasks: dict, task_id: str) -> set[str]:
    found, todo = set(), list(tasks[task_id]["downstream"])
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo.extend(tasks[current]["downstream"])
    return found


def test_monitoring_alerts_and_retrains_after_the_decision_whatever_becomes_of_the_report():
    """A report that fails to render or upload must not hold back the alert or the retraining: neither
    descends from write_report, and they run on the decision (all_success all the way from decide)."""
    tasks = describe("local")["dags"]["churn_monitoring"]["tasks"]
    order = ["wait_for_predictions", "resolve_baseline", "monitor", "decide", "decay_detected"]
    for upstream, downstream in pairwise(order):
        assert downstream in tasks[upstream]["downstream"], f"{upstream} -> {downstream}"
    assert tasks["decide"]["downstream"] == ["decay_detected", "write_report"]
    assert tasks["decay_detected"]["downstream"] == ["alert", "trigger_retraining"]
    assert tasks["decay_detected"]["operator"] == "_ShortCircuitDecoratedOperator"
    assert _descendants(tasks, "write_report") == {"run_cost"} and tasks["run_cost"]["is_teardown"]
    for task_id in ("decay_detected", "alert", "trigger_retraining"):
        assert tasks[task_id]["trigger_rule"] == "all_success", task_id
        upstream = [t for t, info in tasks.items() if task_id in info["downstream"]]
        assert upstream == (["decide"] if task_id == "decay_detected" else ["decay_detected"]), (task_id, upstream)


def test_streaming_dag_ensures_endpoint_then_job_then_health_and_never_stops_the_job():
    dags = describe("local")["dags"]
    streaming = dags["churn_streaming"]
    assert streaming["max_active_runs"] == 1 and "*/5 * * * *" in streaming["schedule"]
    tasks = streaming["tasks"]
    assert tasks["ensure_endpoint"]["downstream"] == ["check_health", "ensure_streaming_job"]
    assert tasks["ensure_streaming_job"]["downstream"] == ["check_health"]
    assert not any("stop" in task_id for task_id in tasks)
    stop = dags["churn_streaming_stop"]
    assert list(stop["tasks"]) == ["stop_streaming_job"] and "NullTimetable" in stop["schedule"]


# The DAGs whose tasks start billed jobs, and their last tasks: run_cost comes after these.
JOB_DAGS = {"churn_features": ["report_features"], "churn_training": ["deploy_model"],
            "churn_batch_scoring": ["check_predictions"],
            "churn_monitoring": ["alert", "record_costs", "trigger_retraining", "write_report"]}


def test_every_dag_that_starts_jobs_ends_with_its_run_cost_as_a_teardown():
    """run_cost logs the run's total from the ledger: a teardown after the last tasks, so it runs whatever their end
    (failed jobs are billed too) and a short circuit does not skip it, while the run's state stays theirs."""
    dags = describe("local")["dags"]
    for dag_id, last in JOB_DAGS.items():
        tasks = dags[dag_id]["tasks"]
        assert tasks["run_cost"]["is_teardown"] and tasks["run_cost"]["trigger_rule"] == "all_done_setup_success", dag_id
        assert tasks["run_cost"]["downstream"] == [], dag_id
        assert sorted(t for t, info in tasks.items() if "run_cost" in info["downstream"]) == last, dag_id
        assert [t for t, info in tasks.items() if info["is_teardown"]] == ["run_cost"], dag_id
