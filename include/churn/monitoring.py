"""The statistics of model monitoring: drift against the training baseline, and realized quality.

Spark aggregates (one pass per input for the binned counts, one for the realized quality), the
driver does the arithmetic on what came back: a few hundred numbers, never rows. Nothing here needs
more than pyspark and the standard library, so it runs as shipped on EMR Serverless (Python 3.9) and
Glue 5.0 (Python 3.11).

**Binning** follows the baseline written at training time (include/sagemaker/churn_evaluation.py,
``baseline.json``): the bin of a value is the number of edges strictly below it, so there are
``len(edges) + 1`` bins; a missing value (null or NaN) is counted apart, as its own category.

**Drift** of one column is measured two ways, on the binned distributions with the missing category:

- the population stability index, ``PSI = sum((a - e) * ln(a / e))`` over the bins, with each
  share floored at ``SHARE_FLOOR`` so that an empty bin does not make it infinite. The usual reading:
  below 0.1 stable, 0.1-0.25 a moderate shift, above 0.25 a major one;
- the Jensen-Shannon distance (base 2), which is symmetric, bounded in [0, 1] and defined when a bin
  is empty on one side; it suits both the continuous features (deciles) and the coded categories.

**Realized quality** of a prediction date comes from the count of positives and negatives per
distinct score (one Spark aggregation), from which AUC (ties counted half, as ``roc_auc_score``),
average precision (``average_precision_score``), the Brier score, the expected calibration error and
the lift in the top decile follow exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

SHARE_FLOOR = 1e-4
CALIBRATION_BINS = 10
LIFT_FRACTION = 0.10


# --------------------------------------------------------------------------- binning
def bin_of(column: Column, edges: list[float]) -> Column:
    """The baseline's bin of ``column`` (number of edges strictly below it); null when missing."""
    missing = column.isNull() | F.isnan(column)
    index = F.lit(0)
    for edge in edges:
        index = index + (column > F.lit(float(edge))).cast("int")
    return F.when(missing, F.lit(None).cast("int")).otherwise(index)


def binned_counts(frame: DataFrame, edges: dict[str, list[float]]) -> dict[str, dict]:
    """Per column of ``edges``: ``{"counts": [...], "missing": n, "rows": n, "mean": m}`` of ``frame``,
    in one pass (``mean`` of the values present; None when there are none).

    Each row becomes one (column, bin, value) triple per column, counted by one aggregation: a plan
    whose size grows with the columns, not with columns x bins (which compiles slowly)."""
    triples = F.explode(F.array(*[
        F.struct(F.lit(name).alias("column"), bin_of(F.col(name).cast("double"), column_edges).alias("bin"),
                 F.col(name).cast("double").alias("value"))
        for name, column_edges in edges.items()
    ])).alias("t")
    counted = (frame.select(triples).groupBy("t.column", "t.bin")
               .agg(F.count(F.lit(1)).alias("n"), F.sum(F.when(F.col("t.bin").isNotNull(), F.col("t.value"))).alias("total"))
               .collect())
    found: dict[str, dict] = {
        name: {"counts": [0] * (len(column_edges) + 1), "missing": 0, "rows": 0, "total": 0.0}
        for name, column_edges in edges.items()
    }
    for row in counted:
        summary = found[row["column"]]
        summary["rows"] += int(row["n"])
        if row["bin"] is None:
            summary["missing"] += int(row["n"])
        else:
            summary["counts"][row["bin"]] += int(row["n"])
            summary["total"] += float(row["total"])
    for summary in found.values():
        present = summary["rows"] - summary["missing"]
        summary["mean"] = summary.pop("total") / present if present else None
    return found


# --------------------------------------------------------------------------- drift
def _shares(summary: dict) -> list[float]:
    """Shares of the bins plus the missing category."""
    counts = [*summary["counts"], summary.get("missing", 0)]
    total = sum(counts)
    if total <= 0:
        raise ValueError("a distribution with no rows has no shares")
    return [c / total for c in counts]


def psi(expected: dict, actual: dict) -> float:
    """Population stability index of ``actual`` against ``expected`` (binned summaries of one column)."""
    e_shares, a_shares = _shares(expected), _shares(actual)
    if len(e_shares) != len(a_shares):
        raise ValueError(f"bins differ: {len(e_shares) - 1} expected, {len(a_shares) - 1} actual")
    total = 0.0
    for e, a in zip(e_shares, a_shares):
        e, a = max(e, SHARE_FLOOR), max(a, SHARE_FLOOR)
        total += (a - e) * math.log(a / e)
    return total


def js_distance(expected: dict, actual: dict) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two binned summaries of one column."""
    p, q = _shares(expected), _shares(actual)
    if len(p) != len(q):
        raise ValueError(f"bins differ: {len(p) - 1} expected, {len(q) - 1} actual")

    def kl(x: list[float], m: list[float]) -> float:
        return sum(xi * math.log2(xi / mi) for xi, mi in zip(x, m) if xi > 0)

    mid = [(a + b) / 2 for a, b in zip(p, q)]
    divergence = (kl(p, mid) + kl(q, mid)) / 2
    return math.sqrt(max(divergence, 0.0))


def drift(baseline: dict, observed: dict) -> dict:
    """Drift of one column: PSI, Jensen-Shannon distance, shares and missing rates on both sides."""
    return {
        "psi": round(psi(baseline, observed), 6),
        "js": round(js_distance(baseline, observed), 6),
        "rows": observed["rows"],
        "missing_rate": round(observed["missing"] / observed["rows"], 6) if observed["rows"] else None,
        "baseline_missing_rate": round(baseline["missing"] / baseline["rows"], 6) if baseline["rows"] else None,
        "mean": observed.get("mean"),
        "shares": [round(s, 6) for s in _shares(observed)],
        "baseline_shares": [round(s, 6) for s in _shares(baseline)],
    }


# --------------------------------------------------------------------------- realized quality
def score_counts(frame: DataFrame, score: str = "score", label: str = "label") -> list[tuple[float, int, int]]:
    """(score, positives, negatives) per distinct score, ascending: the input of ``quality``."""
    grouped = frame.groupBy(F.col(score).cast("double").alias("s")).agg(
        F.sum(F.col(label).cast("long")).alias("pos"), F.count(F.lit(1)).alias("n")
    )
    return sorted((float(r["s"]), int(r["pos"]), int(r["n"] - r["pos"])) for r in grouped.collect())


def quality(counts: Iterable[tuple[float, int, int]]) -> dict:
    """Realized quality from (score, positives, negatives) per distinct score.

    ``auc`` equals sklearn's ``roc_auc_score`` (a tie between a positive and a negative counts half),
    ``pr_auc`` its ``average_precision_score`` (one threshold per distinct score), ``brier`` its
    ``brier_score_loss``; ``lift_at_10`` is the churn rate among the highest-scored 10 % over the
    overall rate, a tied group at the cut counted in proportion. ``calibration`` has, per tenth of
    the score range, the rows, the mean score and the observed churn rate; ``ece`` is their
    row-weighted mean absolute gap. AUC and average precision are None when one class is absent.
    """
    groups = sorted(counts)
    positives = sum(p for _, p, _ in groups)
    negatives = sum(n for _, _, n in groups)
    rows = positives + negatives
    if rows == 0:
        raise ValueError("no labelled predictions: quality needs at least one row")

    auc = None
    if positives and negatives:
        below, total = 0, 0.0
        for _, pos, neg in groups:  # ascending: negatives scored strictly lower, plus half the ties
            total += pos * (below + 0.5 * neg)
            below += neg
        auc = total / (positives * negatives)

    pr_auc = None
    if positives:
        tp = fp = 0
        recall_before, pr_auc = 0.0, 0.0
        for _, pos, neg in reversed(groups):  # descending thresholds
            tp, fp = tp + pos, fp + neg
            recall = tp / positives
            pr_auc += (recall - recall_before) * (tp / (tp + fp))
            recall_before = recall

    brier = sum((pos * (1 - s) ** 2 + neg * s**2) for s, pos, neg in groups) / rows

    calibration = []
    for b in range(CALIBRATION_BINS):
        low, high = b / CALIBRATION_BINS, (b + 1) / CALIBRATION_BINS
        members = [(s, p, n) for s, p, n in groups if low <= s < high or (b == CALIBRATION_BINS - 1 and s == 1.0)]
        n_rows = sum(p + n for _, p, n in members)
        if n_rows:
            calibration.append({
                "bin": [low, high], "rows": n_rows,
                "mean_score": sum(s * (p + n) for s, p, n in members) / n_rows,
                "churn_rate": sum(p for _, p, _ in members) / n_rows,
            })
    ece = sum(c["rows"] * abs(c["mean_score"] - c["churn_rate"]) for c in calibration) / rows

    lift = None
    if positives:
        wanted, taken, hits = max(1.0, round(rows * LIFT_FRACTION)), 0.0, 0.0
        for _, pos, neg in reversed(groups):
            size = pos + neg
            share = min(1.0, (wanted - taken) / size)
            taken += size * share
            hits += pos * share
            if taken >= wanted:
                break
        lift = (hits / taken) / (positives / rows)

    return {
        "rows": rows, "positives": positives, "churn_rate": positives / rows,
        "auc": auc, "pr_auc": pr_auc, "brier": brier, "ece": ece, "lift_at_10": lift,
        "calibration": calibration,
    }
