"""What a deployment checks on both targets: the model's canary rows must score as they did in training.

churn_train.py stores ``canary`` in evaluation.json: sample holdout rows spread over the score range and
the scores the booster gave them. A deployed model that loads another artifact, orders features
differently or runs different inference code cannot reproduce them.
"""

from __future__ import annotations

import json
import math

TOLERANCE = 2e-6  # the handlers answer with 6 decimals


def csv_body(canary: dict) -> str:
    """The canary rows as CSV with an id column (``canary-<i>``), missing values as empty fields."""
    return "".join(
        f"canary-{i}," + ",".join("" if v is None else repr(float(v)) for v in row) + "\n"
        for i, row in enumerate(canary["rows"])
    )


def json_body(canary: dict) -> str:
    return json.dumps({"instances": [{"id": f"canary-{i}", "features": row} for i, row in enumerate(canary["rows"])]})


def scores_from_csv(text: str) -> list[float]:
    return [float(line.rsplit(",", 1)[-1]) for line in text.splitlines() if line.strip()]


def mismatch(got: list[float], canary: dict) -> str | None:
    """None when ``got`` reproduces the canary scores, else what differs."""
    wanted = canary["scores"]
    if len(got) != len(wanted):
        return f"{len(wanted)} canary rows sent, {len(got)} scores returned"
    if not got:
        return None
    worst = max(range(len(got)), key=lambda i: abs(got[i] - wanted[i]))
    if not all(math.isfinite(s) for s in got) or abs(got[worst] - wanted[worst]) > TOLERANCE:
        return (f"canary row {worst} scored {got[worst]:.6f} but training scored it {wanted[worst]:.6f}; "
                "the deployed model does not reproduce the registered one")
    return None
