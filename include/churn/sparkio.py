"""Lake I/O for Spark jobs through Hadoop's FileSystem API.

The same calls work for ``s3://`` on EMR Serverless and Glue and for ``file://`` under local
Spark, so the jobs take URIs and never branch on where they run. Whole-file writes (``write_text``,
``write_json``) are atomic on both: readers poll some of these files while a job rewrites them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import uuid
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

_DAY = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")


def run_batch_job(app_name: str, parse_args, run, argv: list[str] | None = None) -> int:
    """A batch job's ``main``: logging, its arguments (``sys.argv`` by default), a session named
    ``<app_name>-<ds>``, ``run(spark, args)``, and the session stopped whatever happens."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    spark = session(f"{app_name}-{args.ds}")
    try:
        run(spark, args)
    finally:
        spark.stop()
    return 0


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


def replace_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace the local file ``path`` with ``data`` so that a concurrent reader sees the old content
    or the new one, never an empty or half-written file.

    Rewriting a file in place truncates it first: a process polling it (the DAG's health check, the
    streaming benchmark) can read it empty. So the data goes to a hidden temporary file in the same
    directory (same filesystem; the leading dot keeps Spark and Hadoop listings from picking it up),
    is flushed to disk, and ``os.replace`` renames it over the target, which is atomic on POSIX.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")  # unique: concurrent writers never share it
    try:
        with open(tmp, "xb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    # A checksum Hadoop's LocalFileSystem may have written next to an earlier version no longer
    # matches: a Hadoop read through that filesystem would fail on it.
    with contextlib.suppress(FileNotFoundError):
        target.with_name(f".{target.name}.crc").unlink()


def read_bytes(spark: SparkSession, uri: str) -> bytes:
    """The whole file at ``uri``; FileNotFoundError, naming it, when there is none.

    Through the FileSystem, not a DataFrame reader: those skip files named ``_*`` such as the
    ``_SUCCESS`` markers, which carry a run's facts here."""
    fs, path = _fs_path(spark, uri)
    if not fs.exists(path):
        raise FileNotFoundError(f"{uri} does not exist")
    stream = fs.open(path)
    try:
        return bytes(spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
    finally:
        stream.close()


def read_text(spark: SparkSession, uri: str) -> str:
    """The whole text of the file at ``uri`` (UTF-8); see ``read_bytes``."""
    return read_bytes(spark, uri).decode("utf-8")


def read_json(spark: SparkSession, uri: str) -> dict:
    return json.loads(read_text(spark, uri))


def write_bytes(spark: SparkSession, uri: str, data: bytes) -> None:
    """Write ``data`` to ``uri`` whole: a reader of the URI sees the previous version or this one.

    Local files (``file://``, the local target) are written aside and renamed over the target
    (``replace_file``): Hadoop's local ``create`` would truncate the file in place. Object stores
    (``s3://`` on EMR Serverless and Glue) publish an object only when its stream is closed, in one
    PUT, which is already atomic, and have no atomic rename: they are written directly.
    """
    fs, path = _fs_path(spark, uri)
    if fs.getUri().getScheme() == "file":
        replace_file(fs.makeQualified(path).toUri().getPath(), data)
        return
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(data))
    finally:
        stream.close()


def write_text(spark: SparkSession, uri: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``uri`` whole; see ``write_bytes``."""
    write_bytes(spark, uri, text.encode("utf-8"))


def write_json(spark: SparkSession, uri: str, payload: dict) -> None:
    write_text(spark, uri, json.dumps(payload, indent=1, sort_keys=True, default=str))


def replace_partitions(
    spark: SparkSession,
    frame: DataFrame,
    root: str,
    days: list[str],
    fmt: str,
    partition_column: str = "dt",
    object_store: bool | None = None,
    **options: str,
) -> None:
    """Make ``root/dt=<day>`` hold exactly ``frame``'s rows for each day in ``days``.

    Written aside, then swapped: the frame goes to ``root/_staging/<id>/`` first (Spark and Hive
    skip ``_`` folders), so a job that fails while writing leaves every published partition as it
    was. Each staged day gets stable file names (``part-00000.c000.csv``: a rerun replaces the same
    names instead of adding new ones beside them), then is swapped in:

    - on a filesystem (``file://``, the local target): the day's folder, marker included, by two
      renames (the old partition aside, the new one into place), then the old one is deleted;
    - on an object store (``s3://`` on EMR Serverless and Glue; ``object_store`` forces it), where a
      folder rename is a copy of each object in no set order: each data object is copied over its
      final name (a reader sees the old object or the new one), the objects the new set lacks are
      deleted, and the ``_SUCCESS`` marker is written last.

    A day whose new output is empty becomes an empty partition, keeping no rows from an earlier run.
    """
    root = root.rstrip("/")
    staging = f"{root}/_staging/{uuid.uuid4().hex}"
    frame.write.mode("overwrite").partitionBy(partition_column).format(fmt).options(**options).save(staging)
    fs, _ = _fs_path(spark, root)
    jvm = spark.sparkContext._jvm
    jvm_path = jvm.org.apache.hadoop.fs.Path
    if object_store is None:
        object_store = fs.getUri().getScheme() != "file"
    try:
        for day in days:
            staged = jvm_path(f"{staging}/{partition_column}={day}")
            final = jvm_path(f"{root}/{partition_column}={day}")
            fs.mkdirs(staged)
            parts = sorted(s.getPath().getName() for s in fs.listStatus(staged) if s.getPath().getName().startswith("part-"))
            names = [f"part-{index:05d}{name[name.index('.'):]}" for index, name in enumerate(parts)]
            for old, new in zip(parts, names):
                fs.rename(jvm_path(staged, old), jvm_path(staged, new))
            if object_store:
                conf = spark.sparkContext._jsc.hadoopConfiguration()
                fs.mkdirs(final)
                for name in names:  # copy with overwrite: one PUT replaces the object whole
                    jvm.org.apache.hadoop.fs.FileUtil.copy(fs, jvm_path(staged, name), fs, jvm_path(final, name),
                                                           True, True, conf)
                for status in fs.listStatus(final):
                    if status.getPath().getName() not in (*names, "_SUCCESS"):
                        fs.delete(status.getPath(), True)
                write_text(spark, f"{root}/{partition_column}={day}/_SUCCESS", "")
                continue
            write_text(spark, f"{staging}/{partition_column}={day}/_SUCCESS", "")
            if fs.exists(final):
                aside = jvm_path(f"{staging}/replaced-{day}")
                if not fs.rename(final, aside):
                    raise OSError(f"could not move {final} aside to replace it")
                if not fs.rename(staged, final):
                    fs.rename(aside, final)
                    raise OSError(f"could not move {staged} to {final}; the previous partition was put back")
            elif not fs.rename(staged, final):
                raise OSError(f"could not move {staged} to {final}")
    finally:
        fs.delete(jvm_path(staging), True)
