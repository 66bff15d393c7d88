"""Quality rules for raw records: every record is either clean (typed) or quarantined with a reason.

Raw records (a file's lines, a stream's records) are parsed by one function (``parse_records``)
with every field as a string plus Spark's corrupt-record column, so a record that is malformed or
has a value of the wrong type is never silently turned into a null: it gets the reason of the first
rule it breaks. A record over ``MAX_RECORD_BYTES`` is not parsed at all (``record_too_large``; the
errors keep its first characters). Casts use ``try_cast`` so the rules behave the same with ANSI
mode on (Spark 4, local) and off (Spark 3.5 on Glue 5 / EMR 7).

The batch features job and the streaming job apply the same rules, with the same reason codes: ids
of ``ID_PATTERN`` (``invalid_event_id``, ``invalid_customer_id``), finite numbers in range
(``value_not_finite``, ``value_out_of_range``, ``monthly_charge_not_finite``), the record size.
The stream adds ``event_ts_in_future`` (an event time more than the allowed skew after the record
reached the stream); a file has its partition day instead (``event_ts_outside_partition``).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from churn.schema import (
    CONTRACTS,
    EVENT_TYPES,
    ID_PATTERN,
    MAX_MONTHLY_CHARGE,
    MAX_RECORD_BYTES,
    MAX_USAGE_MINUTES,
    PAYMENT_METHODS,
    PLANS,
    RAW_FIELDS,
    RECORD_PREFIX_CHARS,
    REGIONS,
)

CORRUPT = "_corrupt_record"
TOO_LARGE = "_record_too_large"  # set by parse_records: the record was over the size cap, not parsed
QUARANTINE_COLUMNS = ("dt", "reason", "raw_record", "source_file")


def raw_schema(entity: str) -> T.StructType:
    fields = [T.StructField(name, T.StringType()) for name in RAW_FIELDS[entity]]
    return T.StructType([*fields, T.StructField(CORRUPT, T.StringType())])


def parse_records(frame: DataFrame, entity: str, text: str, max_record_bytes: int = MAX_RECORD_BYTES,
                  size: str | None = None) -> DataFrame:
    """``frame`` with the raw fields of the JSON record in column ``text`` (strings), ``CORRUPT``
    (the text when it is not a JSON object of those fields) and ``TOO_LARGE``. ``size`` names a
    column with the record's size in bytes when ``text`` is not the whole record (a stream source
    that passes on only the start of a huge record); else it is the UTF-8 length of ``text``. A record
    over ``max_record_bytes`` is not parsed: its fields are null and ``CORRUPT`` has its first
    ``RECORD_PREFIX_CHARS`` characters and its size, which is what the errors file keeps."""
    record_bytes = F.col(size) if size else F.octet_length(text)
    too_large = F.coalesce(record_bytes > F.lit(max_record_bytes), F.lit(False))
    parsed = frame.select(
        "*",
        too_large.alias(TOO_LARGE),
        F.from_json(
            F.when(~too_large, F.col(text)), raw_schema(entity),
            {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT},
        ).alias("_record"),
    ).select("*", "_record.*").drop("_record")
    prefix = F.concat(F.substring(text, 1, RECORD_PREFIX_CHARS),
                      F.format_string("... [%d bytes, over the limit of %d]", record_bytes, F.lit(max_record_bytes)))
    return parsed.withColumn(CORRUPT, F.when(F.col(TOO_LARGE), prefix).otherwise(F.col(CORRUPT)))


def read_raw(spark: SparkSession, entity: str, partition_uris: list[str],
             max_record_bytes: int = MAX_RECORD_BYTES) -> DataFrame:
    """Read raw JSON-lines partition folders (``.../dt=<day>/``) with string fields and a ``dt`` column:
    each non-blank line is one record, parsed as the streaming job parses a stream record."""
    if not partition_uris:
        raise ValueError(f"no raw {entity} partitions to read")
    lines = (
        spark.read.text(partition_uris)
        .select(F.col("value").alias("_line"), F.col("_metadata.file_path").alias("source_file"))
        .where(F.trim("_line") != "")
        .withColumn("dt", F.regexp_extract(F.col("source_file"), r"/dt=(\d{4}-\d{2}-\d{2})/", 1))
    )
    return parse_records(lines, entity, "_line", max_record_bytes).drop("_line")


def _try_cast(column: str, type_name: str) -> Column:
    return F.expr(f"try_cast(`{column}` AS {type_name})")


def _blank(column: str) -> Column:
    return F.col(column).isNull() | (F.trim(F.col(column)) == "")


def _not_in(column: str, allowed: tuple[str, ...]) -> Column:
    return F.col(column).isNull() | ~F.col(column).isin(*allowed)


def _invalid_id(column: str) -> Column:
    """Not an id of ``ID_PATTERN`` (the whole string: Java's ``\\z``, not ``$``, which also matches
    before a final line break)."""
    return ~F.col(column).rlike(rf"\A{ID_PATTERN}\z")


# Spark's JSON parser keeps a number beyond a double (1e400) in a string field as this quoted text.
_OVERFLOWED = ('"Infinity"', '"-Infinity"', '"NaN"')


def _not_finite(value: Column) -> Column:
    return F.isnan(value) | value.isin(float("inf"), float("-inf"))


def _size_rules(columns: list[str]) -> list[tuple[str, Column]]:
    return [("record_too_large", F.col(TOO_LARGE))] if TOO_LARGE in columns else []


def _first_failure(rules: list[tuple[str, Column]]) -> Column:
    reason = F.lit(None).cast("string")
    for name, broken in reversed(rules):
        reason = F.when(broken, F.lit(name)).otherwise(reason)
    return reason


def customer_rules(columns: list[str], max_event_skew_seconds: float | None = None) -> list[tuple[str, Column]]:
    signup = _try_cast("signup_date", "DATE")
    charge = _try_cast("monthly_charge", "DOUBLE")
    return [
        *_size_rules(columns),
        ("malformed_line", F.col(CORRUPT).isNotNull()),
        ("missing_customer_id", _blank("customer_id")),
        ("invalid_customer_id", _invalid_id("customer_id")),
        ("invalid_signup_date", signup.isNull()),
        ("signup_date_after_partition", signup > F.to_date(F.col("dt"))),
        ("unknown_plan", _not_in("plan", PLANS)),
        ("monthly_charge_not_finite", _not_finite(charge) | F.col("monthly_charge").isin(*_OVERFLOWED)),
        ("monthly_charge_not_a_number", charge.isNull()),
        ("monthly_charge_out_of_range", (charge <= 0) | (charge > MAX_MONTHLY_CHARGE)),
        ("unknown_contract", _not_in("contract", CONTRACTS)),
        ("unknown_region", _not_in("region", REGIONS)),
        ("unknown_payment_method", _not_in("payment_method", PAYMENT_METHODS)),
    ]


def event_rules(columns: list[str], max_event_skew_seconds: float | None = None) -> list[tuple[str, Column]]:
    ts = _try_cast("event_ts", "TIMESTAMP")
    value = _try_cast("value", "DOUBLE")
    event_type = F.col("event_type")
    future = []
    if max_event_skew_seconds is not None:  # the stream: the record's arrival time is known
        future = [("event_ts_in_future", F.expr("unix_micros(try_cast(event_ts AS TIMESTAMP))")
                   > F.expr("unix_micros(arrival_ts)") + F.lit(int(max_event_skew_seconds * 1_000_000)))]
    return [
        *_size_rules(columns),
        ("malformed_line", F.col(CORRUPT).isNotNull()),
        ("missing_event_id", _blank("event_id")),
        ("invalid_event_id", _invalid_id("event_id")),
        ("missing_customer_id", _blank("customer_id")),
        ("invalid_customer_id", _invalid_id("customer_id")),
        ("invalid_event_ts", ts.isNull()),
        ("event_ts_outside_partition", F.to_date(ts) != F.to_date(F.col("dt"))),
        *future,
        ("unknown_event_type", _not_in("event_type", EVENT_TYPES)),
        ("value_not_finite", _not_finite(value) | F.col("value").isin(*_OVERFLOWED)),
        ("value_not_a_number", value.isNull()),
        ("negative_value", (value < 0) & (event_type != "plan_change")),
        ("value_out_of_range", ((event_type == "usage") & (value > MAX_USAGE_MINUTES))
         | ((event_type == "payment_failure") & (value > MAX_MONTHLY_CHARGE))),
        ("invalid_ticket_severity", (event_type == "support_ticket") & ~value.isin(1.0, 2.0, 3.0)),
        ("invalid_plan_change", (event_type == "plan_change") & ~value.isin(-1.0, 1.0)),
    ]


RULES = {"customers": customer_rules, "events": event_rules}


def validate(raw: DataFrame, entity: str, max_event_skew_seconds: float | None = None) -> DataFrame:
    """Add a ``reason`` column: null for a clean record, else the first rule it breaks. With
    ``max_event_skew_seconds`` (the stream; needs an ``arrival_ts`` column), an event time more than
    that after the record's arrival is ``event_ts_in_future``."""
    return raw.withColumn("reason", _first_failure(RULES[entity](raw.columns, max_event_skew_seconds)))


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
    """Typed clean events, de-duplicated per customer on event_id (an export may repeat a line; two
    customers' events with the same id are two events, as in the streaming job's per-customer state);
    ``keep`` names further columns to carry along (the streaming job's source position and timestamps)."""
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
        .dropDuplicates(["customer_id", "event_id"])
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
