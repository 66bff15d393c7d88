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


def event_features(snapshots: DataFrame, events: DataFrame, max_snapshot_age_days: int = 2,
                   known_by: str | None = None) -> DataFrame:
    """Features as of each event: the customer's latest snapshot before it plus every event of the
    customer since that snapshot, up to and including this one.

    ``snapshots`` has KEY_COLUMNS + FEATURE_COLUMNS (the ``features/`` table); ``events`` has clean,
    typed events without repeated ids per customer (``event_id, customer_id, event_ts, event_type,
    value`` and any other columns, which are kept; an event is keyed by customer and id, as in the
    streaming job's per-customer state). Snapshot ``s`` is the state at the start of day ``s``, so
    the snapshot of an event on day ``d`` is the newest ``s <= d``, used when it is at most
    ``max_snapshot_age_days`` old. The event's history is the customer's events from the start of
    day ``s`` up to it in event-time order (``(event_ts, event_id)``), the event included; with
    ``known_by`` (a column, e.g. the streaming job's micro-batch), only those whose ``known_by`` is at
    most the event's: what the streaming job knew when it scored it (``churn.event_state``). The
    history adds:

    * usage: its minutes to the 7/30/90-day sums (summed in event-time order, then added to the
      snapshot's), each distinct day with usage one active day to the 7/30-day counts (capped at
      the window), and ``days_since_last_usage`` = days since the newest usage day;
    * support tickets, payment failures: their number to the 30- and 90-day counts;
    * plan changes: to ``downgrades_90d`` (value -1) or ``upgrades_90d`` (+1);
    * ``tenure_days`` and, with no usage in the history, ``days_since_last_usage`` advance by the
      snapshot's age in days; ``usage_trend_7d_vs_30d`` is recomputed from the updated sums.

    Windows are not shifted by the snapshot's age: the features are the snapshot's plus the
    history, not a recomputation as of the event. Events with no usable snapshot (an unknown
    customer, one who signed up after the latest snapshot, or a snapshot that is too old) get a null
    ``snapshot_date`` and null features; the caller decides what to do with them. Columns: the
    events' columns + ``snapshot_date`` + FEATURE_COLUMNS.
    """
    event_day = F.to_date("event_ts")
    candidates = events.alias("e").join(
        snapshots.alias("s"),
        (F.col("e.customer_id") == F.col("s.customer_id"))
        & (F.col("s.snapshot_date") <= event_day)
        & (F.col("s.snapshot_date") >= F.date_sub(event_day, max_snapshot_age_days)),
        "left",
    )
    newest = Window.partitionBy(F.col("e.customer_id"), F.col("e.event_id")).orderBy(
        F.col("s.snapshot_date").desc_nulls_last())
    picked = (
        candidates.withColumn("_rank", F.row_number().over(newest))
        .where(F.col("_rank") == 1)
        .select("e.*", "s.snapshot_date", *[F.col(f"s.{c}").alias(f"_s_{c}") for c in FEATURE_COLUMNS])
    )

    # The history of each event with a snapshot: a self-join on the customer, then one row per event.
    history = events.select(
        F.col("customer_id").alias("_h_customer"), F.col("event_id").alias("_h_id"),
        F.col("event_ts").alias("_h_ts"), F.col("event_type").alias("_h_type"), F.col("value").alias("_h_value"),
        *([F.col(known_by).alias("_h_known")] if known_by else []),
    )
    h_day = F.to_date("_h_ts")
    earlier = (F.col("_h_ts") < F.col("event_ts")) | (
        (F.col("_h_ts") == F.col("event_ts")) & (F.col("_h_id") <= F.col("event_id")))
    condition = (F.col("_h_customer") == F.col("customer_id")) & (h_day >= F.col("snapshot_date")) & earlier
    if known_by:
        condition = condition & (F.col("_h_known") <= F.col(known_by))
    h_type, h_value = F.col("_h_type"), F.col("_h_value")
    h_usage = h_type == "usage"

    def count(condition: Column) -> Column:
        return F.sum(F.when(condition, 1).otherwise(0)).cast("double")

    # Minutes in event-time order, folded from 0.0: the streaming operator's sums, bit for bit.
    ordered_minutes = F.array_sort(F.collect_list(F.struct(
        "_h_ts", "_h_id", F.when(h_usage, h_value).otherwise(F.lit(0.0)).alias("minutes"))))
    folded = (
        picked.where(F.col("snapshot_date").isNotNull()).select("event_id", "customer_id", "event_ts", "snapshot_date",
                                                                *([known_by] if known_by else []))
        .join(history, condition)
        .groupBy("customer_id", "event_id")
        .agg(
            F.aggregate(ordered_minutes, F.lit(0.0), lambda acc, x: acc + x["minutes"]).alias("_h_minutes"),
            F.size(F.collect_set(F.when(h_usage, h_day))).cast("double").alias("_h_active_days"),
            F.max(F.when(h_usage, h_day)).alias("_h_last_usage"),
            count(h_type == "support_ticket").alias("_h_tickets"),
            count(h_type == "payment_failure").alias("_h_failures"),
            count((h_type == "plan_change") & (h_value < 0)).alias("_h_downgrades"),
            count((h_type == "plan_change") & (h_value > 0)).alias("_h_upgrades"),
        )
    )
    joined = picked.join(folded, ["customer_id", "event_id"], "left")
    age = F.datediff(event_day, F.col("snapshot_date"))

    def base(column: str) -> Column:
        return F.col(f"_s_{column}")

    updated = {
        "tenure_days": base("tenure_days") + age,
        "usage_minutes_7d": base("usage_minutes_7d") + F.col("_h_minutes"),
        "usage_minutes_30d": base("usage_minutes_30d") + F.col("_h_minutes"),
        "usage_minutes_90d": base("usage_minutes_90d") + F.col("_h_minutes"),
        "active_days_7d": F.least(base("active_days_7d") + F.col("_h_active_days"), F.lit(7.0)),
        "active_days_30d": F.least(base("active_days_30d") + F.col("_h_active_days"), F.lit(30.0)),
        "days_since_last_usage": F.coalesce(
            F.datediff(event_day, F.col("_h_last_usage")).cast("double"),
            F.least(base("days_since_last_usage") + age, F.lit(float(LOOKBACK_DAYS))),
        ),
        "tickets_30d": base("tickets_30d") + F.col("_h_tickets"),
        "tickets_90d": base("tickets_90d") + F.col("_h_tickets"),
        "payment_failures_30d": base("payment_failures_30d") + F.col("_h_failures"),
        "payment_failures_90d": base("payment_failures_90d") + F.col("_h_failures"),
        "downgrades_90d": base("downgrades_90d") + F.col("_h_downgrades"),
        "upgrades_90d": base("upgrades_90d") + F.col("_h_upgrades"),
    }
    updated["usage_trend_7d_vs_30d"] = F.round(
        updated["usage_minutes_7d"] / 7.0 - updated["usage_minutes_30d"] / 30.0, 4
    )
    columns = [(updated[c] if c in updated else base(c)).cast("double").alias(c) for c in FEATURE_COLUMNS]
    kept = [c for c in picked.columns if not c.startswith("_s_")]
    return joined.select(*kept, *columns)
