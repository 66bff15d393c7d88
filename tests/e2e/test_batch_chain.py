"""End to end: the README's run command on a generated sample, twice, with airflow dags test.

Checks what a user relies on: every valid active customer of the day is scored, every injected
bad record is quarantined (no more, no fewer), the model clears AUC 0.75 on a holdout it never
saw, and running the same date again leaves every row count unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds_
import pytest

from churn.datagen import injected_bad_records
from support import free_port

REPO = Path(__file__).resolve().parents[2]
DS = "2026-07-02"
pytestmark = pytest.mark.e2e


def _run(env: dict) -> str:
    proc = subprocess.run(
        ["bash", str(REPO / "scripts/run_local.sh")], env=env, capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, f"run_local.sh failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def _lines(folder: Path, pattern: str) -> int:
    return sum(len([l for l in p.read_text().splitlines() if l.strip()]) for p in folder.glob(pattern))


def _parquet_rows(folder: Path) -> int:
    return ds_.dataset(folder, format="parquet", partitioning="hive").count_rows()


def _counts(lake: Path) -> dict:
    return {
        "clean_customers": _parquet_rows(lake / "clean/customers"),
        "clean_events": _parquet_rows(lake / "clean/events"),
        "errors": _lines(lake / "errors", "*/dt=*/*.json"),
        "features": _parquet_rows(lake / "features"),
        "labels": _parquet_rows(lake / "labels"),
        "scoring_input": _lines(lake / "scoring_input", "dt=*/*.csv"),
        "training_set": _lines(lake / f"training_sets/ds={DS}", "*/*.csv"),
        "predictions": _lines(lake / f"predictions/dt={DS}", "*.out"),
    }


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e")
    env = {
        **os.environ,
        "LAKE_ROOT": str(work / "lake"),
        "AIRFLOW_HOME": str(work / "airflow"),
        "ML_TARGET": "local",
        "CHURN_DS": DS,
        "CHURN_LOCAL_RUNTIME_PORT": str(free_port()),  # not the port a `make run` endpoint may hold
    }
    env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
    try:
        first = _run(env)
        lake = work / "lake" / "churn-lake"
        counts = _counts(lake)
        endpoint_first = _endpoint(env)
        second = _run(env)
        yield {"lake": lake, "first": first, "second": second, "counts": counts, "counts_again": _counts(lake),
               "endpoint_first": endpoint_first, "endpoint": _endpoint(env)}
    finally:
        subprocess.run([sys.executable, "-m", "churn_ml.local.endpoints", "delete", "--all"], env=env, timeout=120)



def _endpoint(env: dict) -> dict:
    proc = subprocess.run([sys.executable, "-m", "churn_ml.local.endpoints", "describe", "churn-xgboost"],
                          env={**env, "PYTHONPATH": str(REPO / "plugins")}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_every_valid_active_customer_is_scored(chain):
    lake = chain["lake"]
    customers = ds_.dataset(lake / "clean/customers", format="parquet", partitioning="hive").to_table().to_pylist()
    events = ds_.dataset(lake / "clean/events", format="parquet", partitioning="hive").to_table(
        filter=ds_.field("event_type") == "cancellation"
    ).to_pylist()
    day = dt.date.fromisoformat(DS)
    cancelled = {e["customer_id"] for e in events if e["event_ts"].date() < day}
    expected = {c["customer_id"] for c in customers if c["signup_date"] < day} - cancelled
    rows = [l.split(",") for p in (lake / f"predictions/dt={DS}").glob("*.out") for l in p.read_text().splitlines() if l]
    scored = [r[0] for r in rows]
    assert len(scored) == len(set(scored)), "a customer was scored twice"
    assert set(scored) == expected
    assert all(0.0 <= float(r[1]) <= 1.0 for r in rows)


def test_quarantine_holds_exactly_the_injected_bad_records(chain):
    lake = chain["lake"]
    manifest = json.loads((lake / "raw/_generator_manifest.json").read_text())
    summary = json.loads((lake / f"_runs/churn_features/ds={DS}/summary.json").read_text())
    for entity in ("customers", "events"):
        days = sorted(summary["entities"][entity]["partitions"])
        injected = injected_bad_records(manifest, entity, days[0], days[-1])
        quarantined = _lines(lake / "errors" / entity, "dt=*/*.json")
        assert injected > 0
        assert quarantined == summary["entities"][entity]["quarantined"] == injected, entity


def test_model_clears_the_holdout_bar(chain):
    model = json.loads((chain["lake"] / "models/churn/latest.json").read_text())
    metrics = model["metrics"]
    assert metrics["holdout:auc"] >= 0.75
    assert metrics["holdout:auc"] > metrics["holdout:best_single_feature_auc"] + 0.02
    assert re.search(r"holdout\s+AUC 0\.\d{4}", chain["first"]) and "customers scored" in chain["first"]


def test_training_was_tuned_interrupted_on_spot_gated_and_registered(chain):
    lake = chain["lake"]
    model = json.loads((lake / "models/churn/latest.json").read_text())
    control = lake.parent / ".control-plane/sagemaker"
    job = json.loads((control / "training-jobs" / model["training_job_name"] / "describe.json").read_text())
    assert [t["Status"] for t in job["SecondaryStatusTransitions"]].count("Interrupted") == 1
    assert job["BillableTimeInSeconds"] <= job["TrainingTimeInSeconds"]
    tuned = sorted(p.name for p in (control / "tuning-jobs").iterdir())
    assert tuned and all(p.startswith("churn-hpo-") for p in tuned)
    versions = sorted((lake / "registry/churn-xgboost").iterdir())
    assert len(versions) == 2  # one per run; the rerun was compared with the first as champion
    second = json.loads((versions[1] / "package.json").read_text())
    assert second["ModelApprovalStatus"] in ("Approved", "Rejected") and "champion" in second["ApprovalDescription"]
    assert (versions[0] / "model_card.png").read_bytes()[:4] == b"\x89PNG"
    assert "registry" in chain["first"] and "spot training    1 interruption(s)" in chain["first"]


def test_rerunning_the_same_date_changes_no_row_count(chain):
    assert chain["counts"]["predictions"] > 0
    assert chain["counts_again"] == chain["counts"]


def test_the_approved_model_is_deployed_blue_green_and_answers_like_batch_transform(chain):
    first, now = chain["endpoint_first"], chain["endpoint"]
    model = json.loads((chain["lake"] / "models/churn/latest.json").read_text())
    assert first["EndpointStatus"] == now["EndpointStatus"] == "InService"
    assert now["Local"]["ModelPackageVersion"] == str(model["model_package_version"])  # the published (approved) one
    assert len(now["Local"]["Instances"]) == 2
    if now["EndpointConfigName"] != first["EndpointConfigName"]:  # the second model was approved: blue/green
        assert now["Local"]["LastDeployment"]["Status"] == "Succeeded"
        assert now["Local"]["Standby"] == first["EndpointConfigName"]
    # The run summary scored customers through boto3's sagemaker-runtime client against the endpoint.
    assert re.search(r"5 customers scored through boto3 sagemaker-runtime .*: 5 match batch transform", chain["second"])
