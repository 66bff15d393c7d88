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
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass


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
            raise ValueError(f"consecutive_days must be at least 1, got {self.consecutive_days}")
        if self.min_drifted_features < 1:
            raise ValueError(f"min_drifted_features must be at least 1, got {self.min_drifted_features}")
        if not 0.0 < self.js_threshold <= 1.0:
            raise ValueError(f"js_threshold is a distance in (0, 1], got {self.js_threshold}")

    @classmethod
    def from_params(cls, params: dict) -> Thresholds:
        names = cls.__dataclass_fields__
        return cls(**{k: type(getattr(cls, k))(v) for k, v in params.items() if k in names})


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


def decide(ds: str, summaries: dict[str, dict], decisions: dict[str, dict], t: Thresholds) -> dict:
    """The decision for ``ds`` from the daily summaries and earlier decisions (both keyed by date)."""
    if ds not in summaries:
        raise KeyError(f"no monitoring summary for {ds}: the monitor task writes it before decide runs")
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
