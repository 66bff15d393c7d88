"""A registration found again (a retried or rerun register_model) is the version a fresh one returned:
the same metrics, status, reason and card, so the production pointer and ``make run``'s summary are the
same on a second run. Against moto (in-process), as SageMaker's registry and S3 answer on the aws target."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from churn_ml import lake, registry

REPO = Path(__file__).resolve().parents[2]
JOB = "churn-xgb-20260702-aaaa"
MODEL = f"s3://churn-lake/models/churn/{JOB}/output/model.tar.gz"
POINTER = "s3://churn-lake/published/churn/latest.json"
# What churn_train.py reports of the model itself (the card's metrics: the champion's are not the version's).
METRICS = {f"{split}:{name}": value for split, base in (("validation", 0.8), ("holdout", 0.79))
           for name, value in (("auc", base + 0.0012345678), ("pr_auc", base - 0.3), ("logloss", 0.41),
                               ("brier", 0.13), ("lift_at_10", 3.2))} | {"holdout:best_single_feature_auc": 0.6712}
HEADLINE = ("holdout:auc", "holdout:pr_auc", "holdout:logloss", "holdout:brier", "holdout:lift_at_10")


@pytest.fixture
def aws(monkeypatch):
    for key, value in {"ML_TARGET": "aws", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AIRFLOW_CONN_AWS_DEFAULT": '{"conn_type": "aws"}',
                       "CHURN_MODEL_PACKAGE_GROUP": "churn-xgboost"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="churn-lake")
        yield boto3.client("sagemaker")


def register(approval: str = "Approved", metrics: dict | None = None) -> dict:
    """registry.register as register_model calls it (metrics: the card's)."""
    metrics = METRICS if metrics is None else metrics
    return registry.register(
        data_date="2026-07-02", tuning_job_name="churn-hpo-20260702-abc", model_data_url=MODEL,
        image_uri="xgboost:1.7-1", training_job_name=JOB, approval=approval, reason=f"{approval} because",
        metrics=metrics, card={"metrics": metrics, "features": ["f1"]}, card_plot=None,
        evaluation_uri=MODEL.replace("model.tar.gz", "evaluation.json"),
    )


def summarize_run():
    spec = importlib.util.spec_from_file_location("summarize_run", REPO / "scripts" / "summarize_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_rerun_finds_the_version_with_every_metric_and_publishes_the_same_record(aws):
    first = register()
    assert set(first["Metrics"]) == set(METRICS)
    assert first["Metrics"]["holdout:auc"] == round(METRICS["holdout:auc"], 6)  # as stored: 6 decimals
    published = registry.publish(first, "2026-07-02", POINTER)
    again = register()
    assert again == first  # metrics, status, reason, card and baseline: the version found again is the fresh one
    assert registry.publish(again, "2026-07-02", POINTER) == published == lake.read_json(POINTER)
    assert summarize_run().missing_metrics(published) == []
    # Every lookup reads the same metrics, not only the headline ones.
    assert registry.show_version(1)["Metrics"] == registry.latest_approved()["Metrics"] == first["Metrics"]
    assert len(aws.list_model_packages(ModelPackageGroupName="churn-xgboost")["ModelPackageSummaryList"]) == 1


def test_a_version_registered_with_only_the_headline_metrics_gets_the_others_on_rerun(aws):
    """What the registry stored before: the rerun adds the training job's other metrics to the package,
    keeping the status, the gate's reason and the stored values."""
    first = register(metrics={k: v for k, v in METRICS.items() if k in HEADLINE})
    assert "holdout:best_single_feature_auc" not in first["Metrics"]
    again = register(metrics={**METRICS, "holdout:auc": 0.5})  # a stored value is kept
    assert again["ModelPackageVersion"] == first["ModelPackageVersion"]
    assert again["Metrics"] == {k: round(v, 6) for k, v in METRICS.items()}
    stored = registry.show_version(first["ModelPackageVersion"])
    assert stored["Metrics"] == again["Metrics"]
    assert (stored["ModelApprovalStatus"], stored["ApprovalDescription"]) == ("Approved", "Approved because")
    assert (stored["TrainingJobName"], stored["DataDate"], stored["TuningJobName"]) == (
        JOB, "2026-07-02", "churn-hpo-20260702-abc")
    assert register() == again  # and from then on nothing changes


def test_the_summary_names_a_metric_the_published_record_lacks(aws):
    record = registry.publish(register(metrics={k: v for k, v in METRICS.items() if k in HEADLINE}),
                              "2026-07-02", POINTER)
    assert summarize_run().missing_metrics(record) == ["holdout:best_single_feature_auc"]


def test_metrics_that_do_not_fit_the_package_are_refused_before_anything_is_created(aws):
    from airflow.sdk.exceptions import AirflowFailException

    too_many = {f"holdout:m{i}": 0.5 for i in range(48)}
    with pytest.raises(AirflowFailException, match="do not fit a model package's CustomerMetadataProperties"):
        register(metrics=too_many)
    with pytest.raises(AirflowFailException, match=r"must read <split>:<metric>.*\['auc'\]"):
        register(metrics={"auc": 0.8})
    assert aws.list_model_package_groups()["ModelPackageGroupSummaryList"] == []
