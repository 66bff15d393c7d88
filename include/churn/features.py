"""Point-in-time churn features and labels: the one feature definition of the project.

A snapshot date ``s`` is the state at the start of day ``s``. Features for ``s`` use only events
strictly before ``s``; the label for ``s`` is whether the customer cancels in ``[s, s + W)``, so it
is known only once day ``s + W - 1`` has landed. Rolling windows run over a dense per-customer
daily grid with frames that end at the previous row, which is what makes an event on day ``s``
invisible to snapshot ``s``.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from churn.schema import CONTRACTS, PAYMENT_METHODS, PLANS, REGIONS

LOOKBACK_DAYS = 90
LABEL_WINDOW_DAYS = 30

KEY_COLUMNS = ("customer_id", "snapshot_date")
FEATURE_COLUMNS = (
    "tenure_days",
    "plan_tier",
    "contract_annual",
    "monthly_charge",
    "region_code",
    "payment_method_code",
    "usage_minutes_7d",
    "usage_minutes_30d",
    "usage_minutes_90d",
    "active_days_7d",
    "active_days_30d",
    "usage_trend_7d_vs_30d",
    "days_since_last_usage",
    "tickets_30d",
    "tickets_90d",
    "payment_failures_30d",
    "payment_failures_90d",
    "downgrades_90d",
    "upgrades_90d",
)
LABEL_COLUMN = "churned_30d"


def _code(column: str, vocabulary: tuple[str, ...]) -> Column:
    """Stable integer code of a category (its position in the shared vocabulary)."""
    expr = F.lit(None).cast("int")
    for i, value in reversed(list(enumerate(vocabulary))):
        expr = F.when(F.col(column) == value, F.lit(i)).otherwise(expr)
    return expr


def daily_activity(events: DataFrame) -> DataFrame:
    """One row per customer and day with activity: usage minutes and event counts."""
    etype = F.col("event_type")
    return (
        events.withColumn("activity_date", F.to_date("event_ts"))
        .groupBy("customer_id", "activity_date")
        .agg(
            F.sum(F.when(etype == "usage", F.col("value")).otherwise(0.0)).alias("usage_minutes"),
            F.max(F.when(etype == "usage", 1).otherwise(0)).alias("active"),
            F.sum(F.when(etype == "support_ticket", 1).otherwise(0)).alias("tickets"),
            F.sum(F.when(etype == "payment_failure", 1).otherwise(0)).alias("payment_failures"),
            F.sum(F.when((etype == "plan_change") & (F.col("value") < 0), 1).otherwise(0)).alias("downgrades"),
            F.sum(F.when((etype == "plan_change") & (F.col("value") > 0), 1).otherwise(0)).alias("upgrades"),
        )
    )


def customer_profile(customers: DataFrame, cancellations: DataFrame) -> DataFrame:
    """Static attributes per customer plus the date of the first cancellation (if any)."""
    first_cancel = (
        cancellations.where(F.col("event_type") == "cancellation")
        .groupBy("customer_id")
        .agg(F.min(F.to_date("event_ts")).alias("cancel_date"))
    )
    latest = Window.partitionBy("customer_id").orderBy(F.col("dt").desc())
    profile = (
        customers.withColumn("_rank", F.row_number().over(latest))
        .where(F.col("_rank") == 1)
        .select(
            "customer_id",
            "signup_date",
            _code("plan", PLANS).alias("plan_tier"),
            (F.col("contract") == CONTRACTS[1]).cast("int").alias("contract_annual"),
            F.col("monthly_charge").cast("double").alias("monthly_charge"),
            _code("region", REGIONS).alias("region_code"),
            _code("payment_method", PAYMENT_METHODS).alias("payment_method_code"),
        )
    )
    return profile.join(first_cancel, "customer_id", "left")


def _active_at(snapshot: Column) -> Column:
    """Signed up before the snapshot and not cancelled before it."""
    return (F.col("signup_date") < snapshot) & (F.col("cancel_date").isNull() | (F.col("cancel_date") >= snapshot))


def snapshot_features(
    customers: DataFrame,
    events: DataFrame,
    cancellations: DataFrame,
    first_snapshot: dt.date,
    last_snapshot: dt.date,
) -> DataFrame:
    """Features for every customer active at each snapshot date in ``[first_snapshot, last_snapshot]``.

    ``events`` needs the clean events of ``[first_snapshot - LOOKBACK_DAYS, last_snapshot)``;
    ``cancellations`` needs every clean cancellation before ``last_snapshot`` (older ones decide who
    is still a customer). Columns: KEY_COLUMNS + FEATURE_COLUMNS.
    """
    grid_start = first_snapshot - dt.timedelta(days=LOOKBACK_DAYS)
    profile = customer_profile(customers, cancellations).where(F.col("signup_date") < F.lit(last_snapshot))
    grid = profile.select(
        "customer_id",
        F.explode(
            F.sequence(F.greatest(F.col("signup_date"), F.lit(grid_start)), F.lit(last_snapshot))
        ).alias("activity_date"),
    )
    activity = daily_activity(
        events.where((F.to_date("event_ts") >= F.lit(grid_start)) & (F.to_date("event_ts") < F.lit(last_snapshot)))
    )
    daily = grid.join(activity, ["customer_id", "activity_date"], "left").na.fill(
        0, ["usage_minutes", "active", "tickets", "payment_failures", "downgrades", "upgrades"]
    )

    by_day = Window.partitionBy("customer_id").orderBy("activity_date")

    def last(days: int, column: str) -> Column:
        # Rows strictly before the snapshot row: the grid is dense, so rows are days.
        return F.coalesce(F.sum(column).over(by_day.rowsBetween(-days, -1)), F.lit(0))

    last_active = F.max(F.when(F.col("active") == 1, F.col("activity_date"))).over(
        by_day.rowsBetween(Window.unboundedPreceding, -1)
    )
    windowed = daily.select(
        "customer_id",
        F.col("activity_date").alias("snapshot_date"),
        last(7, "usage_minutes").alias("usage_minutes_7d"),
        last(30, "usage_minutes").alias("usage_minutes_30d"),
        last(90, "usage_minutes").alias("usage_minutes_90d"),
        last(7, "active").alias("active_days_7d"),
        last(30, "active").alias("active_days_30d"),
        last(30, "tickets").alias("tickets_30d"),
        last(90, "tickets").alias("tickets_90d"),
        last(30, "payment_failures").alias("payment_failures_30d"),
        last(90, "payment_failures").alias("payment_failures_90d"),
        last(90, "downgrades").alias("downgrades_90d"),
        last(90, "upgrades").alias("upgrades_90d"),
        last_active.alias("last_active_date"),
    ).where(F.col("snapshot_date").between(F.lit(first_snapshot), F.lit(last_snapshot)))

    snapshot = F.col("snapshot_date")
    features = (
        windowed.join(profile, "customer_id")
        .where(_active_at(snapshot))
        .withColumn("tenure_days", F.datediff(snapshot, F.col("signup_date")))
        .withColumn(
            "usage_trend_7d_vs_30d",
            F.round(F.col("usage_minutes_7d") / 7.0 - F.col("usage_minutes_30d") / 30.0, 4),
        )
        .withColumn(
            "days_since_last_usage",
            F.least(
                F.coalesce(F.datediff(snapshot, F.col("last_active_date")), F.lit(LOOKBACK_DAYS)),
                F.lit(LOOKBACK_DAYS),
            ),
        )
    )
    return features.select(
        *KEY_COLUMNS,
        *[F.col(c).cast("double").alias(c) for c in FEATURE_COLUMNS],
    )


def churn_labels(
    customers: DataFrame,
    cancellations: DataFrame,
    first_snapshot: dt.date,
    last_snapshot: dt.date,
    window_days: int = LABEL_WINDOW_DAYS,
) -> DataFrame:
    """``churned_30d`` for customers active at each snapshot; call only for closed label windows."""
    profile = customer_profile(customers, cancellations)
    snapshots = profile.select(
        "customer_id",
        "signup_date",
        "cancel_date",
        F.explode(F.sequence(F.lit(first_snapshot), F.lit(last_snapshot))).alias("snapshot_date"),
    )
    snapshot = F.col("snapshot_date")
    churned = F.col("cancel_date").isNotNull() & (F.col("cancel_date") < F.date_add(snapshot, window_days))
    return snapshots.where(_active_at(snapshot)).select(
        *KEY_COLUMNS, churned.cast("int").alias(LABEL_COLUMN)
    )


# --------------------------------------------------------------------------- streaming events
EVENT_KEY_COLUMNS = ("event_id", "customer_id", "event_ts", "event_type", "snapshot_date")


def event_features(snapshots: DataFrame, events: DataFrame, max_snapshot_age_days: int = 2) -> DataFrame:
    """Point-in-time features of each event: the customer's latest snapshot before it, plus the event.

    ``snapshots`` has KEY_COLUMNS + FEATURE_COLUMNS (the ``features/`` table); ``events`` has clean,
    typed events (``event_id, customer_id, event_ts, event_type, value`` and any other columns,
    which are kept). Snapshot ``s`` is the state at the start of day ``s``, so the latest snapshot
    before an event on day ``d`` is the newest ``s <= d``; it is used when it is at most
    ``max_snapshot_age_days`` old. The event then adds its own contribution:

    * usage: its minutes to the 7/30/90-day sums, one active day to the 7/30-day counts (capped at
      the window), ``days_since_last_usage`` = 0;
    * support ticket, payment failure: one to the 30- and 90-day counts;
    * plan change: one to ``downgrades_90d`` (value -1) or ``upgrades_90d`` (+1);
    * every event: ``tenure_days`` and (if not usage) ``days_since_last_usage`` advance by the
      snapshot's age in days; ``usage_trend_7d_vs_30d`` is recomputed from the updated sums.

    Windows are not shifted by the snapshot's age: the features are the snapshot's plus this one event,
    not a recomputation as of the event. Events with no usable snapshot (an unknown customer, one who
    signed up after the latest snapshot, or a snapshot that is too old) get a null ``snapshot_date``
    and null features; the caller decides what to do with them. Columns: the events' columns +
    ``snapshot_date`` + FEATURE_COLUMNS.
    """
    event_day = F.to_date("event_ts")
    candidates = events.alias("e").join(
        snapshots.alias("s"),
        (F.col("e.customer_id") == F.col("s.customer_id"))
        & (F.col("s.snapshot_date") <= event_day)
        & (F.col("s.snapshot_date") >= F.date_sub(event_day, max_snapshot_age_days)),
        "left",
    )
    newest = Window.partitionBy(F.col("e.event_id")).orderBy(F.col("s.snapshot_date").desc_nulls_last())
    picked = (
        candidates.withColumn("_rank", F.row_number().over(newest))
        .where(F.col("_rank") == 1)
        .select("e.*", "s.snapshot_date", *[F.col(f"s.{c}").alias(f"_s_{c}") for c in FEATURE_COLUMNS])
    )

    etype, value = F.col("event_type"), F.col("value")
    usage = etype == "usage"
    age = F.datediff(event_day, F.col("snapshot_date"))

    def base(column: str) -> Column:
        return F.col(f"_s_{column}")

    def plus(column: str, amount: Column) -> Column:
        return base(column) + amount

    def count_if(condition: Column) -> Column:
        return F.when(condition, F.lit(1.0)).otherwise(F.lit(0.0))

    minutes = F.when(usage, value).otherwise(F.lit(0.0))
    updated = {
        "tenure_days": plus("tenure_days", age),
        "usage_minutes_7d": plus("usage_minutes_7d", minutes),
        "usage_minutes_30d": plus("usage_minutes_30d", minutes),
        "usage_minutes_90d": plus("usage_minutes_90d", minutes),
        "active_days_7d": F.least(plus("active_days_7d", count_if(usage)), F.lit(7.0)),
        "active_days_30d": F.least(plus("active_days_30d", count_if(usage)), F.lit(30.0)),
        "days_since_last_usage": F.when(usage, F.lit(0.0)).otherwise(
            F.least(plus("days_since_last_usage", age), F.lit(float(LOOKBACK_DAYS)))
        ),
        "tickets_30d": plus("tickets_30d", count_if(etype == "support_ticket")),
        "tickets_90d": plus("tickets_90d", count_if(etype == "support_ticket")),
        "payment_failures_30d": plus("payment_failures_30d", count_if(etype == "payment_failure")),
        "payment_failures_90d": plus("payment_failures_90d", count_if(etype == "payment_failure")),
        "downgrades_90d": plus("downgrades_90d", count_if((etype == "plan_change") & (value < 0))),
        "upgrades_90d": plus("upgrades_90d", count_if((etype == "plan_change") & (value > 0))),
    }
    updated["usage_trend_7d_vs_30d"] = F.round(
        updated["usage_minutes_7d"] / 7.0 - updated["usage_minutes_30d"] / 30.0, 4
    )
    columns = [(updated[c] if c in updated else base(c)).cast("double").alias(c) for c in FEATURE_COLUMNS]
    kept = [c for c in picked.columns if not c.startswith("_s_")]
    return picked.select(*kept, *columns)
