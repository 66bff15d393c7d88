"""Sample data generator: realistic raw churn data as daily partitions of a data lake.

Writes ``<out>/customers/dt=YYYY-MM-DD/part-00000.jsonl`` (the day's sign-ups) and
``<out>/events/dt=YYYY-MM-DD/part-00000.jsonl`` (the day's usage, support tickets, payment
failures, plan changes and cancellations), each partition closed by a ``_SUCCESS`` marker, the
way an upstream export lands data. ``<out>/_generator_manifest.json`` records, per partition,
how many records were written and how many bad ones were injected, so tests can check that the
quarantine caught every one.

Behaviour is driven by a hidden daily "dissatisfaction" state per customer: it lowers usage and
raises support tickets and downgrades, and together with the contract, payment failures and
tenure it sets a daily churn hazard. The pipeline only sees the behaviour, never the state, so the
signal is learnable but noisy. Deterministic for a given seed and knobs.

Drift (``--drift-from D --drift-strength S``, for testing model monitoring): a behaviour change
from day ``D`` on, such as a price rise. On ``D`` every active customer's dissatisfaction jumps by
``S`` and its mean-reversion target stays at ``S`` (instead of 0) from then on, so usage drops and
tickets, downgrades and churn rise at once and for good; sign-ups from ``D`` on pay ``10 % x S``
more. The knob draws no random numbers of its own, so every partition before ``D``, and the whole
output with the knob off, is byte for byte what the same seed gives without it.

Usage::

    python -m churn.datagen --out .lake/churn-lake/raw --customers 4000 --start 2026-01-01 --days 182
    python -m churn.datagen --out /tmp/drifted/raw --days 120 --drift-from 2026-04-01 --drift-strength 1.0
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from churn.schema import CONTRACTS, MAX_USAGE_MINUTES, PAYMENT_METHODS, PLANS, REGIONS

log = logging.getLogger(__name__)

PLAN_PRICE = {"basic": 19.0, "standard": 39.0, "premium": 69.0}
PAYMENT_FAILURE_RATE = {"card": 0.005, "bank_transfer": 0.002, "paypal": 0.005, "invoice": 0.015}
BAD_KINDS = ("malformed_line", "missing_id", "wrong_type", "impossible_value")
MANIFEST_NAME = "_generator_manifest.json"
# Monthly charge of sign-ups from the drift date on: +10 % per unit of drift strength.
DRIFT_PRICE_RISE = 0.10


@dataclass(frozen=True)
class GeneratorConfig:
    out: Path
    customers: int = 4000
    start: dt.date = dt.date(2026, 1, 1)
    days: int = 182
    seed: int = 7
    bad_fraction: float = 0.002
    drift_from: dt.date | None = None
    drift_strength: float = 0.0

    def __post_init__(self) -> None:
        if self.customers < 10:
            raise ValueError(f"--customers must be at least 10, got {self.customers}")
        if self.days < 1:
            raise ValueError(f"--days must be at least 1, got {self.days}")
        if not 0.0 <= self.bad_fraction < 0.5:
            raise ValueError(f"--bad-fraction must be in [0, 0.5), got {self.bad_fraction}")
        if not (math.isfinite(self.drift_strength) and self.drift_strength >= 0.0):
            raise ValueError(
                f"--drift-strength must be a finite number >= 0 (0 = no drift, 1.0 = a strong shift), "
                f"got {self.drift_strength}"
            )
        if self.drift_from is None:
            if self.drift_strength:
                raise ValueError(
                    f"--drift-strength {self.drift_strength} needs --drift-from YYYY-MM-DD, the first day of the change"
                )
        elif not self.start <= self.drift_from <= self.last_day:
            raise ValueError(
                f"--drift-from must be a generated day, {self.start} to {self.last_day} "
                f"(--start {self.start}, --days {self.days}), got {self.drift_from}"
            )

    @property
    def last_day(self) -> dt.date:
        return self.start + dt.timedelta(days=self.days - 1)

    def drifting(self, day: dt.date) -> bool:
        """Whether the behaviour change applies on ``day`` (never with the knob off)."""
        return self.drift_from is not None and self.drift_strength > 0.0 and day >= self.drift_from


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class _Population:
    """Column-oriented customer state; grows as customers sign up."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.signup: list[dt.date] = []
        self.plan = np.zeros(0, dtype=np.int64)
        self.contract = np.zeros(0, dtype=np.int64)
        self.payment = np.zeros(0, dtype=np.int64)
        self.base_usage = np.zeros(0)
        self.dissatisfaction = np.zeros(0)
        self.slow_dissatisfaction = np.zeros(0)
        self.sensitivity = np.zeros(0)
        self.recent_payfail = np.zeros(0)
        self.recent_downgrade = np.zeros(0)
        self.active = np.zeros(0, dtype=bool)

    def add(self, rng: np.random.Generator, n: int, signup_dates: list[dt.date]) -> list[int]:
        start = len(self.ids)
        self.ids.extend(f"C{start + i:07d}" for i in range(n))
        self.signup.extend(signup_dates)
        self.plan = np.concatenate([self.plan, rng.choice(3, size=n, p=[0.5, 0.35, 0.15])])
        self.contract = np.concatenate([self.contract, rng.choice(2, size=n, p=[0.7, 0.3])])
        self.payment = np.concatenate([self.payment, rng.choice(4, size=n, p=[0.45, 0.25, 0.2, 0.1])])
        self.base_usage = np.concatenate([self.base_usage, rng.lognormal(3.4, 0.5, size=n)])
        self.dissatisfaction = np.concatenate([self.dissatisfaction, rng.normal(0.0, 0.6, size=n)])
        self.slow_dissatisfaction = np.concatenate([self.slow_dissatisfaction, self.dissatisfaction[-n:] if n else np.zeros(0)])
        # How strongly dissatisfaction turns into churn: hidden, so the signal is not trivial.
        self.sensitivity = np.concatenate([self.sensitivity, rng.lognormal(0.0, 0.2, size=n)])
        self.recent_payfail = np.concatenate([self.recent_payfail, np.zeros(n)])
        self.recent_downgrade = np.concatenate([self.recent_downgrade, np.zeros(n)])
        self.active = np.concatenate([self.active, np.ones(n, dtype=bool)])
        return list(range(start, start + n))


def _customer_record(pop: _Population, i: int, rng: np.random.Generator, price_factor: float | None = None) -> dict:
    plan = PLANS[pop.plan[i]]
    charge = PLAN_PRICE[plan] * float(rng.uniform(0.9, 1.1))
    if price_factor is not None:  # only when drifting: the knob-off arithmetic stays exactly as it was
        charge *= price_factor
    return {
        "customer_id": pop.ids[i],
        "signup_date": pop.signup[i].isoformat(),
        "plan": plan,
        "monthly_charge": round(charge, 2),
        "contract": CONTRACTS[pop.contract[i]],
        "region": REGIONS[int(rng.integers(len(REGIONS)))],
        "payment_method": PAYMENT_METHODS[pop.payment[i]],
    }


def _corrupt(record: dict, kind: str, entity: str, day: dt.date, rng: np.random.Generator) -> str:
    """Return one bad line of the given kind, derived from a good record."""
    rec = dict(record)
    if kind == "malformed_line":
        line = json.dumps(rec)
        return line[: max(5, int(len(line) * rng.uniform(0.3, 0.8)))]
    if kind == "missing_id":
        key = "customer_id" if entity == "customers" or rng.random() < 0.5 else "event_id"
        if rng.random() < 0.5:
            rec.pop(key, None)
        else:
            rec[key] = None if rng.random() < 0.5 else ""
    elif kind == "wrong_type":
        if entity == "customers":
            rec["monthly_charge"] = "n/a"
        else:
            rec["value"] = "lots"
    elif kind == "impossible_value":
        if entity == "customers":
            if rng.random() < 0.5:
                rec["monthly_charge"] = -abs(rec["monthly_charge"])
            else:
                rec["signup_date"] = (day + dt.timedelta(days=400)).isoformat()
        else:
            rec["event_type"] = "usage"
            rec["value"] = -float(rng.uniform(1, 100))
    return json.dumps(rec)


def _write_partition(
    root: Path, entity: str, day: dt.date, records: list[dict], cfg: GeneratorConfig, rng: np.random.Generator
) -> dict:
    """Write one partition with injected bad lines; the marker goes last, as a real export does."""
    part = root / entity / f"dt={day.isoformat()}"
    if part.exists():
        shutil.rmtree(part)
    part.mkdir(parents=True)
    lines = [json.dumps(r) for r in records]
    n_bad = int(rng.binomial(len(records), cfg.bad_fraction)) if records and cfg.bad_fraction else 0
    kinds: dict[str, int] = {}
    for _ in range(n_bad):
        kind = BAD_KINDS[int(rng.integers(len(BAD_KINDS)))]
        kinds[kind] = kinds.get(kind, 0) + 1
        src = records[int(rng.integers(len(records)))]
        lines.insert(int(rng.integers(len(lines) + 1)), _corrupt(src, kind, entity, day, rng))
    tmp = part / ".part-00000.jsonl.tmp"
    tmp.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    os.replace(tmp, part / "part-00000.jsonl")
    (part / "_SUCCESS").touch()
    return {"records": len(lines), "bad": n_bad, "bad_by_kind": kinds}


def generate(cfg: GeneratorConfig) -> dict:
    """Generate the whole sample and return the manifest (also written next to the data)."""
    rng = np.random.default_rng(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    pop = _Population()
    manifest: dict = {
        "seed": cfg.seed,
        "customers": cfg.customers,
        "start": cfg.start.isoformat(),
        "days": cfg.days,
        "bad_fraction": cfg.bad_fraction,
        "partitions": {"customers": {}, "events": {}},
    }
    if cfg.drift_from is not None:  # absent with the knob off, so that manifest stays as it was too
        manifest["drift_from"] = cfg.drift_from.isoformat()
        manifest["drift_strength"] = cfg.drift_strength

    # Customers who signed up before the first day land in the first customers partition, as the
    # initial load of an export would.
    initial_signups = [cfg.start - dt.timedelta(days=int(d)) for d in rng.integers(1, 730, size=cfg.customers)]
    new_today = pop.add(rng, cfg.customers, initial_signups)
    daily_signup_rate = cfg.customers * 0.07 / 30.0

    for d in range(cfg.days):
        day = cfg.start + dt.timedelta(days=d)
        if d > 0:
            n_new = int(rng.poisson(daily_signup_rate))
            new_today = pop.add(rng, n_new, [day] * n_new)
        drifting = cfg.drifting(day)
        price_factor = 1.0 + DRIFT_PRICE_RISE * cfg.drift_strength if drifting else None
        customer_records = [_customer_record(pop, i, rng, price_factor) for i in new_today]
        manifest["partitions"]["customers"][day.isoformat()] = _write_partition(
            out, "customers", day, customer_records, cfg, rng
        )

        idx = np.flatnonzero(pop.active)
        n = idx.size
        # Hidden state: mean-reverting dissatisfaction with occasional shocks.
        shock = rng.random(n) < 0.004
        dis = pop.dissatisfaction[idx] * 0.98 + rng.normal(0.0, 0.12, n) + shock * rng.uniform(0.8, 2.0, n)
        if drifting:
            # Reversion towards the shifted target (0.02 x S a day); on the first day the whole
            # population's state also jumps by S: 0.98 x S on top of that, reverting with the rest.
            # Deterministic, no draws: the random sequence is the knob-off one.
            dis = dis + cfg.drift_strength * (1.0 if day == cfg.drift_from else 0.02)
        pop.dissatisfaction[idx] = dis
        # Churn follows a slow average of dissatisfaction: behaviour changes before people leave.
        slow = pop.slow_dissatisfaction[idx] * 0.9 + dis * 0.1
        pop.slow_dissatisfaction[idx] = slow
        tenure_days = np.array([(day - pop.signup[i]).days for i in idx], dtype=float)

        active_today = rng.random(n) < _sigmoid(1.8 - 1.6 * dis)
        minutes = np.where(active_today, rng.gamma(2.0, pop.base_usage[idx] * np.exp(-0.8 * dis) / 2.0), 0.0)
        minutes = np.minimum(minutes, MAX_USAGE_MINUTES)  # a day has no more (quality: value_out_of_range)
        tickets = rng.random(n) < (0.003 + 0.08 * _sigmoid(2.5 * dis - 2.5))
        payfail = rng.random(n) < np.array([PAYMENT_FAILURE_RATE[PAYMENT_METHODS[p]] for p in pop.payment[idx]])
        downgrade = (rng.random(n) < 0.002 + 0.006 * _sigmoid(2.0 * dis - 2.0)) & (pop.plan[idx] > 0)
        upgrade = (rng.random(n) < 0.0015) & (pop.plan[idx] < 2) & ~downgrade
        pop.plan[idx] = pop.plan[idx] - downgrade + upgrade
        pop.recent_payfail[idx] = pop.recent_payfail[idx] * 0.95 + payfail
        pop.recent_downgrade[idx] = pop.recent_downgrade[idx] * 0.97 + downgrade

        logit = (
            -8.4
            + 2.2 * pop.sensitivity[idx] * slow
            + 1.2 * (pop.contract[idx] == 0)
            + 1.3 * np.minimum(pop.recent_payfail[idx], 2.0)
            + 1.2 * np.minimum(pop.recent_downgrade[idx], 1.5)
            - 0.9 * np.minimum(tenure_days / 365.0, 2.0)
            + rng.normal(0.0, 0.2, n)
        )
        churn = (rng.random(n) < _sigmoid(logit)) & (tenure_days > 0)

        events: list[dict] = []
        seq = 0

        def emit(i: int, kind: str, value: float, second: int, day=day, d=d, events=events) -> None:  # bound per day
            nonlocal seq
            ts = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=second)
            events.append(
                {
                    "event_id": f"E{d:04d}-{seq:07d}",
                    "customer_id": pop.ids[i],
                    "event_ts": ts.isoformat() + "Z",
                    "event_type": kind,
                    "value": value,
                }
            )
            seq += 1

        seconds = rng.integers(0, 86_000, size=(n, 5))
        for k in range(n):
            i = int(idx[k])
            if minutes[k] > 0:
                emit(i, "usage", round(float(minutes[k]), 1), int(seconds[k, 0]))
            if tickets[k]:
                emit(i, "support_ticket", float(rng.integers(1, 4)), int(seconds[k, 1]))
            if payfail[k]:
                emit(i, "payment_failure", PLAN_PRICE[PLANS[pop.plan[i]]], int(seconds[k, 2]))
            if downgrade[k]:
                emit(i, "plan_change", -1.0, int(seconds[k, 3]))
            elif upgrade[k]:
                emit(i, "plan_change", 1.0, int(seconds[k, 3]))
            if churn[k]:
                emit(i, "cancellation", 0.0, 86_399)
        pop.active[idx[churn]] = False
        manifest["partitions"]["events"][day.isoformat()] = _write_partition(out, "events", day, events, cfg, rng)

    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    return manifest


def injected_bad_records(manifest: dict, entity: str, first: str, last: str) -> int:
    """Number of bad records the generator injected into ``entity`` partitions in [first, last]."""
    return sum(p["bad"] for day, p in manifest["partitions"][entity].items() if first <= day <= last)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="python -m churn.datagen")
    parser.add_argument("--out", required=True, type=Path, help="raw zone of the lake, e.g. .lake/churn-lake/raw")
    parser.add_argument("--customers", type=int, default=GeneratorConfig.customers, help="customers at the start")
    parser.add_argument("--start", type=dt.date.fromisoformat, default=GeneratorConfig.start, help="first day (YYYY-MM-DD)")
    parser.add_argument("--days", type=int, default=GeneratorConfig.days, help="number of daily partitions")
    parser.add_argument("--seed", type=int, default=GeneratorConfig.seed)
    parser.add_argument(
        "--bad-fraction", type=float, default=GeneratorConfig.bad_fraction, help="share of bad records to inject"
    )
    parser.add_argument(
        "--drift-from", type=dt.date.fromisoformat, default=None,
        help="first day of a behaviour change, e.g. a price rise (YYYY-MM-DD, within the generated days)",
    )
    parser.add_argument(
        "--drift-strength", type=float, default=GeneratorConfig.drift_strength,
        help="size of the change: dissatisfaction shift (1.0 = strong) and +10%% x strength on new sign-ups' charge",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        cfg = GeneratorConfig(**vars(args))
    except ValueError as err:
        parser.error(str(err))
    manifest = generate(cfg)
    total = {e: sum(p["records"] for p in parts.values()) for e, parts in manifest["partitions"].items()}
    bad = {e: sum(p["bad"] for p in parts.values()) for e, parts in manifest["partitions"].items()}
    log.info(
        "wrote %d days to %s: %d customer records, %d event records (%d and %d bad records injected)",
        cfg.days, cfg.out, total["customers"], total["events"], bad["customers"], bad["events"],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
