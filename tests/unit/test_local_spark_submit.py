"""The local Spark runner works from the venv's python without scripts/env.sh (the venv's bin/ not on
PATH, no PYSPARK_PYTHON, no PYTHONPATH): ``.venv/bin/python benchmarks/streaming_latency.py`` once
failed with "spark-submit not found", then the streaming job with "No module named 'churn'"."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from local_aws import lake_files, spark
from local_aws.common import LocalJobError
from support import deployed_code

BESIDE = Path(sys.executable).parent / "spark-submit"


def _code() -> tuple[str, str]:
    """The deployed code version's streaming job and library (the jobs' --py-files / --extra-py-files),
    deployed after ``lake_root`` pointed the lake at the test's folder."""
    code = deployed_code()
    return f"{code}/jobs/churn_stream_scoring.py", f"{code}/lib/churn.zip"


@pytest.mark.skipif(not BESIDE.exists(), reason="pyspark's spark-submit is not next to this interpreter")
def test_spark_submit_is_found_next_to_the_interpreter_when_not_on_path(lake_root, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH, like `env -i ... .venv/bin/python`
    for name in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "PYTHONPATH"):
        monkeypatch.delenv(name, raising=False)
    job, lib = _code()
    command, env = spark.spark_submit(name="t", entry_point=job, arguments=[], py_files=[lib], spark_conf={},
                                      workdir=tmp_path)
    assert command[0] == str(BESIDE)
    # Spark's Python is this interpreter (it has pyspark), not whatever `python` is on PATH.
    assert env["PYSPARK_PYTHON"] == env["PYSPARK_DRIVER_PYTHON"] == sys.executable
    # The Python process that plans the streaming job's Python data source imports churn from there.
    assert env["PYTHONPATH"].split(os.pathsep) == [str(lake_files.local_path(lib))]
    assert lake_files.local_path(lib).is_file()


def test_an_interpreter_without_spark_submit_gets_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(spark.sys, "executable", str(tmp_path / "bin" / "python"))
    with pytest.raises(LocalJobError, match="spark-submit not found on PATH nor next to the interpreter"):
        spark._spark_submit()


def test_a_configured_spark_python_and_python_path_are_kept(lake_root, monkeypatch, tmp_path):
    monkeypatch.setenv("PYSPARK_PYTHON", "/opt/python/bin/python3")
    monkeypatch.delenv("PYSPARK_DRIVER_PYTHON", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["/repo/plugins", "/repo/include"]))
    monkeypatch.setattr(spark, "_spark_submit", lambda: "spark-submit")
    job, lib = _code()
    _, env = spark.spark_submit(name="t", entry_point=job, arguments=[], py_files=[lib], spark_conf={}, workdir=tmp_path)
    assert env["PYSPARK_PYTHON"] == env["PYSPARK_DRIVER_PYTHON"] == "/opt/python/bin/python3"
    assert env["PYTHONPATH"].split(os.pathsep) == [str(lake_files.local_path(lib)), "/repo/plugins", "/repo/include"]
