"""The monitoring statistics (include/churn/monitoring.py) and the decay decision (churn_ml.decay)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from airflow.sdk.exceptions import AirflowFailException
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from churn import monitoring
from churn_ml import decay


def _counts(scores: np.ndarray, labels: np.ndarray) -> list[tuple[float, int, int]]:
    found: dict[float, list[int]] = {}
    for s, y in zip(scores.tolist(), labels.tolist()):
        found.setdefault(s, [0, 0])[0 if y else 1] += 1
    return [(s, p, n) for s, (p, n) in found.items()]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quality_from_score_counts_equals_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(3000) < 0.08
    # Rounded scores: many ties, within and across the classes, as a tree model's scores have.
    scores = np.round(np.clip(rng.normal(0.1 + 0.2 * labels, 0.1), 0, 1), 2)
    q = monitoring.quality(_counts(scores, labels))
    assert q["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert q["pr_auc"] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert q["brier"] == pytest.approx(brier_score_loss(labels, scores), abs=1e-12)
    assert (q["rows"], q["positives"]) == (3000, int(labels.sum()))
    assert sum(c["rows"] for c in q["calibration"]) == 3000
    # Lift without ties at the cut: the churn rate of the top 300 over the overall rate.
    distinct = rng.permutation(3000) / 3000.0
    top = np.argsort(-distinct)[:300]
    assert monitoring.quality(_counts(distinct, labels))["lift_at_10"] == pytest.approx(
        labels[top].mean() / labels.mean())


def test_quality_of_one_class_has_no_auc_and_no_rows_is_an_error():
    q = monitoring.quality([(0.1, 0, 5), (0.3, 0, 2)])
    assert q["auc"] is None and q["pr_auc"] is None and q["lift_at_10"] is None and q["brier"] > 0
    with pytest.raises(ValueError, match="no labelled predictions"):
        monitoring.quality([])


def test_psi_and_js_are_zero_for_the_same_distribution_and_grow_with_the_shift():
    base = {"counts": [100, 200, 300, 400], "missing": 0, "rows": 1000}
    assert monitoring.psi(base, {"counts": [10, 20, 30, 40], "missing": 0, "rows": 100}) == pytest.approx(0)
    assert monitoring.js_distance(base, base) == pytest.approx(0, abs=1e-7)
    small = {"counts": [120, 200, 300, 380], "missing": 0, "rows": 1000}
    large = {"counts": [400, 300, 200, 100], "missing": 0, "rows": 1000}
    assert 0 < monitoring.psi(base, small) < 0.1 < monitoring.psi(base, large)
    assert 0 < monitoring.js_distance(base, small) < monitoring.js_distance(base, large) <= 1
    # Disjoint support: PSI stays finite (floored shares), JS is exactly 1.
    assert monitoring.js_distance({"counts": [5, 0], "missing": 0, "rows": 5},
                                  {"counts": [0, 5], "missing": 0, "rows": 5}) == pytest.approx(1)
    assert math.isfinite(monitoring.psi({"counts": [5, 0], "missing": 0, "rows": 5},
                                        {"counts": [0, 5], "missing": 0, "rows": 5}))
    # Missing values are a category of their own: their appearance is drift.
    assert monitoring.psi(base, {"counts": [50, 100, 150, 200], "missing": 500, "rows": 1000}) > 1
    with pytest.raises(ValueError, match="bins differ"):
        monitoring.psi(base, {"counts": [1, 2], "missing": 0, "rows": 3})


def test_binned_counts_follow_the_baselines_bin_rule(spark):
    edges = [0.0, 1.0, 2.5]
    values = [-1.0, 0.0, 0.5, 1.0, 1.0001, 2.5, 7.0, None, float("nan")]
    frame = spark.createDataFrame([(v,) for v in values], "x double")
    got = monitoring.binned_counts(frame, {"x": edges})["x"]
    expected = np.bincount(np.searchsorted(edges, [v for v in values if v is not None and not math.isnan(v)],
                                           side="left"), minlength=len(edges) + 1)
    present = [v for v in values if v is not None and not math.isnan(v)]
    assert got == {"counts": expected.tolist(), "missing": 2, "rows": len(values), "mean": pytest.approx(np.mean(present))}


def _summary(model: str = "3", score_psi: float = 0.01, drifted_features: int = 0, rows: int = 1000,
             auc: float | None = None) -> dict:
    feature_psi = [0.5] * drifted_features + [0.01] * (5 - drifted_features)
    quality = {"status": "no_predictions", "prediction_date": "2026-05-01"}
    if auc is not None:
        quality = {"status": "closed", "prediction_date": "2026-05-01", "auc": auc}
    return {
        "model_version": model,
        "sources": {
            "batch": {"rows": rows, "score": {"psi": score_psi, "js": 0.01},
                      "features": {f"f{i}": {"psi": p, "js": 0.01} for i, p in enumerate(feature_psi)}},
            "capture": {"rows": 0},
        },
        "quality": quality,
    }


T = decay.Thresholds(psi_threshold=0.25, js_threshold=0.25, min_drifted_features=3, min_rows=200,
                     auc_floor=0.7, consecutive_days=3)


def test_a_day_decays_on_score_drift_on_enough_drifted_features_or_on_a_realized_auc_below_the_floor():
    assert decay.day_findings(_summary(), T) == []
    assert decay.day_findings(_summary(drifted_features=2), T) == []
    assert "3 features drifted" in decay.day_findings(_summary(drifted_features=3), T)[0]
    assert "score drifted" in decay.day_findings(_summary(score_psi=0.3), T)[0]
    assert decay.day_findings(_summary(score_psi=0.9, rows=199), T) == []  # too few rows to judge
    assert "below the floor" in decay.day_findings(_summary(auc=0.65), T)[0]
    assert decay.day_findings(_summary(auc=0.75), T) == []


def test_retraining_needs_consecutive_decayed_days_of_the_production_model_and_triggers_once():
    days = decay.window("2026-05-10", 5)
    assert days == ["2026-05-06", "2026-05-07", "2026-05-08", "2026-05-09", "2026-05-10"]
    drifted = {d: _summary(score_psi=0.4) for d in days}
    assert decay.decide("2026-05-10", drifted, {}, T)["retrain"]
    # A gap (a day not monitored) or an ok day breaks the streak.
    gap = {d: s for d, s in drifted.items() if d != "2026-05-09"}
    assert not decay.decide("2026-05-10", gap, {}, T)["retrain"]
    ok_day = {**drifted, "2026-05-08": _summary()}
    decision = decay.decide("2026-05-10", ok_day, {}, T)
    assert not decision["retrain"] and "2 of the last 3 days" in decision["reason"]
    # Days scored by another model do not count against the one in production now.
    new_model = {**drifted, "2026-05-09": _summary(model="4", score_psi=0.4), "2026-05-10": _summary(model="4", score_psi=0.4)}
    assert not decay.decide("2026-05-10", new_model, {}, T)["retrain"]
    # Once triggered, the streak must build up again.
    decision = decay.decide("2026-05-10", drifted, {"2026-05-09": {"retrain": True}}, T)
    assert not decision["retrain"] and "already triggered on 2026-05-09" in decision["reason"]
    with pytest.raises(AirflowFailException, match="no monitoring summary for 2026-05-11"):  # no retry writes it
        decay.decide("2026-05-11", drifted, {}, T)


def test_thresholds_come_from_the_dag_params_and_bad_ones_are_refused():
    t = decay.Thresholds.from_params({"psi_threshold": "0.3", "consecutive_days": 2, "unrelated": 1})
    assert (t.psi_threshold, t.consecutive_days, t.min_rows) == (0.3, 2, decay.Thresholds.min_rows)
    with pytest.raises(ValueError, match="consecutive_days must be at least 1"):
        decay.Thresholds(consecutive_days=0)
