"""The model card: what register_model takes from the training job's output.tar.gz, and the card it builds."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from airflow.sdk.exceptions import AirflowFailException

from churn_ml import lake, model_card

# The plugins read and write the lake through S3: moto's, in this process, over the test's lake folder.
pytestmark = pytest.mark.usefixtures("lake_s3")

OUTPUT = "s3://churn-lake/models/churn/churn-xgb-20260706-aaaa/output"
EVALUATION = {"features": ["tenure", "spend"], "rounds": 120, "canary": {"rows": [[1, 2]], "scores": [0.5]}}
BASELINE = {  # churn_baseline.build's shape (include/sagemaker/)
    "format": "churn-baseline/1", "bin_rule": "...",
    "features": {"tenure": {"edges": [12.0, 80.5, 365.0], "counts": [10, 30, 40, 20], "missing": 0, "rows": 100},
                 "spend": {"edges": [], "counts": [0], "missing": 100, "rows": 100}},
    "score": {"edges": [0.0123, 0.05, 0.2], "counts": [10, 10, 10, 10], "missing": 0, "rows": 40, "mean": 0.07},
    "sources": {}, "training_job_name": "", "rows": {"train": 100, "holdout": 40},
}


def _output_tar(files: dict[str, bytes]) -> None:
    """``output.tar.gz`` as SageMaker packs /opt/ml/output/data."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    lake.write_bytes(f"{OUTPUT}/output.tar.gz", buffer.getvalue())


def test_the_evaluation_plot_and_baseline_come_out_of_the_tarball_and_the_evaluation_is_published_beside_it(lake_root):
    _output_tar({"evaluation.json": json.dumps(EVALUATION).encode(), "model_card.png": b"\x89PNG fake",
                 "baseline.json": json.dumps(BASELINE).encode()})
    output = model_card.extract_training_output(f"{OUTPUT}/model.tar.gz")
    assert output.evaluation == EVALUATION and output.plot == b"\x89PNG fake" and output.baseline == BASELINE
    assert output.evaluation_uri == f"{OUTPUT}/evaluation.json"
    assert lake.read_json(output.evaluation_uri) == EVALUATION  # where the deployment reads the canary rows


def test_a_training_output_without_a_plot_or_baseline_gives_none(lake_root):
    _output_tar({"evaluation.json": json.dumps(EVALUATION).encode()})  # a job from before baselines were stored
    output = model_card.extract_training_output(f"{OUTPUT}/model.tar.gz")
    assert output.plot is None and output.baseline is None


def test_a_training_output_without_an_evaluation_fails(lake_root):
    _output_tar({"model_card.png": b"\x89PNG fake"})
    with pytest.raises(AirflowFailException, match="has no evaluation.json"):  # the same on every retry
        model_card.extract_training_output(f"{OUTPUT}/model.tar.gz")


def test_the_card_keeps_the_chosen_hyperparameters_and_separates_the_champions_metrics():
    job = {"HyperParameters": {"eta": "0.1", "num_round": "600", "sagemaker_program": "churn_train.py",
                               "sagemaker_submit_directory": "s3://a/b.tar.gz", "training_set_fingerprint": "f1"},
           "TrainingTimeInSeconds": 100, "BillableTimeInSeconds": 40}
    card = model_card.build(
        job, ds="2026-07-06", training_set="s3://churn-lake/training_sets/ds=2026-07-06/", splits={"train": {}},
        evaluation=EVALUATION, metrics={"holdout:auc": 0.8, "champion:holdout:auc": 0.79}, tuning_job_name="hpo-1",
    )
    assert card["hyperparameters"] == {"eta": "0.1", "num_round": "600"}
    assert card["metrics"] == {"holdout:auc": 0.8} and card["champion_metrics"] == {"champion:holdout:auc": 0.79}
    assert (card["features"], card["rounds"], card["tuning_job_name"]) == (["tenure", "spend"], 120, "hpo-1")
    assert card["spot"] == {"training_seconds": 100, "billable_seconds": 40}


def test_the_written_card_links_the_plot_only_when_there_is_one(lake_root):
    card = {"version": 3, "status": "Approved", "reason": "clears the floor", "training_job_name": "job-a",
            "model_data_url": f"{OUTPUT}/model.tar.gz", "metrics": {"holdout:auc": 0.8},
            "champion_metrics": {"champion:holdout:auc": 0.79}}
    with_plot = model_card.write("s3://churn-lake/registry/churn-xgboost/v0003", card, b"\x89PNG fake")
    assert with_plot["plot"] == "s3://churn-lake/registry/churn-xgboost/v0003/model_card.png"
    text = lake.read_text("s3://churn-lake/registry/churn-xgboost/v0003/card.md")
    assert "| holdout:auc | 0.8000 | 0.7900 |" in text and "(model_card.png)" in text
    assert "plot" not in model_card.write("s3://churn-lake/registry/churn-xgboost/v0004", card, None)
    assert "model_card.png" not in lake.read_text("s3://churn-lake/registry/churn-xgboost/v0004/card.md")
    assert lake.read_json("s3://churn-lake/registry/churn-xgboost/v0003/card.json") == with_plot


def test_the_card_summarises_the_baseline_per_feature_and_says_when_there_is_none(lake_root):
    job = {"HyperParameters": {}, "TrainingTimeInSeconds": 1, "BillableTimeInSeconds": 1}
    card = model_card.build(job, ds="2026-07-06", training_set="ts", splits={}, evaluation=EVALUATION, metrics={},
                            tuning_job_name="hpo-1", baseline=BASELINE)
    assert card["baseline"]["features"] == [
        {"feature": "tenure", "bins": 4, "edge_range": [12.0, 365.0], "missing_rate": 0.0},
        {"feature": "spend", "bins": 1, "edge_range": [], "missing_rate": 1.0}]
    assert card["baseline"]["score"] == {"deciles": [0.0123, 0.05, 0.2], "mean": 0.07, "missing_rate": 0.0}
    identity = {"version": 5, "status": "Approved", "reason": "r", "training_job_name": "job-a", "model_data_url": "m"}
    text = model_card.render({**card, **identity, "baseline_uri": "s3://churn-lake/registry/g/baselines/job-a/baseline.json"})
    assert "## Monitoring baseline" in text and "(`s3://churn-lake/registry/g/baselines/job-a/baseline.json`)" in text
    assert "train split (100 rows)" in text and "holdout (40 rows)" in text
    assert "| tenure | 4 | 12 .. 365 | 0.00% |" in text and "| spend | 1 | - | 100.00% |" in text
    assert "**Score:** mean 0.0700, deciles 0.0123, 0.0500, 0.2000, missing 0.00%." in text
    without = model_card.build(job, ds="2026-07-06", training_set="ts", splits={}, evaluation=EVALUATION, metrics={},
                               tuning_job_name="hpo-1")
    assert without["baseline"] is None
    assert "None: the training job wrote no baseline.json" in model_card.render({**without, **identity})
