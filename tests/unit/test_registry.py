"""Quality gate decisions and the model registry (versions, idempotency, champion, CLI, card), against the control plane."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from airflow.sdk.exceptions import AirflowFailException

from churn_ml import lake, registry
from local_aws import lake_files


@pytest.mark.parametrize(
    ("metrics", "status", "says"),
    [
        ({"holdout:auc": 0.68}, "Rejected", "below the floor 0.7000"),
        ({"holdout:auc": 0.68, "champion:holdout:auc": 0.60}, "Rejected", "below the floor"),
        ({"holdout:auc": 0.75}, "Approved", "floor only"),
        ({"holdout:auc": 0.75, "champion:holdout:auc": 0.78}, "Rejected", "worse than the champion's 0.7800"),
        ({"holdout:auc": 0.775, "champion:holdout:auc": 0.78}, "Approved", "change -0.0050"),
        ({"holdout:auc": 0.80, "champion:holdout:auc": 0.78}, "Approved", "change +0.0200"),
    ],
)
def test_gate_applies_the_floor_then_the_champion_tolerance(metrics, status, says):
    decided, reason = registry.gate(metrics, floor=0.70, tolerance=0.01)
    assert decided == status and says in reason


def test_gate_without_holdout_metrics_says_what_is_missing():
    with pytest.raises(registry.RegistryError, match="no holdout:auc"):
        registry.gate({"validation:auc": 0.8}, floor=0.7, tolerance=0.01)


def _register(job: str, status: str, auc: float, plot: bytes | None = b"\x89PNG fake", ds: str = "2026-07-02",
              baseline: dict | None = None) -> dict:
    return registry.register(
        data_date=ds, tuning_job_name=f"hpo-{job}",
        model_data_url=f"s3://churn-lake/models/churn/{job}/output/model.tar.gz", image_uri="xgboost:1.7-1",
        training_job_name=job, approval=status, reason=f"{status} because", metrics={"holdout:auc": auc},
        card={"features": ["f1", "f2"], "hyperparameters": {"eta": "0.1"}, "metrics": {"holdout:auc": auc},
              "champion_metrics": {}, "splits": {"train": {"rows": 10, "positive_rate": 0.1, "snapshots": ["a", "b"]}}},
        card_plot=plot, evaluation_uri=f"s3://churn-lake/models/churn/{job}/output/evaluation.json",
        baseline=baseline,
    )


def test_versions_count_up_registering_is_idempotent_and_the_champion_is_the_newest_approved(lake_root, aws_local):
    assert registry.latest_approved() is None
    first = _register("job-a", "Approved", 0.78)
    rejected = _register("job-b", "Rejected", 0.70, plot=None)
    assert (first["ModelPackageVersion"], rejected["ModelPackageVersion"]) == (1, 2)
    assert _register("job-b", "Rejected", 0.70) == rejected  # a retried task finds its version
    assert registry.latest_approved()["TrainingJobName"] == "job-a"
    card = lake_files.local_path(registry.version_prefix(registry.group_name(), 1))
    assert (card / "model_card.png").read_bytes().startswith(b"\x89PNG")
    text = (card / "card.md").read_text()
    assert "# Churn model v1: Approved" in text and "| holdout:auc | 0.7800 |" in text and "`f2`" in text
    assert not (lake_files.local_path(registry.version_prefix(registry.group_name(), 2)) / "model_card.png").exists()

    # The CLI as a person runs it: the answer on stdout, whatever the AWS libraries log on stderr.
    listing = cli("list")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[1].split()[:3] == ["1", "Approved", "0.7800"] and lines[2].split()[:3] == ["2", "Rejected", "0.7000"]
    shown = cli("show", "2")
    assert json.loads(shown.stdout)["ApprovalDescription"] == "Rejected because"
    missing = cli("show", "9")
    assert missing.returncode == 1 and "has no version 9" in missing.stderr


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "churn_ml.registry", *args], capture_output=True, text=True,
                          timeout=120, env=os.environ)


def test_registering_with_an_unknown_status_is_refused(lake_root, aws_local):
    with pytest.raises(AirflowFailException, match="Approved or Rejected"):  # no retry makes it valid
        _register("job-c", "PendingManualApproval", 0.8)


def test_the_champion_and_warm_start_of_a_date_come_from_older_data_only(lake_root, aws_local):
    _register("job-jun", "Approved", 0.78, ds="2026-06-25")
    _register("job-jul", "Approved", 0.79, ds="2026-07-02")
    _register("job-jul-b", "Rejected", 0.60, ds="2026-07-09")
    # A rerun of 2026-07-02 sees what its first run saw, although that run registered job-jul since.
    assert registry.champion_for("2026-07-02")["TrainingJobName"] == "job-jun"
    assert [v["TrainingJobName"] for v in registry.trained_before("2026-07-02")] == ["job-jun"]
    # Rejected versions are no champion, but their tuning still warm-starts the next date.
    assert registry.champion_for("2026-07-16")["TrainingJobName"] == "job-jul"
    assert registry.trained_before("2026-07-16")[-1]["TuningJobName"] == "hpo-job-jul-b"
    assert registry.champion_for("2026-06-25") is None


def test_production_only_moves_forward_unless_forced(lake_s3):
    pointer = "s3://churn-lake/models/churn/latest.json"
    assert registry.publication("Approved", "2026-07-02", False, pointer) == (True, "published: the first approved model")
    assert registry.publication("Rejected", "2026-07-02", False, pointer)[0] is False
    lake.write_json(pointer, {"ds": "2026-07-02", "model_package_version": 3})
    publish, why = registry.publication("Approved", "2026-06-25", False, pointer)
    assert not publish and "v3 (data up to 2026-07-02)" in why and "force_publish" in why
    assert registry.publication("Approved", "2026-06-25", True, pointer)[0] is True
    assert registry.publication("Approved", "2026-07-02", False, pointer)[0] is True  # a rerun republishes its own date
    assert registry.publication("Approved", "2026-07-09", False, pointer)[0] is True


def test_the_registration_token_is_derived_from_the_registration_and_valid_for_sagemaker():
    from churn_ml import naming

    token = registry.registration_token("churn-xgboost", "job-a", "s3://churn-lake/models/churn/job-a/output/model.tar.gz")
    assert naming.check_name(token, "sagemaker", "CreateModelPackage", "ClientToken") == token
    assert token == registry.registration_token("churn-xgboost", "job-a", "s3://churn-lake/models/churn/job-a/output/model.tar.gz")
    others = {registry.registration_token("churn-xgboost", "job-b", "s3://churn-lake/models/churn/job-a/output/model.tar.gz"),
              registry.registration_token("churn-xgboost", "job-a", "s3://churn-lake/models/churn/job-b/output/model.tar.gz"),
              registry.registration_token("other-group", "job-a", "s3://churn-lake/models/churn/job-a/output/model.tar.gz")}
    assert token not in others and len(others) == 3


def test_the_baseline_of_a_date_is_its_champion_and_the_newest_tuning_before_it(lake_root, aws_local):
    assert registry.baseline_for("2026-07-02") == {"model_data_url": "", "version": None, "warm_start": ""}
    _register("job-jun", "Approved", 0.78, ds="2026-06-25")
    _register("job-jul", "Rejected", 0.60, ds="2026-07-02")
    assert registry.baseline_for("2026-07-09") == {
        "model_data_url": "s3://churn-lake/models/churn/job-jun/output/model.tar.gz", "version": 1,
        "warm_start": "hpo-job-jul",  # a Rejected model's tuning still warm-starts the next date
    }


def test_the_gate_decides_on_the_training_jobs_final_metrics_and_logs_the_comparison(caplog):
    job = {"TrainingJobName": "job-a", "BillableTimeInSeconds": 40, "TrainingTimeInSeconds": 100,
           "SecondaryStatusTransitions": [{"Status": "Starting"}, {"Status": "Interrupted"}, {"Status": "Training"}],
           "FinalMetricDataList": [{"MetricName": "holdout:auc", "Value": 0.7712345678},
                                   {"MetricName": "champion:holdout:auc", "Value": 0.79}]}
    with caplog.at_level("INFO", logger="churn_ml.registry"):
        decision = registry.gate_training_job(job, floor=0.7, tolerance=0.01)
    assert decision["status"] == "Rejected" and "worse than the champion's 0.7900" in decision["reason"]
    assert decision["metrics"] == {"holdout:auc": 0.771235, "champion:holdout:auc": 0.79}
    assert "job-a: 1 spot interruption(s), 40 s billable of 100 s" in caplog.text
    assert "challenger 0.7712   champion 0.7900" in caplog.text and "QUALITY GATE: REJECTED" in caplog.text


def test_publishing_writes_the_pointer_the_next_publication_is_held_against(lake_root, aws_local):
    pointer = "s3://churn-lake/published/churn/latest.json"
    version = _register("job-a", "Approved", 0.78, ds="2026-07-09")
    record = registry.publish(version, "2026-07-09", pointer)
    assert lake.read_json(pointer) == record
    assert record["model_package_version"] == 1 and record["model_data_url"].endswith("/job-a/output/model.tar.gz")
    assert record["evaluation_uri"].endswith("/job-a/output/evaluation.json")
    assert registry.publication("Approved", "2026-07-02", False, pointer)[0] is False  # older data than production


# What churn_train.py writes (churn_baseline.build); the container may not know its job's name.
BASELINE = {
    "format": "churn-baseline/1", "bin_rule": "bin index = number of edges strictly below the value",
    "features": {"tenure_days": {"edges": [0.1 + 0.2, 30.0], "counts": [3, 4, 5], "missing": 1, "rows": 13},
                 "contract_annual": {"edges": [0.0, 1.0], "counts": [6, 7, 0], "missing": 0, "rows": 13}},
    "score": {"edges": [0.01, 0.02], "counts": [1, 1, 1], "missing": 0, "rows": 3, "mean": 0.015},
    "sources": {"features": "train split", "score": "the final model's scores on the holdout split"},
    "training_job_name": "", "rows": {"train": 13, "holdout": 3},
}


def test_the_baseline_is_stored_with_the_version_and_the_pointer_and_an_older_version_has_none(lake_root, aws_local):
    from churn_ml import model_card
    from churn_ml.registry import _sagemaker

    old = _register("job-old", "Approved", 0.78, ds="2026-06-25")  # registered before baselines were stored
    assert old["BaselineUri"] is None
    card = lake_files.local_path(registry.version_prefix(registry.group_name(), 1))
    assert "None: the training job wrote no baseline.json" in (card / "card.md").read_text()

    summary = model_card.baseline_summary(BASELINE)
    version = registry.register(
        data_date="2026-07-02", model_data_url="s3://churn-lake/models/churn/job-new/output/model.tar.gz",
        image_uri="xgboost:1.7-1", training_job_name="job-new", tuning_job_name="hpo-new", approval="Approved",
        reason="clears the floor",
        metrics={"holdout:auc": 0.8}, card={"metrics": {"holdout:auc": 0.8}, "baseline": summary}, card_plot=None,
        evaluation_uri="s3://churn-lake/models/churn/job-new/output/evaluation.json", baseline=BASELINE,
    )
    uri = f"s3://churn-lake/registry/{registry.group_name()}/baselines/job-new/baseline.json"
    assert version["BaselineUri"] == uri
    # In the model package itself, as SageMaker's DescribeModelPackage answers it.
    package = _sagemaker().conn.describe_model_package(ModelPackageName=version["ModelPackageArn"])
    assert package["DriftCheckBaselines"] == {
        "ModelDataQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": uri}}}
    stored = json.loads(lake.read_text(uri))
    assert stored == {**BASELINE, "training_job_name": "job-new"}  # floats exact, the job's name filled in
    assert list(stored["features"]) == ["tenure_days", "contract_annual"]  # the training data's order, not sorted
    assert registry.show_version(2)["BaselineUri"] == uri and registry.show_version(1)["BaselineUri"] is None
    text = lake.read_text(f"{registry.version_prefix(registry.group_name(), 2)}/card.md")
    # Names in table cells are Markdown-escaped text (model_card._text): tenure\_days renders as tenure_days.
    assert f"(`{uri}`)" in text and "| tenure\\_days | 3 | 0.3 .. 30 | 7.69% |" in text
    assert "**Score:** mean 0.0150, deciles 0.0100, 0.0200, missing 0.00%." in text
    assert lake.read_json(f"{registry.version_prefix(registry.group_name(), 2)}/card.json")["baseline_uri"] == uri

    pointer = "s3://churn-lake/published/churn/latest.json"
    assert registry.publish(version, "2026-07-02", pointer)["baseline_uri"] == uri
    assert lake.read_json(pointer)["baseline_uri"] == uri
    assert registry.publish(old, "2026-06-25", pointer)["baseline_uri"] is None
    # A retried registration finds its version, baseline and all.
    again = registry.register(
        data_date="2026-07-02", model_data_url="s3://churn-lake/models/churn/job-new/output/model.tar.gz",
        image_uri="xgboost:1.7-1", training_job_name="job-new", tuning_job_name="hpo-new", approval="Approved",
        reason="clears the floor",
        metrics={"holdout:auc": 0.8}, card={}, card_plot=None, evaluation_uri="", baseline=BASELINE,
    )
    assert (again["ModelPackageVersion"], again["BaselineUri"]) == (2, uri)
