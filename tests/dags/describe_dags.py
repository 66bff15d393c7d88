"""Parse dags/ in a fresh interpreter and print the graphs as JSON (used by test_dag_integrity).

Run in a subprocess so that ML_TARGET / CHURN_SPARK_BACKEND and the modules a parse loads are
those of a real scheduler parse, not of the test session.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "plugins"))

from airflow.dag_processing.dagbag import DagBag  # noqa: E402 (after the sys.path set-up above)

HEAVY = ("pyspark", "xgboost", "sklearn", "sagemaker", "pandas", "optuna", "matplotlib")

report: dict = {"files": {}, "dags": {}, "import_errors": {}}
for path in sorted((REPO / "dags").glob("*.py")):
    before = set(sys.modules)
    started = time.perf_counter()
    bag = DagBag(dag_folder=str(path))
    seconds = time.perf_counter() - started
    loaded = sorted({m.split(".")[0] for m in set(sys.modules) - before} & set(HEAVY))
    report["files"][path.name] = {"parse_seconds": round(seconds, 3), "heavy_modules": loaded}
    report["import_errors"].update({Path(k).name: str(v) for k, v in bag.import_errors.items()})
    for dag_id, dag in bag.dags.items():
        report["dags"][dag_id] = {
            "file": path.name,
            "schedule": f"{type(dag.timetable).__name__}: {dag.schedule}",
            "tags": sorted(dag.tags),
            "catchup": dag.catchup,
            "max_active_runs": dag.max_active_runs,
            "has_doc": bool(dag.doc_md),
            "tasks": {
                t.task_id: {
                    "downstream": sorted(t.downstream_task_ids),
                    "owner": t.owner,
                    "retries": t.retries,
                    "trigger_rule": getattr(t.trigger_rule, "value", t.trigger_rule),
                    "is_teardown": bool(getattr(t, "is_teardown", False)),
                    "operator": type(t).__name__ if type(t).__name__ not in ("SparkOnEmrServerlessOperator", "SparkOnGlueOperator") else "SparkJob",
                }
                for t in dag.tasks
            },
        }
print("DAG_REPORT " + json.dumps(report, sort_keys=True))
