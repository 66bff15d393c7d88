"""The monitoring baseline of a trained model: its training data's distribution, and its scores'.

The final training job writes ``baseline.json`` beside ``evaluation.json`` in its output
(``output.tar.gz``); the registry stores it with the model package version
(``DriftCheckBaselines.ModelDataQuality``), and the monitoring job compares each day's scored data
with the production model's baseline, bin by bin. So the bins are fixed here, once, with the rule
the monitoring job applies to new data (``BIN_RULE``):

- a feature with at most ``MAX_DISTINCT`` distinct values in the train split (flags, counts, small
  categories) gets those values as edges: each value is its own bin, and a value above the largest
  lands in the last bin, which training leaves empty;
- any other feature, and the score, gets the deciles as edges (``numpy.quantile``'s default linear
  interpolation, duplicates dropped), so each bin holds about a tenth of the rows.

Missing values (NaN) are counted apart, so a rise in missing values shows as itself.

Runs in the SageMaker XGBoost 1.7-1 container (Python 3.8, numpy 1.19.2, pandas 1.2.4).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

FORMAT = "churn-baseline/1"
FILE_NAME = "baseline.json"
BIN_RULE = (
    "bin index = number of edges strictly below the value (numpy.searchsorted(edges, value, side='left')); "
    "len(counts) == len(edges) + 1; missing values are counted apart"
)
MAX_DISTINCT = 20
DECILES = [i / 10 for i in range(1, 10)]  # 0.1 .. 0.9, each the double nearest the decimal
SOURCES = {"features": "train split", "score": "the final model's scores on the holdout split"}


def decile_edges(values: np.ndarray) -> np.ndarray:
    """The distinct deciles of the non-missing ``values`` (none when every value is missing)."""
    values = np.asarray(values, dtype="float64")
    present = values[~np.isnan(values)]
    if present.size == 0:
        return np.array([], dtype="float64")
    return np.unique(np.quantile(present, DECILES))


def feature_edges(values: np.ndarray) -> np.ndarray:
    """A feature's edges: its distinct values when there are at most ``MAX_DISTINCT``, else its deciles."""
    values = np.asarray(values, dtype="float64")
    distinct = np.unique(values[~np.isnan(values)])
    return distinct if distinct.size <= MAX_DISTINCT else decile_edges(values)


def histogram(values: np.ndarray, edges: Sequence[float]) -> dict:
    """``values`` counted into the bins of ``edges`` under ``BIN_RULE``, NaN counted as ``missing``.

    Edges and counts as Python floats and ints: JSON writes a float so that it reads back exactly.
    """
    values = np.asarray(values, dtype="float64")
    edges = np.asarray(edges, dtype="float64")
    missing = np.isnan(values)
    bins = np.searchsorted(edges, values[~missing], side="left")
    counts = np.bincount(bins, minlength=edges.size + 1)
    return {
        "edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "missing": int(missing.sum()),
        "rows": int(values.size),
    }


def feature_histogram(values: np.ndarray) -> dict:
    """One feature's entry: its train split values counted into the bins of ``feature_edges``."""
    return histogram(values, feature_edges(values))


def build(features, scores: np.ndarray, training_job_name: str = "") -> dict:
    """The baseline of a model trained on ``features`` (the train split, a DataFrame whose columns are
    the model's features in order) whose scores on the holdout split are ``scores``."""
    scores = np.asarray(scores, dtype="float64")
    score = histogram(scores, decile_edges(scores))
    present = scores[~np.isnan(scores)]
    score["mean"] = float(present.mean()) if present.size else None
    return {
        "format": FORMAT,
        "bin_rule": BIN_RULE,
        "features": {str(name): feature_histogram(features[name].to_numpy(dtype="float64")) for name in features.columns},
        "score": score,
        "sources": dict(SOURCES),
        "training_job_name": training_job_name,
        "rows": {"train": int(len(features)), "holdout": int(scores.size)},
    }
