"""Point-in-time features and labels on small fixtures."""

from __future__ import annotations

import datetime as dt

import pytest

from churn import features

D = dt.date


def _customers(spark, rows):
    return spark.createDataFrame(
        [(cid, signup, "standard", 39.0, "monthly", "east", "card", "2026-01-01") for cid, signup in rows],
        "customer_id string, signup_date date, plan string, monthly_charge double, contract string, "
        "region string, payment_method string, dt string",
    )


def _events(spark, rows):
    return spark.createDataFrame(
        [(f"E{i}", cid, dt.datetime.combine(day, dt.time(12)), etype, float(value), day.isoformat())
         for i, (cid, day, etype, value) in enumerate(rows)],
        "event_id string, customer_id string, event_ts timestamp, event_type string, value double, dt string",
    )


def _features(spark, events, snapshot, customers=None):
    customers = customers if customers is not None else _customers(spark, [("C1", D(2025, 12, 1))])
    ev = _events(spark, events)
    frame = features.snapshot_features(customers, ev, ev, snapshot, snapshot)
    return {r["customer_id"]: r.asDict() for r in frame.collect()}


def test_event_on_the_snapshot_day_does_not_change_its_features(spark):
    snapshot = D(2026, 3, 10)
    before = [("C1", D(2026, 3, 9), "usage", 30), ("C1", D(2026, 3, 1), "support_ticket", 2)]
    base = _features(spark, before, snapshot)
    same_day = _features(spark, before + [("C1", snapshot, "usage", 500), ("C1", snapshot, "support_ticket", 3)], snapshot)
    assert base == same_day
    # ...while the same events one day earlier do count.
    earlier = _features(spark, before + [("C1", D(2026, 3, 9), "usage", 500)], snapshot)
    assert earlier["C1"]["usage_minutes_7d"] == base["C1"]["usage_minutes_7d"] + 500


def test_window_features(spark):
    snapshot = D(2026, 3, 31)
    rows = [
        ("C1", D(2026, 3, 30), "usage", 10),   # in 7d, 30d, 90d
        ("C1", D(2026, 3, 20), "usage", 20),   # in 30d, 90d
        ("C1", D(2026, 1, 15), "usage", 40),   # in 90d only
        ("C1", D(2026, 3, 5), "support_ticket", 1),
        ("C1", D(2026, 2, 1), "payment_failure", 39),
        ("C1", D(2026, 3, 2), "plan_change", -1),
    ]
    f = _features(spark, rows, snapshot)["C1"]
    assert (f["usage_minutes_7d"], f["usage_minutes_30d"], f["usage_minutes_90d"]) == (10, 30, 70)
    assert (f["active_days_7d"], f["active_days_30d"]) == (1, 2)
    assert f["days_since_last_usage"] == 1
    assert (f["tickets_30d"], f["payment_failures_30d"], f["payment_failures_90d"]) == (1, 0, 1)
    assert (f["downgrades_90d"], f["upgrades_90d"]) == (1, 0)
    assert f["tenure_days"] == (snapshot - D(2025, 12, 1)).days
    assert f["usage_trend_7d_vs_30d"] == pytest.approx(10 / 7 - 30 / 30, abs=1e-3)
    assert list(f)[2:] == list(features.FEATURE_COLUMNS)


def test_only_active_customers_get_features(spark):
    snapshot = D(2026, 3, 10)
    customers = _customers(spark, [("C1", D(2025, 12, 1)), ("CANCELLED", D(2025, 12, 1)), ("NEW", snapshot)])
    rows = [("CANCELLED", D(2026, 3, 1), "cancellation", 0), ("C1", D(2026, 3, 10), "cancellation", 0)]
    got = _features(spark, rows, snapshot, customers)
    # Cancelled before the snapshot: gone. Cancelling on the snapshot day: still a customer at its start.
    # Signing up on the snapshot day: not a customer yet.
    assert sorted(got) == ["C1"]


def test_labels_use_the_window_after_the_snapshot(spark):
    customers = _customers(spark, [("STAYS", D(2025, 12, 1)), ("LEAVES", D(2025, 12, 1)), ("LATER", D(2025, 12, 1))])
    cancellations = _events(spark, [("LEAVES", D(2026, 3, 20), "cancellation", 0), ("LATER", D(2026, 4, 15), "cancellation", 0)])
    labels = features.churn_labels(customers, cancellations, D(2026, 3, 10), D(2026, 3, 10), window_days=30)
    got = {r["customer_id"]: r[features.LABEL_COLUMN] for r in labels.collect()}
    assert got == {"STAYS": 0, "LEAVES": 1, "LATER": 0}
