"""Quality rules for raw records: every record is either clean (typed) or quarantined with a reason.

Raw files are read with every field as a string plus Spark's corrupt-record column, so a record
that is malformed or has a value of the wrong type is never silently turned into a null: it gets
the reason of the first rule it breaks. Casts use ``try_cast`` so the rules behave the same with
ANSI mode on (Spark 4, local) and off (Spark 3.5 on Glue 5 / EMR 7).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from churn.schema import CONTRACTS, EVENT_TYPES, MAX_MONTHLY_CHARGE, PAYMENT_METHODS, PLANS, RAW_FIELDS, REGIONS

CORRUPT = "_corrupt_record"
QUARANTINE_COLUMNS = ("dt", "reason", "raw_record", "source_file")


def raw_schema(entity: str) -> T.StructType:
    fields = [T.StructField(name, T.StringType()) for name in RAW_FIELDS[entity]]
    return T.StructType([*fields, T.StructField(CORRUPT, T.StringType())])


def read_raw(spark: SparkSession, entity: str, partition_uris: list[str]) -> DataFrame:
    """Read raw JSON-lines partition folders (``.../dt=<day>/``) with string fields and a ``dt`` column."""
    if not partition_uris:
        raise ValueError(f"no raw {entity} partitions to read")
    return (
        spark.read.schema(raw_schema(entity))
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT)
        .json(partition_uris)
        .withColumn("source_file", F.col("_metadata.file_path"))
        .withColumn("dt", F.regexp_extract(F.col("source_file"), r"/dt=(\d{4}-\d{2}-\d{2})/", 1))
    )


def _try_cast(column: str, type_name: str) -> Column:
    return F.expr(f"try_cast(`{column}` AS {type_name})")


def _blank(column: str) -> Column:
    return F.col(column).isNull() | (F.trim(F.col(column)) == "")


def _not_in(column: str, allowed: tuple[str, ...]) -> Column:
    return F.col(column).isNull() | ~F.col(column).isin(*allowed)


def _first_failure(rules: list[tuple[str, Column]]) -> Column:
    reason = F.lit(None).cast("string")
    for name, broken in reversed(rules):
        reason = F.when(broken, F.lit(name)).otherwise(reason)
    return reason


def customer_rules() -> list[tuple[str, Column]]:
    signup = _try_cast("signup_date", "DATE")
    charge = _try_cast("monthly_charge", "DOUBLE")
    return [
        ("malformed_line", F.col(CORRUPT).isNotNull()),
        ("missing_customer_id", _blank("customer_id")),
        ("invalid_signup_date", signup.isNull()),
        ("signup_date_after_partition", signup > F.to_date(F.col("dt"))),
        ("unknown_plan", _not_in("plan", PLANS)),
        ("monthly_charge_not_a_number", charge.isNull()),
        ("monthly_charge_out_of_range", (charge <= 0) | (charge > MAX_MONTHLY_CHARGE)),
        ("unknown_contract", _not_in("contract", CONTRACTS)),
        ("unknown_region", _not_in("region", REGIONS)),
        ("unknown_payment_method", _not_in("payment_method", PAYMENT_METHODS)),
    ]


def event_rules() -> list[tuple[str, Column]]:
    ts = _try_cast("event_ts", "TIMESTAMP")
    value = _try_cast("value", "DOUBLE")
    event_type = F.col("event_type")
    return [
        ("malformed_line", F.col(CORRUPT).isNotNull()),
        ("missing_event_id", _blank("event_id")),
        ("missing_customer_id", _blank("customer_id")),
        ("invalid_event_ts", ts.isNull()),
        ("event_ts_outside_partition", F.to_date(ts) != F.to_date(F.col("dt"))),
        ("unknown_event_type", _not_in("event_type", EVENT_TYPES)),
        ("value_not_a_number", value.isNull()),
        ("negative_value", (value < 0) & (event_type != "plan_change")),
        ("invalid_ticket_severity", (event_type == "support_ticket") & ~value.isin(1.0, 2.0, 3.0)),
        ("invalid_plan_change", (event_type == "plan_change") & ~value.isin(-1.0, 1.0)),
    ]


RULES = {"customers": customer_rules, "events": event_rules}


def validate(raw: DataFrame, entity: str) -> DataFrame:
    """Add a ``reason`` column: null for a clean record, else the first rule it breaks."""
    return raw.withColumn("reason", _first_failure(RULES[entity]()))


def quarantined(validated: DataFrame, entity: str) -> DataFrame:
    """Bad records with the reason and the record as it arrived (the raw line when malformed)."""
    fields = F.to_json(F.struct(*[F.col(c) for c in RAW_FIELDS[entity]]))
    return validated.where(F.col("reason").isNotNull()).select(
        "dt",
        "reason",
        F.coalesce(F.col(CORRUPT), fields).alias("raw_record"),
        "source_file",
    )


def clean_customers(validated: DataFrame) -> DataFrame:
    """Typed clean customers; the latest record wins if a customer arrives twice."""
    return (
        validated.where(F.col("reason").isNull())
        .select(
            "customer_id",
            _try_cast("signup_date", "DATE").alias("signup_date"),
            "plan",
            _try_cast("monthly_charge", "DOUBLE").alias("monthly_charge"),
            "contract",
            "region",
            "payment_method",
            "dt",
        )
        .dropDuplicates(["customer_id", "dt"])
    )


def clean_events(validated: DataFrame, keep: tuple[str, ...] = ()) -> DataFrame:
    """Typed clean events, de-duplicated on event_id (an export may repeat a line); ``keep`` names
    further columns to carry along (the streaming job's source position and timestamps)."""
    return (
        validated.where(F.col("reason").isNull())
        .select(
            "event_id",
            "customer_id",
            _try_cast("event_ts", "TIMESTAMP").alias("event_ts"),
            "event_type",
            _try_cast("value", "DOUBLE").alias("value"),
            "dt",
            *keep,
        )
        .dropDuplicates(["event_id"])
    )


CLEANERS = {"customers": clean_customers, "events": clean_events}


def summarize(validated: DataFrame) -> dict[str, dict[str, int]]:
    """Per partition: total and bad record counts (one small aggregation)."""
    rows = (
        validated.groupBy("dt")
        .agg(F.count(F.lit(1)).alias("records"), F.count("reason").alias("bad"))
        .collect()
    )
    return {r["dt"]: {"records": int(r["records"]), "bad": int(r["bad"])} for r in rows}


def check_bad_fraction(
    entity: str, counts: dict[str, dict[str, int]], max_fraction: float, min_bad: int, errors_uri: str
) -> None:
    """Fail with a clear message when a partition has more bad records than allowed.

    A partition fails when its share of bad records is above ``max_fraction`` and it has at least
    ``min_bad`` of them: one bad line in a ten-record partition is noise, not an incident.
    """
    over = [
        (day, c["bad"], c["records"])
        for day, c in sorted(counts.items())
        if c["records"] and c["bad"] >= min_bad and c["bad"] / c["records"] > max_fraction
    ]
    if over:
        detail = "; ".join(f"dt={d}: {b} of {n} ({b / n:.1%})" for d, b, n in over)
        raise ValueError(
            f"{entity}: too many records failed validation ({detail}), above the limit of {max_fraction:.1%}. "
            f"Each bad record is in {errors_uri}/dt=<day>/ with its reason. Fix the source and rerun the date, "
            f"or raise --max-bad-fraction if this share is expected."
        )
