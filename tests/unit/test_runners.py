"""Local runners: the training contract, batch transform semantics, names, filters, artifacts."""

from __future__ import annotations

import logging
import os
import tarfile

import numpy as np
import pytest

from churn_ml import naming
from local_aws import lake_files
from local_aws.training import run_training_job, validate_request
from local_aws.transform import apply_csv_filter, parse_csv_filter, run_transform_job
from support import FEATURES, model_request
from support import training_request as _training_request
from support import write_channel as _write_channel

LOG = logging.getLogger("test")
@pytest.fixture
def trained(lake_root):
    rng = np.random.default_rng(0)
    for name in ("train", "validation", "holdout"):
        _write_channel(lake_root, name, rng)
    return run_training_job(_training_request(), LOG)


def test_training_runner_follows_the_sagemaker_contract(trained, lake_root):
    from test_training_history import assert_sagemaker_shaped

    assert trained["TrainingJobStatus"] == "Completed"
    assert [t["Status"] for t in trained["SecondaryStatusTransitions"]] == [
        "Starting", "Downloading", "Training", "Uploading", "Completed",
    ]
    assert_sagemaker_shaped(trained)
    metrics = {m["MetricName"]: m["Value"] for m in trained["FinalMetricDataList"]}
    assert 0.8 < metrics["holdout:auc"] <= 1.0 and "validation:auc" in metrics
    artifact = lake_files.local_path(trained["ModelArtifacts"]["S3ModelArtifacts"])
    assert artifact == lake_root / "churn-lake/models/test/test-train/output/model.tar.gz"
    with tarfile.open(artifact) as tar:
        assert sorted(tar.getnames()) == ["evaluation.json", "xgboost-model.json"]
    opt_ml = lake_root / ".control-plane/sagemaker/training-jobs/test-train/opt_ml"
    assert (opt_ml / "input/config/hyperparameters.json").exists()
    assert sorted(p.name for p in (opt_ml / "input/data").iterdir()) == ["holdout", "train", "validation"]


def test_a_completed_job_is_reattached_not_rerun(trained):
    again = run_training_job(_training_request(), LOG)
    assert again == trained


def test_bad_requests_fail_before_any_work(lake_root):
    with pytest.raises(ValueError, match="must be strings"):
        validate_request({**_training_request(), "HyperParameters": {"num_round": 20}})
    with pytest.raises(ValueError, match="missing"):
        validate_request({"TrainingJobName": "x"})


def test_failing_training_reports_the_reason(lake_root):
    rng = np.random.default_rng(0)
    for name in ("train", "validation", "holdout"):
        _write_channel(lake_root, name, rng)
    request = _training_request(max_depth="99")
    request["TrainingJobName"] = "bad-depth"
    with pytest.raises(RuntimeError, match="max_depth must be within"):
        run_training_job(request, LOG)


def _transform_config(trained, name: str, **transform) -> dict:
    return {
        "Model": model_request("m", trained["ModelArtifacts"]["S3ModelArtifacts"]),
        "Transform": {
            "TransformJobName": name,
            "ModelName": "m",
            "BatchStrategy": "MultiRecord",
            "MaxPayloadInMB": 1,
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://churn-lake/scoring_input/dt=2026-03-01/"}},
                "ContentType": "text/csv",
                "SplitType": "Line",
            },
            "TransformOutput": {"S3OutputPath": "s3://churn-lake/predictions/dt=2026-03-01/", "Accept": "text/csv"},
            "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
            "DataProcessing": {"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
            **transform,
        },
    }


def _inputs(parts: dict[str, list[str]]) -> None:
    for part, rows in parts.items():
        path = lake_files.local_path(f"s3://churn-lake/scoring_input/dt=2026-03-01/{part}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(rows) + "\n")


def test_batch_transform_joins_ids_and_scores(trained, lake_root):
    _inputs({"part-00000.csv": [f"C{i},{i / 10:.1f},0.5,-1.0" for i in range(25)]})
    lake_files.local_path("s3://churn-lake/scoring_input/dt=2026-03-01/_SUCCESS").write_text("")
    result = run_transform_job(_transform_config(trained, "t1"), LOG)
    assert result["Transform"]["TransformJobStatus"] == "Completed"
    assert result["Model"]["ModelName"] == "m"
    out = lake_files.local_path("s3://churn-lake/predictions/dt=2026-03-01/part-00000.csv.out").read_text().splitlines()
    assert [line.split(",")[0] for line in out] == [f"C{i}" for i in range(25)]
    scores = [float(line.split(",")[1]) for line in out]
    assert all(0.0 <= s <= 1.0 for s in scores) and scores[-1] > scores[0]  # f1 drives the label up


def test_concurrent_transforms_split_the_objects_and_a_bad_object_fails_the_job(trained, lake_root):
    parts = {f"part-{i:05d}.csv": [f"C{i}-{j},{j / 10:.1f},0.5,-1.0" for j in range(40 + i)] for i in range(3)}
    _inputs(parts)
    result = run_transform_job(_transform_config(trained, "t2", MaxConcurrentTransforms=2), LOG)["Transform"]
    assert result["LocalWorkers"] == min(2, os.cpu_count() or 1)
    for part, rows in parts.items():
        out = lake_files.local_path(f"s3://churn-lake/predictions/dt=2026-03-01/{part}.out").read_text().splitlines()
        assert [line.split(",")[0] for line in out] == [row.split(",")[0] for row in rows]
    _inputs({"part-00001.csv": ["C1,0.1,oops,-1.0"]})
    with pytest.raises(RuntimeError, match="non-numeric value 'oops'"):
        run_transform_job(_transform_config(trained, "t3", MaxConcurrentTransforms=2), LOG)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [("$", ["a", "b", "c", "d"]), ("$[1:]", ["b", "c", "d"]), ("$[0,-1]", ["a", "d"]), ("$[2]", ["c"]), ("$[:2]", ["a", "b"])],
)
def test_csv_filters(expression, expected):
    assert apply_csv_filter(["a", "b", "c", "d"], parse_csv_filter(expression)) == expected


def test_unsupported_filter_is_refused():
    with pytest.raises(ValueError, match="unsupported filter"):
        parse_csv_filter("$.features")


def test_job_names_are_deterministic_and_content_addressed():
    a = naming.job_name("churn-xgb", "churn_training", "2026-07-02T00:00:00+00:00", {"x": 1})
    assert a == naming.job_name("churn-xgb", "churn_training", "2026-07-02T00:00:00+00:00", {"x": 1})
    assert a.startswith("churn-xgb-20260702-") and len(a) <= 63
    assert a != naming.job_name("churn-xgb", "churn_training", "2026-07-02T00:00:00+00:00", {"x": 2})
    assert a != naming.job_name("churn-xgb", "churn_training", "2026-07-03T00:00:00+00:00", {"x": 1})
    assert len(naming.job_name("p" * 80, "d", "2026-07-02", {})) <= 63


def _spot_request(name: str, **hyperparameters):
    request = _training_request(
        num_round="120", checkpoint_every="10", log_every="1", subsample="0.8", colsample_bytree="0.8", seed="7",
        **hyperparameters,
    )
    request.update(
        TrainingJobName=name,
        EnableManagedSpotTraining=True,
        StoppingCondition={"MaxRuntimeInSeconds": 300, "MaxWaitTimeInSeconds": 600},
        CheckpointConfig={"S3Uri": f"s3://churn-lake/checkpoints/{name}/", "LocalPath": "/opt/ml/checkpoints"},
    )
    return request


def _predictions(describe, rows):
    import xgboost as xgb

    with tarfile.open(lake_files.local_path(describe["ModelArtifacts"]["S3ModelArtifacts"])) as tar:
        model = bytearray(tar.extractfile("xgboost-model.json").read())
    return xgb.Booster(model_file=model).predict(xgb.DMatrix(rows, feature_names=FEATURES))


def test_spot_job_interrupted_twice_resumes_to_the_same_model(lake_root, monkeypatch):
    """SIGTERM at round 35 (finishes its interval and saves), then SIGKILL at round 75 (no notice)."""
    monkeypatch.setenv("CHURN_LOCAL_SPOT_RESTART_SECONDS", "0")
    monkeypatch.setenv("CHURN_LOCAL_SPOT_NOTICE_SECONDS", "30")
    rng = np.random.default_rng(1)
    for name in ("train", "validation", "holdout"):
        _write_channel(lake_root, name, rng, rows=3000)
    steady = run_training_job(_spot_request("spot-steady"), LOG, interruptions="")
    interrupted = run_training_job(_spot_request("spot-interrupted"), LOG, interruptions="35,75:kill")

    from churn_ml.registry import interruptions_of

    assert interruptions_of(steady) == 0 and interruptions_of(interrupted) == 2
    spot_restart = ["Interrupted", "Restarting", "Training"]
    assert [t["Status"] for t in interrupted["SecondaryStatusTransitions"]] == [
        "Starting", "Downloading", "Training", *spot_restart, *spot_restart, "Uploading", "Completed",
    ]
    rows = np.random.default_rng(2).normal(size=(500, 3))
    assert np.array_equal(_predictions(steady, rows), _predictions(interrupted, rows))
    assert interrupted["BillableTimeInSeconds"] <= interrupted["TrainingTimeInSeconds"]
    # Rounds done more than once: every "[i]" line beyond the first for that round.
    log_text = (lake_root / ".control-plane/sagemaker/training-jobs/spot-interrupted/training.log").read_text()
    rounds = [int(line[1:].split("]")[0]) for line in log_text.splitlines() if line.startswith("[")]
    assert sorted(set(rounds)) == list(range(120))
    resumed = [int(line.split(": ")[1]) for line in log_text.splitlines() if line.startswith("resumed_from_round")]
    # Resumes are at checkpoints (every 10 rounds): after SIGTERM at the end of the interval it
    # arrived in (35 -> 40), after SIGKILL at the newest checkpoint before the kill (75 -> 70). The
    # signal lands when the runner reads the round's log line, and a busy machine lets the job run
    # a little ahead of it (CI once saw the kill land after round 80): hence "at least".
    assert len(resumed) == 2 and all(r % 10 == 0 for r in resumed), resumed
    assert resumed[0] >= 40 and resumed[1] >= 70, resumed
    repeated = len(rounds) - 120
    assert repeated <= 10, f"{repeated} rounds repeated; at most one checkpoint interval per interruption"
    # Checkpoints live under the job's own S3 prefix, the newest two kept.
    saved = sorted(p.name for p in lake_files.local_path("s3://churn-lake/checkpoints/spot-interrupted/").iterdir())
    assert saved == ["churn-xgb-000110.ubj", "churn-xgb-000120.ubj"]


def test_spot_request_without_max_wait_is_refused():
    request = _spot_request("x")
    request["StoppingCondition"] = {"MaxRuntimeInSeconds": 300}
    with pytest.raises(ValueError, match="MaxWaitTimeInSeconds"):
        validate_request(request)


def test_interruption_plan_parses_rounds_random_and_kill():
    from local_aws.training import Interruption, interruption_plan

    plan = interruption_plan("90:kill, 40,random", "job-a", 200)
    assert plan[0] == Interruption(40) and Interruption(90, kill=True) in plan and len(plan) == 3
    assert interruption_plan("random", "job-a", 200) == interruption_plan("random", "job-a", 200)
    with pytest.raises(ValueError, match="positive integer"):
        interruption_plan("soon", "job-a", 200)


def test_spot_fields_are_cast_named_per_job_and_size_the_wait(lake_s3, monkeypatch):
    """Templated strings become integers, the checkpoint prefix is the job's own, the wait covers MaxWait."""
    import datetime as dt
    from types import SimpleNamespace

    from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTrainingOperator

    from churn_ml.operators import ChurnTrainingOperator

    seen = {}
    # What the provider's operator is given to create (no job of that name exists yet).
    monkeypatch.setattr(SageMakerTrainingOperator, "execute", lambda self, context: seen.setdefault("request", self.config))
    monkeypatch.setattr(ChurnTrainingOperator, "_existing", lambda self, name, describe: None)
    config = _spot_request("ignored")
    config["StoppingCondition"] = {"MaxRuntimeInSeconds": "3600", "MaxWaitTimeInSeconds": "7200"}
    config["CheckpointConfig"]["S3Uri"] = "s3://churn-lake/checkpoints/churn/"
    op = ChurnTrainingOperator(
        task_id="train", job_name_prefix="churn-xgb", config=config, check_interval=60,
        champion_model_uri="s3://churn-lake/models/churn/old/output/model.tar.gz",
    )
    context = {"dag": SimpleNamespace(dag_id="churn_training"), "logical_date": dt.datetime(2026, 7, 6), "run_id": "r"}
    op.execute(context)
    request = seen["request"]
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    name = request["TrainingJobName"]
    assert name.startswith("churn-xgb-20260706-")
    assert request["CheckpointConfig"]["S3Uri"] == f"s3://churn-lake/checkpoints/churn/{name}/"
    assert request["InputDataConfig"][-1]["ChannelName"] == "champion"
    assert op.max_attempts * op.check_interval >= 7200
