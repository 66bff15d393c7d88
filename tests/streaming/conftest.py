"""A small world for the streaming tests: generated events, feature snapshots, a deployed endpoint,
the Kinesis emulator. Built once per module; every process it starts is stopped at teardown."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds_
import pytest

from churn import datagen, features
from local_aws import control_plane, endpoints, lake_files
from local_aws.training import run_training_job
from support import free_port, model_request, training_request

REPO = Path(__file__).resolve().parents[2]
# The in-process SparkSession these tests use (tests/conftest.py's `spark`) binds its driver like any local
# Spark: to the machine's network address when the hostname resolves to loopback, unless SPARK_LOCAL_IP
# says otherwise (scripts/env.sh exports it; a bare `pytest` has no env.sh). Set before any session starts:
# conftest files are imported at collection. The jobs' spark-submit runs get loopback from the runner.
os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
START, DAYS = dt.date(2026, 3, 1), 100
EVENT_DAY = START + dt.timedelta(days=DAYS - 1)  # the last generated day: its events are replayed
DS = EVENT_DAY + dt.timedelta(days=1)
LOG = logging.getLogger("test")


def _label(row) -> int:
    """A deterministic stand-in label: the tests need a model of these 19 features, not a good one."""
    return int(row["days_since_last_usage"] > 5 or row["payment_failures_30d"] > 0 or row["tickets_30d"] > 2)


def _channels(feats) -> None:
    frame = feats.to_pandas()
    frame.insert(0, "churned_30d", frame.apply(_label, axis=1))
    frame = frame[["churned_30d", *features.FEATURE_COLUMNS]].sample(frac=1.0, random_state=0)
    parts = {"train": frame.iloc[: len(frame) // 2], "validation": frame.iloc[len(frame) // 2: 3 * len(frame) // 4],
             "holdout": frame.iloc[3 * len(frame) // 4:]}
    for name, part in parts.items():
        path = lake_files.local_path(f"s3://churn-lake/ts/{name}/part-00000.csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        part.to_csv(path, index=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory, spark):
    """LAKE_ROOT with raw events, features for EVENT_DAY and DS, a deployed endpoint and the emulator."""
    work = tmp_path_factory.mktemp("streaming")
    env = {
        "LAKE_ROOT": str(work / "lake"), "ML_TARGET": "local",
        "CHURN_LOCAL_RUNTIME_PORT": str(free_port()), "CHURN_LOCAL_AWS_PORT": str(free_port()),
        "CHURN_STREAMING_TRIGGER_SECONDS": "1",
        # The tests replay one day in seconds: a day of event time is what "within the watermark" means here.
        "CHURN_STREAMING_ALLOWED_LATENESS_SECONDS": "86400", "CHURN_LOCAL_SPARK_MEMORY": "1g", "CHURN_JOB_POLL_SECONDS": "1",
        "CHURN_ENDPOINT_NAME": "churn-stream-test", "CHURN_KINESIS_STREAM": "churn-events-test",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        raw = work / "lake" / "churn-lake" / "raw"
        datagen.main(["--out", str(raw), "--customers", "1200", "--days", str(DAYS), "--start", START.isoformat(),
                      "--seed", "11", "--bad-fraction", "0.02"])
        sys.path.insert(0, str(REPO / "include" / "jobs"))
        import churn_features

        churn_features.run(spark, argparse.Namespace(
            ds=DS, lake=lake_files.local_uri("s3://churn-lake"), history_days=1, max_bad_fraction=0.5, min_bad_records=5))
        feats = ds_.dataset(work / "lake/churn-lake/features", format="parquet", partitioning="hive").to_table()
        _channels(feats)
        request = training_request(num_round="30", max_depth="3")
        request["TrainingJobName"] = "stream-test-model"
        trained = run_training_job(request, LOG)
        model_url = trained["ModelArtifacts"]["S3ModelArtifacts"]
        endpoints.deploy({
            "Model": model_request("stream-test-model", model_url),
            "EndpointConfig": {
                "EndpointConfigName": "churn-stream-test-v1",
                "ProductionVariants": [{"VariantName": "primary", "ModelName": "stream-test-model",
                                        "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}],
            },
            "Endpoint": {"EndpointName": env["CHURN_ENDPOINT_NAME"], "EndpointConfigName": "churn-stream-test-v1"},
        }, LOG)
        control_plane.ensure_server()  # the AWS APIs the DAG's tasks call, Kinesis included
        patch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(control_plane.connection(role=None)))  # in-process hooks too
        try:
            yield {"work": work, "raw": raw, "lake": work / "lake" / "churn-lake", "env": {**os.environ, **env},
                   "model_url": model_url}
        finally:
            from churn_ml.settings import settings
            from local_aws.glue_streaming import stop_job_run

            stop_job_run(settings.streaming_job_name, LOG, timeout=30)
            control_plane.stop_server()
            endpoints.main(["delete", "--all"])


def airflow_env(world: dict) -> dict:
    """Environment for `airflow dags test` against the world's lake, endpoint and emulator."""
    home = world["work"] / "airflow"
    return {
        **world["env"],
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins"), str(REPO / "include"),
                                       os.environ.get("PYTHONPATH", "")]),
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(control_plane.connection()),
    }


def dags_test(world: dict, dag_id: str, logical_date: str) -> str:
    env = airflow_env(world)
    if not (world["work"] / "airflow" / "airflow.db").exists():
        migrate = subprocess.run(["airflow", "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
        assert migrate.returncode == 0, migrate.stderr[-3000:]
    run = subprocess.run(["airflow", "dags", "test", dag_id, logical_date], env=env, capture_output=True,
                         text=True, timeout=600)
    return run.stdout + run.stderr


def read_json_lines(folder: Path, pattern: str) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.glob(pattern)) for line in path.read_text().splitlines() if line]
