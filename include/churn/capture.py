"""The endpoint's data capture, read back: SageMaker's capture files as rows of features and scores.

One reader for both targets: SageMaker writes the files on AWS (``DataCaptureConfig`` of the
endpoint config, plugins/churn_ml/training_requests.py), the local Runtime router writes the same
records in the same layout on the local target (local_aws/data_capture.py):

    <root>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm>-<ss>-<mmm>-<uuid>.jsonl      (UTC hour of the inference)

one JSON record per line, one record per captured invocation::

    {"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                                       "data": "...", "encoding": "CSV"},
                     "endpointOutput": {"observedContentType": "text/csv; charset=utf-8", "mode": "OUTPUT",
                                        "data": "...", "encoding": "CSV"}},
     "eventMetadata": {"eventId": "<uuid>", "inferenceTime": "2026-06-01T12:00:00Z"}, "eventVersion": "0"}

``data`` is the body as text when ``encoding`` is CSV or JSON, and base64 when it is BASE64 (a
type the config's CaptureContentTypeHeader does not list). The bodies are what the endpoint takes
and gives (include/sagemaker/inference.py): CSV lines of the model's features in
``FEATURE_COLUMNS`` order, optionally preceded by an id (the streaming job sends ``<id>,<features>``);
an empty field or ``nan`` is a missing value; the answer has one line per request line, ``score``
or ``<id>,score``. So a record gives one row per line, paired with the answer's line in order.

What cannot be used is returned as rejected records (``reason``, ``raw_record``, ``source_file``),
never dropped: a line that is not JSON, a record without input or output (or its event metadata),
a body that is not CSV or cannot be decoded, input and output line counts that differ, lines of the
wrong number of fields, values that are not decimal numbers. The endpoint only captures requests it
answered, so a record with one bad line is foreign or damaged as a whole and is rejected whole.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StringType, StructField, StructType, TimestampType

from churn import sparkio
from churn.features import FEATURE_COLUMNS

CSV_TYPES = ("text/csv", "text/plain")  # what inference.py reads as CSV (text/plain is its alias)
_SIDE = StructType([StructField(name, StringType()) for name in ("observedContentType", "mode", "data", "encoding")])
_CORRUPT = "_corrupt_record"
RECORD_SCHEMA = StructType([
    StructField("captureData", StructType([StructField("endpointInput", _SIDE), StructField("endpointOutput", _SIDE)])),
    StructField("eventMetadata", StructType([StructField("eventId", StringType()),
                                             StructField("inferenceTime", StringType())])),
    StructField("eventVersion", StringType()),
    StructField(_CORRUPT, StringType()),
])
ROWS_SCHEMA = StructType(
    [StructField("endpoint_name", StringType()), StructField("variant_name", StringType()),
     StructField("event_id", StringType()), StructField("inference_time", TimestampType())]
    + [StructField(name, DoubleType()) for name in FEATURE_COLUMNS]
    + [StructField("score", DoubleType())]
)
REJECTED_SCHEMA = StructType([StructField(name, StringType()) for name in ("reason", "raw_record", "source_file")])
REASONS = ("unparseable_json", "missing_capture_data", "missing_event_metadata", "unsupported_content_type",
           "undecodable_data", "line_count_mismatch", "wrong_field_count", "non_numeric_value")

# Numbers as the endpoint reads them (inference.py: decimal ASCII, no inf/nan spellings, no hex or
# suffixes that a plain cast would take); a missing value is an empty field or nan/NaN/NAN.
_NUMBER = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_MISSING = r"^\s*(nan|NaN|NAN)?\s*$"
_PATH = r"/([^/]+)/([^/]+)/\d{4}/\d{2}/\d{2}/\d{2}/[^/]+$"  # .../<endpoint>/<variant>/yyyy/mm/dd/hh/<file>
_WIDTH = len(FEATURE_COLUMNS)


def capture_files(spark: SparkSession, root_uri: str, day: dt.date) -> list[str]:
    """The capture files of the UTC day ``day`` under ``root_uri``, every endpoint and variant (none: [])."""
    pattern = f"{root_uri.rstrip('/')}/*/*/{day:%Y/%m/%d}/*/*.jsonl"
    fs, path = sparkio._fs_path(spark, pattern)
    found = fs.globStatus(path)
    return sorted(str(status.getPath().toString()) for status in (found or []) if status.isFile())


def read_capture(spark: SparkSession, root_uri: str, day: dt.date) -> tuple[DataFrame, DataFrame]:
    """(rows, rejected) of the day's capture files: ``ROWS_SCHEMA`` and ``REJECTED_SCHEMA``."""
    if isinstance(day, str):
        day = dt.date.fromisoformat(day)
    files = capture_files(spark, root_uri, day)
    if not files:
        return _empty(spark, ROWS_SCHEMA), _empty(spark, REJECTED_SCHEMA)
    raw = spark.read.text(files).select(F.col("value").alias("raw_record"),
                                        F.col("_metadata.file_path").alias("source_file"))
    return parse_capture(raw)


def _empty(spark: SparkSession, schema: StructType) -> DataFrame:
    """No rows, in ``schema``, planned in the JVM (an empty Python list would need Python workers)."""
    return spark.range(0).select(*[F.lit(None).cast(field.dataType).alias(field.name) for field in schema.fields])


def _lines(text: Column) -> Column:
    """The non-blank lines of a body."""
    return F.filter(F.split(text, r"\r?\n"), lambda line: ~line.rlike(r"^\s*$"))


def _decoded(side: str) -> Column:
    """A side's body as text: CSV and JSON as they are, BASE64 decoded; null when it cannot be."""
    encoding = F.upper(F.col(f"{side}.encoding"))
    data = F.col(f"{side}.data")
    binary = F.expr(f"try_to_binary(`{side}`.data, 'base64')")
    return (F.when(encoding.isin("CSV", "JSON"), data)
            .when(encoding == "BASE64", binary.cast("string")))


def _media(side: str) -> Column:
    return F.lower(F.trim(F.split(F.col(f"{side}.observedContentType"), ";").getItem(0)))


def _features(line: Column) -> Column:
    """The line's feature fields: all of them, or those after the id."""
    fields = F.split(line, ",")
    return F.when(F.size(fields) == _WIDTH + 1, F.slice(fields, 2, _WIDTH)).otherwise(fields)


def _bad_value(field: Column) -> Column:
    """Not a missing value and not a finite decimal number (1e400 overflows: the endpoint refuses it)."""
    infinite = F.when(field.rlike(_NUMBER), F.abs(F.trim(field).cast("double")) == float("inf")).otherwise(True)
    return ~field.rlike(_MISSING) & infinite


def _problem(pair: Column) -> Column:
    """What is wrong with one request line and its answer line (null: nothing)."""
    fields, answer = F.split(pair["input"], ","), F.split(pair["output"], ",")
    score = F.element_at(answer, -1)
    return (F.when(pair["input"].isNull() | pair["output"].isNull(), "line_count_mismatch")
            .when(~F.size(fields).isin(_WIDTH, _WIDTH + 1) | (F.size(answer) != F.size(fields) - _WIDTH + 1),
                  "wrong_field_count")
            .when(F.exists(_features(pair["input"]), _bad_value) | _bad_value(score) | score.rlike(_MISSING),
                  "non_numeric_value"))


def parse_capture(raw: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(rows, rejected) of capture records: ``raw`` has one record per row, ``raw_record`` (the
    line as written) and ``source_file``. A pure transform: the reader's logic, without the files."""
    record = F.from_json("raw_record", RECORD_SCHEMA, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT})
    parsed = (
        raw.where(~F.col("raw_record").rlike(r"^\s*$"))
        .select("raw_record", "source_file", record.alias("record"))
        .select("*", F.col("record.captureData.endpointInput").alias("input"),
                F.col("record.captureData.endpointOutput").alias("output"),
                F.expr("try_cast(record.eventMetadata.inferenceTime AS TIMESTAMP)").alias("inference_time"))
        .select("*", _decoded("input").alias("input_text"), _decoded("output").alias("output_text"))
        .select("*", F.zip_with(_lines(F.col("input_text")), _lines(F.col("output_text")),
                                lambda i, o: F.struct(i.alias("input"), o.alias("output"))).alias("pairs"))
    )
    # Reasons in the order they are checked; a record gets the first, per line the first line's.
    line_problems = F.filter(F.transform("pairs", _problem), lambda problem: problem.isNotNull())
    reason = (
        F.when(F.col("record").isNull() | F.col(f"record.{_CORRUPT}").isNotNull(), "unparseable_json")
        .when(F.col("input").isNull() | F.col("output").isNull(), "missing_capture_data")
        .when(F.col("record.eventMetadata.eventId").isNull() | F.col("inference_time").isNull(), "missing_event_metadata")
        .when(~_media("input").isin(*CSV_TYPES) | ~_media("output").isin(*CSV_TYPES), "unsupported_content_type")
        .when(F.col("input_text").isNull() | F.col("output_text").isNull(), "undecodable_data")
        .otherwise(F.try_element_at(line_problems, F.lit(1)))
    )
    checked = parsed.withColumn("reason", reason)
    rejected = checked.where(F.col("reason").isNotNull()).select(*REJECTED_SCHEMA.fieldNames())

    lines = checked.where(F.col("reason").isNull()).select(
        F.regexp_extract("source_file", _PATH, 1).alias("endpoint_name"),
        F.regexp_extract("source_file", _PATH, 2).alias("variant_name"),
        F.col("record.eventMetadata.eventId").alias("event_id"),
        "inference_time",
        F.explode("pairs").alias("pair"),
    )
    values = lines.select(
        "endpoint_name", "variant_name", "event_id", "inference_time",
        F.transform(_features(F.col("pair.input")), _number).alias("values"),
        _number(F.element_at(F.split("pair.output", ","), -1)).alias("score"),
    )
    rows = values.select(
        "endpoint_name", "variant_name", "event_id", "inference_time",
        *[F.col("values")[i].alias(name) for i, name in enumerate(FEATURE_COLUMNS)], "score",
    )
    return rows, rejected


def _number(field: Column) -> Column:
    """A checked field as a double; a missing value is null."""
    return F.when(field.rlike(_NUMBER), F.trim(field).cast("double"))
