"""The DAGs as the scheduler builds them on the aws target, and their tasks rendered for one date
(for the infrastructure tests; not a test module itself)."""

from __future__ import annotations

import copy
from collections import defaultdict
from functools import cache
from pathlib import Path

import pendulum
import pytest
from airflow.sdk import macros

from churn_ml import artifacts
from churn_ml import dag_support as ds

REPO = Path(__file__).resolve().parents[2]
LAKE_BUCKET, ARTIFACTS_BUCKET = "churn-lake", "churn-artifacts"
LAKE_ROOT = f"s3://{LAKE_BUCKET}"
DS = "2026-07-06"
CODE_VERSION = artifacts.fingerprint(REPO / "include")
MODEL_URL = f"{LAKE_ROOT}/{ds.MODELS}churn-xgb-20260706-aaaa/output/model.tar.gz"  # where train_model writes
XCOMS = {
    "inspect_training_set": {"fingerprint": "f1"},
    "resolve_champion": {"model_data_url": MODEL_URL, "warm_start": ""},
    "tune_hyperparameters": {"Tuning": {"BestTrainingJob": {"TunedHyperParameters": {}}}},
    "resolve_model": {"model_data_url": MODEL_URL},
    "publish_model": {"model_data_url": MODEL_URL, "model_package_version": 1,
                      "evaluation_uri": MODEL_URL.replace("model.tar.gz", "evaluation.json")},
    "resolve_baseline": {"model_package_version": 1,
                         "baseline_uri": f"{LAKE_ROOT}/{ds.REGISTRY}churn-xgboost/baselines/churn-xgb-20260706-aaaa/baseline.json"},
    "decide": {"retrain": True, "reason": "drift of tenure_days on 3 consecutive days"},
    "write_report": {"report": f"{LAKE_ROOT}/{ds.MONITORING_REPORTS}dt={DS}/report.html", "retrain": True},
}


class _TI:
    def __init__(self, task) -> None:
        self.task_id, self.dag_id, self.run_id, self.map_index, self.try_number = (
            task.task_id, task.dag_id, "scheduled__2026-07-06T00:00:00+00:00", -1, 1)

    def xcom_pull(self, task_ids=None, key="return_value", **_):
        value = XCOMS.get(task_ids, {})
        if task_ids == "tune_hyperparameters":
            return {"Tuning": {"BestTrainingJob": {"TunedHyperParameters": defaultdict(lambda: "1")}}}
        return value


@cache
def dags(backend: str) -> dict:
    """The DAGs as the scheduler parses them on the aws target with this Spark backend."""
    from airflow.dag_processing.dagbag import DagBag

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ML_TARGET", "aws")
        mp.setenv("CHURN_SPARK_BACKEND", backend)
        mp.setenv("CHURN_LAKE_BUCKET", LAKE_BUCKET)
        mp.setenv("CHURN_ARTIFACTS_BUCKET", ARTIFACTS_BUCKET)
        bag = DagBag(dag_folder=str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags


def render(task):
    """The task's templated fields rendered as the scheduler would for DS (a copy; the DAG is cached)."""
    task = copy.deepcopy(task)
    dag = task.dag
    context = {"ds": DS, "ds_nodash": DS.replace("-", ""), "logical_date": pendulum.parse(DS),
               "run_id": "scheduled__2026-07-06T00:00:00+00:00", "params": {k: dag.params[k] for k in dag.params},
               "macros": macros, "dag": dag, "task": task, "ti": _TI(task)}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ML_TARGET", "aws")
        mp.setenv("CHURN_LAKE_BUCKET", LAKE_BUCKET)
        mp.setenv("CHURN_ARTIFACTS_BUCKET", ARTIFACTS_BUCKET)
        # What code/CURRENT.json says after a deploy of this tree (reading it is tests/unit/test_code_versions_aws.py's).
        mp.setattr(artifacts, "current_version", lambda: CODE_VERSION)
        for name in ("CHURN_SAGEMAKER_ROLE_ARN", "CHURN_XGBOOST_IMAGE_URI", "CHURN_EMR_APPLICATION_ID",
                     "CHURN_EMR_EXECUTION_ROLE_ARN", "CHURN_ALERTS_TOPIC_ARN"):
            mp.setenv(name, "x")
        task.render_template_fields(context)
    return task, context
