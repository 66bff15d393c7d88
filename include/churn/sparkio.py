"""Lake I/O for Spark jobs through Hadoop's FileSystem API.

The same calls work for ``s3://`` on EMR Serverless and Glue and for ``file://`` under local
Spark, so the jobs take URIs and never branch on where they run.
"""

from __future__ import annotations

import json
import re

from pyspark.sql import DataFrame, SparkSession

_DAY = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")


def session(app_name: str) -> SparkSession:
    """The jobs' SparkSession: UTC, and ``dt`` partition values kept as strings."""
    return (
        SparkSession.builder.appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
        .getOrCreate()
    )


def _fs_path(spark: SparkSession, uri: str):
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def exists(spark: SparkSession, uri: str) -> bool:
    fs, path = _fs_path(spark, uri)
    return bool(fs.exists(path))


def delete(spark: SparkSession, uri: str) -> None:
    fs, path = _fs_path(spark, uri)
    if fs.exists(path):
        fs.delete(path, True)


def complete_partitions(spark: SparkSession, root: str) -> list[str]:
    """Days ``YYYY-MM-DD`` of the ``dt=`` partitions under ``root`` that carry a ``_SUCCESS`` marker."""
    fs, path = _fs_path(spark, root)
    if not fs.exists(path):
        return []
    days = []
    for status in fs.listStatus(path):
        match = _DAY.match(status.getPath().getName())
        if status.isDirectory() and match and fs.exists(status.getPath().suffix("/_SUCCESS")):
            days.append(match.group(1))
    return sorted(days)


def write_text(spark: SparkSession, uri: str, text: str) -> None:
    fs, path = _fs_path(spark, uri)
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()


def write_json(spark: SparkSession, uri: str, payload: dict) -> None:
    write_text(spark, uri, json.dumps(payload, indent=1, sort_keys=True, default=str))


def replace_partitions(
    spark: SparkSession,
    frame: DataFrame,
    root: str,
    days: list[str],
    fmt: str,
    partition_column: str = "dt",
    **options: str,
) -> None:
    """Make ``root/dt=<day>`` hold exactly ``frame``'s rows for each day in ``days``.

    Every listed partition is removed first, so a day whose new output is empty does not keep rows
    from an earlier run; then the frame is appended partitioned by day and each partition gets a
    ``_SUCCESS`` marker (Spark writes one only at the table root). Rerunning a day replaces
    exactly that day.
    """
    root = root.rstrip("/")
    for day in days:
        delete(spark, f"{root}/{partition_column}={day}")
    frame.write.mode("append").partitionBy(partition_column).format(fmt).options(**options).save(root)
    delete(spark, f"{root}/_SUCCESS")
    for day in days:
        write_text(spark, f"{root}/{partition_column}={day}/_SUCCESS", "")
