"""Whether the deployed model has decayed: the monitoring job's daily figures against thresholds.

A monitored day is **decayed** when, for the production model,

- a source with at least ``min_rows`` scored rows that day (batch, endpoint capture, stream) has
  drifted: its score, or at least ``min_drifted_features`` of its features, has PSI >=
  ``psi_threshold`` or Jensen-Shannon distance >= ``js_threshold``; or
- the realized AUC of the prediction date whose label window closed that day is below ``auc_floor``
  (the training gate's floor: a model that would not pass the gate today).

Retraining is due when the last ``consecutive_days`` monitored days (each one present, scored by
the model in production today) are all decayed, and no retraining was triggered within them: after
a trigger, the streak has to build up again, so one decay triggers once. The decision reads only
the daily summaries and the earlier decisions, so rerunning a date decides the same way.

Invalid thresholds (``ThresholdsError``) and a missing summary of the day (``MissingSummaryError``)
are the same on every retry (the run's params; the monitor task finished without writing the summary),
so the functions the decide task calls fail it on its first try (``failing_fast``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from churn_ml.errors import CannotSucceedOnRetry, failing_fast


class ThresholdsError(CannotSucceedOnRetry, ValueError):
    """Thresholds no decision can use (the run's params): the same on every retry."""


class MissingSummaryError(CannotSucceedOnRetry, KeyError):
    """The day's monitoring summary is not there although the monitor task finished."""

    def __str__(self) -> str:  # the message, not KeyError's quoted repr of it
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Thresholds:
    psi_threshold: float = 0.25
    js_threshold: float = 0.25
    min_drifted_features: int = 3
    min_rows: int = 200
    auc_floor: float = 0.70
    consecutive_days: int = 3

    def __post_init__(self) -> None:
        if self.consecutive_days < 1:
            raise ThresholdsError(f"consecutive_days must be at least 1, got {self.consecutive_days}")
        if self.min_drifted_features < 1:
            raise ThresholdsError(f"min_drifted_features must be at least 1, got {self.min_drifted_features}")
        if not 0.0 < self.js_threshold <= 1.0:
            raise ThresholdsError(f"js_threshold is a distance in (0, 1], got {self.js_threshold}")

    @classmethod
    @failing_fast
    def from_params(cls, params: dict) -> Thresholds:
        """The thresholds among a run's params (others ignored); a value of the wrong type is a ThresholdsError."""
        names = cls.__dataclass_fields__
        values = {}
        for k, v in params.items():
            if k not in names:
                continue
            kind = type(getattr(cls, k))
            try:
                values[k] = kind(v)
            except (TypeError, ValueError) as err:
                raise ThresholdsError(f"param {k} must be a {kind.__name__}, got {v!r}: trigger the run with a valid "
                                      "value") from err
        return cls(**values)


def window(ds: str, days: int) -> list[str]:
    """The ``days`` dates ending with ``ds``, oldest first."""
    day = dt.date.fromisoformat(ds)
    return [(day - dt.timedelta(days=back)).isoformat() for back in range(days - 1, -1, -1)]


def _drifted(figures: dict, t: Thresholds) -> bool:
    return figures["psi"] >= t.psi_threshold or figures["js"] >= t.js_threshold


def day_findings(summary: dict, t: Thresholds) -> list[str]:
    """Why the day counts as decayed (empty: it does not)."""
    reasons = []
    for source, found in summary["sources"].items():
        if found.get("rows", 0) < t.min_rows:
            continue
        features = sorted(name for name, figures in found["features"].items() if _drifted(figures, t))
        if _drifted(found["score"], t):
            reasons.append(f"{source}: score drifted (PSI {found['score']['psi']:.3f}, JS {found['score']['js']:.3f})")
        if len(features) >= t.min_drifted_features:
            reasons.append(f"{source}: {len(features)} features drifted ({', '.join(features)})")
    quality = summary.get("quality", {})
    if quality.get("status") == "closed" and quality.get("auc") is not None and quality["auc"] < t.auc_floor:
        reasons.append(f"realized AUC {quality['auc']:.3f} of {quality['prediction_date']} is below the floor "
                       f"{t.auc_floor:.2f}")
    return reasons


@failing_fast
def decide(ds: str, summaries: dict[str, dict], decisions: dict[str, dict], t: Thresholds) -> dict:
    """The decision for ``ds`` from the daily summaries and earlier decisions (both keyed by date)."""
    if ds not in summaries:
        raise MissingSummaryError(
            f"no monitoring summary for {ds}, although the monitor task finished: the Spark job "
            "(include/jobs/churn_monitoring.py) writes it last, so it did not complete; see its log and clear monitor")
    model = summaries[ds]["model_version"]
    days = []
    dates = window(ds, t.consecutive_days)
    for d in dates:
        summary = summaries.get(d)
        if summary is None:
            days.append({"ds": d, "decayed": False, "reasons": ["not monitored"]})
        elif summary["model_version"] != model:
            days.append({"ds": d, "decayed": False, "reasons": [f"model v{summary['model_version']}, not v{model}"]})
        else:
            reasons = day_findings(summary, t)
            days.append({"ds": d, "decayed": bool(reasons), "reasons": reasons})
    triggered = [d for d in dates[:-1] if decisions.get(d, {}).get("retrain")]
    streak = all(d["decayed"] for d in days)
    retrain = streak and not triggered
    if retrain:
        reason = (f"model v{model} decayed on {t.consecutive_days} consecutive days ({dates[0]}..{ds}): "
                  + "; ".join(days[-1]["reasons"]))
    elif streak:
        reason = f"decayed, but retraining was already triggered on {triggered[-1]}"
    elif days[-1]["decayed"]:
        reason = (f"decayed on {sum(d['decayed'] for d in days)} of the last {t.consecutive_days} days "
                  f"({t.consecutive_days} consecutive needed): " + "; ".join(days[-1]["reasons"]))
    else:
        reason = "no decay"
    return {"ds": ds, "model_version": model, "retrain": retrain, "reason": reason, "days": days,
            "thresholds": asdict(t)}
