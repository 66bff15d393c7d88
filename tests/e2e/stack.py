"""What the end-to-end tests share: the sample's date, reading predictions, and driving the stack's Airflow."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from airflow_runs import FINISHED, Airflow  # noqa: E402

DS = "2026-07-02"  # the day after the sample's last raw partition (182 days from 2026-01-01)


def day(offset: int) -> str:
    return (dt.date.fromisoformat(DS) + dt.timedelta(days=offset)).isoformat()


def predictions(lake: Path, ds: str) -> list[list[str]]:
    """The published prediction rows of a date ([customer_id, score]); [] when the partition is missing."""
    rows = []
    for path in sorted((lake / f"predictions/dt={ds}").glob("*.out")):
        try:
            rows += [line.split(",") for line in path.read_text().splitlines() if line]
        except FileNotFoundError:
            pass
    return rows


def airflow(stack: dict) -> Airflow:
    return Airflow(f"http://127.0.0.1:{stack['env']['CHURN_AIRFLOW_PORT']}")


def aws(stack: dict, service: str):
    """A boto3 client of the stack's control plane (the local target's AWS)."""
    import boto3

    from local_aws.common import credentials
    from local_aws.control_plane import REGION

    return boto3.client(service, endpoint_url=f"http://127.0.0.1:{stack['env']['CHURN_LOCAL_AWS_PORT']}",
                        region_name=REGION, **credentials(Path(stack["env"]["LAKE_ROOT"])).as_client_kwargs())


def registered(stack: dict, group: str = "churn-xgboost") -> list[dict]:
    """The group's model package versions, oldest first, described (the registry's API)."""
    sagemaker = aws(stack, "sagemaker")
    summaries = sagemaker.list_model_packages(ModelPackageGroupName=group, SortOrder="Ascending")["ModelPackageSummaryList"]
    return [sagemaker.describe_model_package(ModelPackageName=s["ModelPackageArn"]) for s in summaries]


def run_cli(stack: dict, *args: str, timeout: float = 300) -> str:
    """An `airflow` CLI command against the stack's database, as a person types it."""
    proc = subprocess.run(["airflow", *args], env=stack["env"], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"airflow {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def backfill(stack: dict, dag_id: str, first: str, last: str, *options: str, timeout: float = 1800) -> dict[str, dict]:
    """`airflow backfill create` over [first, last], then wait until the scheduler marks it complete
    (Airflow allows one running backfill per DAG); returns each date's run."""
    client = airflow(stack)
    run_cli(stack, "backfill", "create", "--dag-id", dag_id, "--from-date", first, "--to-date", last, *options)
    deadline = time.monotonic() + timeout
    while any(b["completed_at"] is None for b in client.backfills(dag_id)):
        if time.monotonic() > deadline:
            raise AssertionError(f"the backfill of {dag_id} {first}..{last} did not complete within {timeout:.0f} s")
        time.sleep(3)
    days = [d.isoformat() for d in _dates(first, last)]
    return {d: client.run_for(dag_id, d) for d in days}


def _dates(first: str, last: str) -> list[dt.date]:
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def wait_for_runs(client: Airflow, dag_id: str, days: list[str], *, timeout: float = 1200,
                  newer_than: dict[str, dict] | None = None) -> dict[str, dict]:
    """Wait until each date has a finished run (started after ``newer_than``'s run of it ended, if given)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = {d: client.run_for(dag_id, d) for d in days}
        done = {
            d: r for d, r in runs.items()
            if r and r["state"] in FINISHED
            and (newer_than is None or (r.get("start_date") or "") > (newer_than[d].get("end_date") or ""))
        }
        if len(done) == len(days):
            return done
        if time.monotonic() > deadline:
            raise AssertionError(f"{dag_id}: runs of {days} not finished after {timeout:.0f} s: "
                                 f"{ {d: r and r['state'] for d, r in runs.items()} }")
        time.sleep(3)


def copy_include(work: Path) -> Path:
    """A copy of the repository's include/ under ``work``, which the stack's jobs run from
    (``CHURN_INCLUDE_DIR``): a test may change the code there without touching the repository."""
    target = work / "include"
    shutil.copytree(REPO / "include", target, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".ruff_cache"))
    return target


def deploy_code(stack: dict) -> str:
    """Deploy the stack's include/ (``CHURN_INCLUDE_DIR``) after a change of it, as a person does
    (``make deploy-local``: ``python -m local_aws.code_deploy``; infra/deploy_mwaa.py on AWS); returns
    what the command printed."""
    proc = subprocess.run(["bash", "-c", ". scripts/env.sh && python -m local_aws.code_deploy"], cwd=REPO,
                          env=stack["env"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"the local deploy failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def stack_env(work: Path, airflow_port: int, runtime_port: int, aws_port: int) -> dict:
    """The environment of a stack under ``work``: its own lake, Airflow home, ports and copy of include/
    (copied here, before the stack starts, so that its deploy, scripts/stack.sh start, deploys the copy)."""
    env = {
        **os.environ,
        "LAKE_ROOT": str(work / "lake"),
        "AIRFLOW_HOME": str(work / "airflow"),
        "ML_TARGET": "local",
        "CHURN_DS": DS,
        "CHURN_AIRFLOW_PORT": str(airflow_port),
        "CHURN_LOCAL_RUNTIME_PORT": str(runtime_port),  # not the port a `make run` endpoint may hold
        "CHURN_LOCAL_AWS_PORT": str(aws_port),  # nor its control plane
        "CHURN_INCLUDE_DIR": str(copy_include(work)),
    }
    # scripts/env.sh derives these from AIRFLOW_HOME and the port: never inherit another stack's.
    for name in list(env):
        if name.startswith(("AIRFLOW__", "PG_SOCKET_DIR")):
            env.pop(name)
    return env
