"""churn_baseline.py: the monitoring baseline's bins and counts, called directly.

Runs under the SageMaker XGBoost 1.7-1 runtime too (Python 3.8, numpy 1.19.2, pandas 1.2.4;
tests/runtime/test_runtime_sagemaker.py), where the training job computes it.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import churn_baseline as baseline


def test_a_feature_with_few_distinct_values_gets_them_as_edges_and_nan_is_counted_apart():
    entry = baseline.feature_histogram(np.array([2.0, 0.0, 1.0, 1.0, np.nan, 2.0, 2.0, np.nan]))
    # Each value its own bin (value edges[i] -> bin i); the last bin, above the largest value, is empty.
    assert entry == {"edges": [0.0, 1.0, 2.0], "counts": [1, 2, 3, 0], "missing": 2, "rows": 8}


def test_twenty_distinct_values_are_edges_twenty_one_are_binned_by_deciles():
    twenty = np.repeat(np.arange(20, dtype="float64"), 3)
    assert baseline.feature_edges(twenty).tolist() == list(range(20))
    twenty_one = np.arange(21, dtype="float64")
    edges = baseline.feature_edges(twenty_one)
    assert edges.tolist() == np.unique(np.quantile(twenty_one, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])).tolist()
    assert edges.tolist() == [2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0]


def test_a_continuous_feature_gets_its_deciles_and_about_a_tenth_of_the_rows_per_bin():
    values = np.random.default_rng(3).gamma(2.0, 300.0, 5000)
    values[::50] = np.nan
    entry = baseline.feature_histogram(values)
    present = values[~np.isnan(values)]
    assert entry["edges"] == np.quantile(present, baseline.DECILES).tolist() and len(entry["edges"]) == 9
    assert entry["missing"] == 100 and entry["rows"] == 5000 and sum(entry["counts"]) == 4900
    assert all(abs(c - 490) <= 1 for c in entry["counts"]), entry["counts"]


def test_tied_deciles_are_dropped():
    values = np.array([0.0] * 80 + list(range(1, 21)) + [0.5], dtype="float64")  # mostly zeros, 22 distinct
    edges = baseline.feature_edges(values)
    assert edges.tolist() == sorted(set(edges.tolist())) and edges[0] == 0.0 and len(edges) < 9
    counts = baseline.histogram(values, edges)["counts"]
    assert counts[0] == 80 and sum(counts) == len(values)


def test_a_feature_missing_everywhere_has_one_bin_and_every_row_missing():
    assert baseline.feature_histogram(np.full(4, np.nan)) == {"edges": [], "counts": [0], "missing": 4, "rows": 4}


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.integers(-5, 5).map(float), st.floats(-10, 10, allow_nan=False)),
                    max_size=60),
    edges=st.lists(st.one_of(st.integers(-5, 5).map(float), st.floats(-10, 10, allow_nan=False)), max_size=12),
)
def test_the_bin_of_a_value_is_the_number_of_edges_strictly_below_it(values, edges):
    """BIN_RULE, which the monitoring job applies to each day's data, checked by counting."""
    edges = sorted(set(edges))
    array = np.array([np.nan if v is None else v for v in values], dtype="float64")
    entry = baseline.histogram(array, edges)
    expected = [0] * (len(edges) + 1)
    for value in values:
        if value is not None:
            expected[sum(1 for e in edges if e < value)] += 1
    assert entry["counts"] == expected
    assert entry["counts"] == np.bincount(np.searchsorted(edges, array[~np.isnan(array)], side="left"),
                                          minlength=len(edges) + 1).tolist()
    assert sum(entry["counts"]) + entry["missing"] == entry["rows"] == len(values)


def test_the_baseline_has_every_feature_in_order_the_score_deciles_and_reads_back_exactly():
    rng = np.random.default_rng(5)
    train = pd.DataFrame({"tenure_days": rng.integers(1, 900, 300).astype("float64"),
                          "contract_annual": rng.integers(0, 2, 300).astype("float64"),
                          "monthly_charge": rng.normal(40.0, 7.0, 300) / 3.0})
    train.loc[7, "monthly_charge"] = np.nan
    scores = rng.beta(1.0, 20.0, 120).astype("float32")  # what Booster.predict gives
    made = baseline.build(train, scores, "churn-xgb-20260706-aaaa")
    assert made["format"] == "churn-baseline/1" and made["bin_rule"] == baseline.BIN_RULE
    assert list(made["features"]) == ["tenure_days", "contract_annual", "monthly_charge"]
    assert made["features"]["contract_annual"] == {"edges": [0.0, 1.0],
                                                   "counts": [int((train.contract_annual == 0).sum()),
                                                              int((train.contract_annual == 1).sum()), 0],
                                                   "missing": 0, "rows": 300}
    assert made["features"]["monthly_charge"]["missing"] == 1
    assert made["score"]["edges"] == np.quantile(scores.astype("float64"), baseline.DECILES).tolist()
    assert sum(made["score"]["counts"]) == made["score"]["rows"] == 120 and made["score"]["missing"] == 0
    assert made["score"]["mean"] == pytest.approx(float(scores.mean()))
    assert made["rows"] == {"train": 300, "holdout": 120} and made["training_job_name"] == "churn-xgb-20260706-aaaa"
    assert made["sources"] == {"features": "train split", "score": "the final model's scores on the holdout split"}
    assert json.loads(json.dumps(made)) == made  # every float reads back as the same double
    assert all(isinstance(e, float) for e in made["features"]["monthly_charge"]["edges"])
