"""churn_train.py: arguments, channels, canary records, metrics and checkpoints, called directly."""

from __future__ import annotations

import numpy as np
import pytest

import churn_train as train


def test_hyperparameters_from_the_command_line_and_sm_paths_from_the_environment(monkeypatch):
    monkeypatch.setenv("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train")
    monkeypatch.setenv("SM_CHANNEL_VALIDATION", "/opt/ml/input/data/validation")
    monkeypatch.setenv("SM_MODEL_DIR", "/opt/ml/model")
    args = train.parse_args(["--max_depth", "7", "--eta", "0.2", "--_tuning_objective_metric", "validation:auc"])
    assert (args.max_depth, args.eta) == (7, 0.2)
    assert args.train == "/opt/ml/input/data/train" and args.model_dir == "/opt/ml/model"
    assert args.holdout is None


@pytest.mark.parametrize(("argv", "message"), [(["--eta", "0"], "eta must be"), (["--num_round", "0"], "num_round")])
def test_invalid_hyperparameters_are_rejected_with_the_reason(monkeypatch, argv, message):
    monkeypatch.setenv("SM_CHANNEL_TRAIN", "/x")
    monkeypatch.setenv("SM_CHANNEL_VALIDATION", "/y")
    with pytest.raises(train.TrainingInputError, match=message):
        train.parse_args(argv)


def test_missing_channels_are_reported(monkeypatch):
    monkeypatch.delenv("SM_CHANNEL_TRAIN", raising=False)
    monkeypatch.delenv("SM_CHANNEL_VALIDATION", raising=False)
    with pytest.raises(train.TrainingInputError, match="train and validation channels are required"):
        train.parse_args([])


def test_channel_without_label_first_is_refused(tmp_path):
    (tmp_path / "part.csv").write_text("f1,churned_30d\n1.0,0\n")
    with pytest.raises(train.TrainingInputError, match="first column must be the label"):
        train.read_channel(str(tmp_path), "train")


def test_empty_channel_is_refused(tmp_path):
    with pytest.raises(train.TrainingInputError, match="has no data files"):
        train.read_channel(str(tmp_path), "train")


def test_canary_records_span_the_scores_and_reproduce_the_booster(tmp_path):
    import pandas as pd
    import xgboost as xgb

    x = pd.DataFrame(np.random.default_rng(0).normal(size=(200, 3)), columns=["a", "b", "c"])
    x.iloc[0, 1] = np.nan
    booster = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(x, label=x["a"] > 0), 5)
    canary = train.canary_records(x, booster, rows=10)
    assert canary["features"] == ["a", "b", "c"] and len(canary["rows"]) == 10
    rows = np.array([[np.nan if v is None else v for v in row] for row in canary["rows"]])
    assert booster.inplace_predict(rows).tolist() == pytest.approx(canary["scores"])
    scores = booster.inplace_predict(x.to_numpy())
    assert canary["scores"][0] == scores.min() and canary["scores"][-1] == scores.max()  # spread, not the first rows


def test_lift_brier_and_metric_directions():
    import churn_evaluation as evaluation

    labels = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1] * 10)
    perfect = labels.astype(float)
    m = evaluation.metrics(labels, perfect, "holdout")
    assert m["holdout:auc"] == 1.0 and m["holdout:brier"] < 1e-6
    assert m["holdout:lift_at_10"] == pytest.approx(1 / 0.2)  # top 10% all churners, base rate 20%
    assert set(evaluation.METRICS) == {k.split(":")[1] for k in m}


def test_checkpoints_resume_from_the_newest_loadable_file(tmp_path):
    import xgboost as xgb

    from churn_checkpoints import CheckpointStore, TrainingState

    x = np.random.default_rng(0).normal(size=(200, 3))
    booster = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(x, label=x[:, 0] > 0), 10)
    store = CheckpointStore(tmp_path, keep=2)
    for rounds in (4, 8, 10):
        store.save(booster[:rounds], TrainingState(rounds=rounds, best_iteration=rounds - 2, best_score=0.5 + rounds / 100))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["churn-xgb-000008.ubj", "churn-xgb-000010.ubj"]
    raw, state = store.latest()
    assert state == TrainingState(rounds=10, best_iteration=8, best_score=0.6)
    (tmp_path / "churn-xgb-000010.ubj").write_bytes(b"torn write")  # a kill mid-copy
    raw, state = store.latest()
    assert state.rounds == 8 and xgb.Booster(model_file=raw).num_boosted_rounds() == 8
