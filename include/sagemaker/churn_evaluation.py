"""Model evaluation on the time-based holdout: the metrics the quality gate compares, and the card plot.

The challenger and the current approved model (the champion) are scored on the same holdout rows
by the same functions, so their figures are comparable.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score, roc_curve

log = logging.getLogger("train.evaluation")

# name -> True when larger is better (the gate needs the direction).
METRICS = {"auc": True, "pr_auc": True, "logloss": False, "brier": False, "lift_at_10": True}


def lift_at(labels: np.ndarray, scores: np.ndarray, fraction: float = 0.10) -> float:
    """Churn rate among the top ``fraction`` of scores divided by the overall churn rate."""
    base = labels.mean()
    if base == 0:
        return 0.0
    top = max(1, int(round(len(scores) * fraction)))
    order = np.argsort(-scores, kind="stable")[:top]
    return float(labels[order].mean() / base)


def metrics(labels: np.ndarray, scores: np.ndarray, prefix: str) -> dict[str, float]:
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype="float64")
    clipped = np.clip(scores, 1e-7, 1 - 1e-7)
    values = {
        "auc": roc_auc_score(labels, scores),
        "pr_auc": average_precision_score(labels, scores),
        "logloss": log_loss(labels, clipped, labels=[0, 1]),
        "brier": brier_score_loss(labels, clipped),
        "lift_at_10": lift_at(labels, scores),
    }
    return {f"{prefix}:{name}": float(value) for name, value in values.items()}


def write_card_plot(
    path: Path, labels: np.ndarray, scores: dict[str, np.ndarray], importance: dict[str, float], title: str
) -> bool:
    """ROC curves (challenger and, when there is one, champion) and gain importance, as one PNG.

    Returns False (and logs why) when matplotlib is not installed: the card then has no plot, but
    training does not fail for it.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        log.warning("no model card plot: %s (include/sagemaker/requirements.txt pins matplotlib for the image)", err)
        return False
    fig, (roc_ax, imp_ax) = plt.subplots(1, 2, figsize=(12, 5))
    for name, values in scores.items():
        fpr, tpr, _ = roc_curve(labels, values)
        roc_ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(labels, values):.3f})")
    roc_ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC on the holdout")
    roc_ax.legend(loc="lower right")
    ranked = sorted(importance.items(), key=lambda kv: kv[1])[-15:]
    imp_ax.barh([k for k, _ in ranked], [v for _, v in ranked], color="tab:blue")
    imp_ax.set(xlabel="total gain", title="feature importance (top 15)")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
