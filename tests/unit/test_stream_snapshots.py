"""The streaming job's feature snapshots on the driver (``Snapshots``): each event meets its newest
usable snapshot, also when one micro-batch spans more snapshot days than the driver keeps loaded (a
job catching up after an outage, or a replay)."""

from __future__ import annotations

import datetime as dt

import numpy as np

from churn import features
from jobs import churn_stream_scoring as job

FIRST = dt.date(2026, 6, 1)


def _publish(spark, root: str, days: int) -> list[str]:
    """``days`` daily snapshots of customer C1 whose ``tenure_days`` is the day's index."""
    published = []
    for i in range(days):
        day = (FIRST + dt.timedelta(days=i)).isoformat()
        row = {c: 0.0 for c in features.FEATURE_COLUMNS} | {"customer_id": "C1", "tenure_days": float(i)}
        spark.createDataFrame([row]).write.parquet(f"{root}/dt={day}")  # with its _SUCCESS marker
        published.append(day)
    return published


def test_a_batch_spanning_more_days_than_are_kept_finds_every_snapshot(spark, tmp_path):
    days = _publish(spark, f"file://{tmp_path}/features", job.SNAPSHOT_DAYS_KEPT + 5)
    snapshots = job.Snapshots(spark, f"file://{tmp_path}/features", max_age_days=2)
    tenure = list(features.FEATURE_COLUMNS).index("tenure_days")
    event_days = np.array(days, dtype="datetime64[D]")

    def lookup(customers: list[str], on: np.ndarray):
        return snapshots.lookup(np.array(customers, dtype=object), on)

    # A batch of every day but the newest: each event meets its own day's snapshot.
    ages, rows = lookup(["C1"] * (len(days) - 1), event_days[:-1])
    assert ages.tolist() == [0] * (len(days) - 1)
    assert rows[:, tenure].tolist() == [float(i) for i in range(len(days) - 1)]
    # The next batch needs the newest day: loading it shrinks what is kept to SNAPSHOT_DAYS_KEPT days.
    ages, rows = lookup(["C1", "C2"], event_days[-1:].repeat(2))
    assert ages.tolist() == [0, -1] and rows[0, tenure] == len(days) - 1 and np.isnan(rows[1]).all()
    assert len(snapshots.loaded) == job.SNAPSHOT_DAYS_KEPT and days[-1] in snapshots.loaded
    # An old day again (a late batch of it): loaded again, and what is kept stays bounded.
    ages, rows = lookup(["C1"], event_days[:1])
    assert ages.tolist() == [0] and rows[0, tenure] == 0.0
    assert len(snapshots.loaded) == job.SNAPSHOT_DAYS_KEPT and days[0] in snapshots.loaded


def test_known_customers_are_those_of_the_newest_snapshot_days_until_a_newer_one_is_published(spark, tmp_path):
    root = f"file://{tmp_path}/features"
    assert job.KnownCustomers(spark, root).broadcast.value == frozenset()  # nothing published yet: nobody
    days = _publish(spark, root, job.SNAPSHOT_DAYS_KEPT + 1)
    old = {"customer_id": "GONE", **{c: 0.0 for c in features.FEATURE_COLUMNS}}
    spark.createDataFrame([old]).write.mode("append").parquet(f"{root}/dt={days[0]}")  # only in the oldest day
    known = job.KnownCustomers(spark, root)
    assert known.broadcast.value == frozenset({"C1"}) and known.days == days[1:]
    assert not known.outdated(set(days))
    newer = (FIRST + dt.timedelta(days=len(days))).isoformat()
    assert known.outdated(set(days) | {newer}), "a newer snapshot day restarts the query for its customers"
    known.broadcast.unpersist()
