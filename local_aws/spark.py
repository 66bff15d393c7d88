"""Local runner for the Spark jobs: ``spark-submit --master local[*]`` of the very same script.

Takes the EMR Serverless StartJobRun request or the Glue job definition + StartJobRun arguments,
maps every ``s3://`` URI to the local lake, and returns a GetJobRun-shaped response.

What a request may name is held to what the project's jobs send (``check_job_request``, applied by
the control plane at StartJobRun, before anything runs): the script and ``--py-files`` are objects of
the artifacts or lake bucket, an argument that is a URI is an ``s3://`` one of the lake (no
``file://``, no absolute or ``..`` paths: ``spark-submit`` would read or write them on this machine),
and ``--conf`` sets only the Spark settings of ``ALLOWED_CONF``.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import re
import shlex
import shutil
import sys
import time
from pathlib import Path

from churn_ml import lake, naming
from churn_ml import settings as cfg
from local_aws import lake_files
from local_aws import settings as local_settings
from local_aws.common import (
    LocalJobError,
    control_plane,
    events_file,
    now,
    read_state,
    stream,
    tail,
    write_state,
)

LOG4J = Path(__file__).with_name("log4j2.properties")
LOOPBACK = "127.0.0.1"
# Every server of the local target binds loopback only. Spark's driver otherwise binds its RPC
# endpoint and block manager to the machine's network address: when the hostname resolves to a
# loopback address it picks the first other interface ("Your hostname, vm, resolves to a loopback
# address: 127.0.0.1; using 192.0.2.2 instead"). SPARK_LOCAL_IP (scripts/env.sh) would prevent that,
# but not every launcher sources env.sh, so the runner sets the binding itself, after the request's
# own settings (a request cannot move it). The web UI is off; a request may turn it on, and it then
# binds to SPARK_LOCAL_IP (set below), else to every interface, so the environment sets that too.
LOOPBACK_CONF = {
    "spark.driver.bindAddress": LOOPBACK,
    "spark.driver.host": LOOPBACK,
}

# The Spark settings a request may set with --conf: the ones the project's jobs set on their sessions
# (include/churn/sparkio.py, include/jobs/churn_stream_scoring.py), which a run may want to tune.
# Anything else (the driver's address, class paths, Python executables, event log folders, ...) could
# move the job off loopback or make it run or write something of this machine: refused.
ALLOWED_CONF = frozenset({
    "spark.sql.shuffle.partitions",
    "spark.sql.session.timeZone",
    "spark.sql.sources.partitionColumnTypeInference.enabled",
    "spark.sql.execution.arrow.pyspark.enabled",
    "spark.sql.streaming.noDataMicroBatches.enabled",
    # The Airflow task's OpenLineage run, which the Glue and EMR Serverless operators pass to the job
    # (openlineage_inject_parent_job_info; docs/lineage.md): inert names and ids for a job that reports
    # its own lineage under the task's run.
    *(f"spark.openlineage.{key}" for key in ("parentJobNamespace", "parentJobName", "parentRunId",
                                             "rootParentJobNamespace", "rootParentJobName", "rootParentRunId")),
})
# A URI scheme (``file:///``, ``hdfs://``, ``http://``), or a scheme Hadoop reads local files by without a slash.
_SCHEME = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.\-]*:/|file:|local:)", re.IGNORECASE)


def _code_buckets() -> tuple[str, ...]:
    return (cfg.settings.artifacts_bucket, cfg.settings.lake_bucket)


def check_code_uri(uri: object, what: str, suffixes: tuple[str, ...]) -> str:
    """``uri`` if it names a script or library object in the artifacts or lake bucket, else ValueError."""
    buckets = _code_buckets()
    problem = None
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        problem = "it is not an s3:// URI"
    else:
        bucket, key = lake.split_uri(uri)
        if bucket not in buckets:
            problem = f"its bucket {bucket!r} is neither the artifacts nor the lake bucket"
        elif not key.endswith(suffixes):
            problem = f"it does not end with {' or '.join(suffixes)}"
        else:
            try:
                lake_files.local_path(uri)
            except ValueError as err:
                problem = str(err)
    if problem:
        raise ValueError(
            f"{what} {uri!r} is refused: {problem}. Expected an object of s3://{buckets[0]}/ (a code version of "
            f"include/, e.g. s3://{buckets[0]}/code/<version>/jobs/churn_features.py) or s3://{buckets[1]}/"
        )
    return uri


def check_argument(value: object, what: str) -> str:
    """A job argument (or a setting's value), which ``spark-submit`` passes to the script as it is.

    An ``s3://`` URI must be one the lake can hold (it becomes a file of the lake); any other URI, an
    absolute path or a ``..`` segment would name a file of this machine outside the lake: ValueError."""
    text = str(value)
    problem = None
    if "\0" in text:
        problem = "it contains a NUL character"
    elif text.startswith("s3://"):
        try:
            lake_files.local_path(text)
        except ValueError as err:
            problem = str(err)
    elif _SCHEME.match(text):
        problem = "it is a URI with a scheme other than s3://"
    elif text.startswith(("/", "~")):
        problem = "it is an absolute path of this machine"
    elif ".." in re.split(r"[/\\]", text):
        problem = "it has a '..' path segment"
    if problem:
        raise ValueError(
            f"{what} {text!r} is refused: {problem}. Jobs read and write the lake through s3://bucket/key URIs "
            "(the runner maps them to the local lake); pass the data's s3:// URI instead"
        )
    return text


def check_job_request(*, entry_point: object, arguments: list, py_files: list[str], spark_conf: dict[str, str]) -> None:
    """What the control plane accepts in a Spark job run, checked before anything runs (ValueError).

    The script and ``--py-files`` are objects of the artifacts or lake bucket, every argument passes
    ``check_argument`` and ``--conf`` sets only the keys of ``ALLOWED_CONF``."""
    check_code_uri(entry_point, "entryPoint (the job's script)", (".py",))
    for path in py_files:
        check_code_uri(path, "--py-files entry", (".py", ".zip", ".egg"))
    for position, argument in enumerate(arguments, 1):
        check_argument(argument, f"argument {position}")
    unknown = sorted(set(spark_conf) - ALLOWED_CONF)
    if unknown:
        raise ValueError(
            f"--conf {', '.join(unknown)} is refused: the local runner accepts only the Spark settings the "
            f"project's jobs use ({', '.join(sorted(ALLOWED_CONF))}); the driver's binding, memory and paths "
            "are the runner's. Drop the setting, or add it to local_aws.spark.ALLOWED_CONF if a job needs it"
        )
    for key, value in spark_conf.items():
        check_argument(value, f"--conf {key}")


def _spark_submit() -> str:
    """``spark-submit`` from PATH, else the one next to the running interpreter.

    pyspark installs ``spark-submit`` in the virtualenv's ``bin/``, which is on PATH only when the
    venv is activated (``scripts/env.sh``); a script started as ``.venv/bin/python ...`` still
    finds the one that belongs to its own pyspark.
    """
    found = shutil.which("spark-submit")
    if found:
        return found
    beside = Path(sys.executable).parent / "spark-submit"  # not resolved: a venv's python is a symlink
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    raise LocalJobError(
        f"spark-submit not found on PATH nor next to the interpreter ({beside}): the local target needs "
        "pyspark installed in the environment (run scripts/bootstrap.sh, or put the virtualenv's bin/ on PATH)"
    )


def parse_submit_parameters(parameters: str) -> tuple[list[str], dict[str, str]]:
    """``--py-files a,b --conf k=v ...`` -> (py files, spark conf)."""
    tokens = shlex.split(parameters or "")
    py_files: list[str] = []
    conf: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in ("--py-files", "--conf") and i + 1 < len(tokens):
            value = tokens[i + 1]
            if token == "--py-files":
                py_files += [p for p in value.split(",") if p]
            else:
                key, _, val = value.partition("=")
                conf[key] = val
            i += 2
            continue
        raise ValueError(f"sparkSubmitParameters: {token!r} is not supported by the local runner (use --py-files/--conf)")
    return py_files, conf


def glue_script_location(command: dict, arguments: dict) -> object:
    """The script a Glue run runs: the run's ``--scriptLocation`` when it sends one (Glue's special
    parameter, which overrides the job's ``Command.ScriptLocation`` for that run), else the job's.

    ``arguments`` are the run's merged arguments (the job's DefaultArguments under the run's). The
    project's runs always send it, for the code version they run (churn_ml.artifacts)."""
    return arguments.get("--scriptLocation") or (command or {}).get("ScriptLocation")


def split_glue_arguments(arguments: dict) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """Glue job arguments -> (``--extra-py-files``, ``--conf`` Spark settings, the script's own arguments).

    ``--scriptLocation`` is Glue's, not the script's (``glue_script_location`` reads it): left out."""
    args = dict(arguments)
    args.pop("--scriptLocation", None)
    py_files = [p for p in str(args.pop("--extra-py-files", "")).split(",") if p]
    conf: dict[str, str] = {}
    if "--conf" in args:
        _, conf = parse_submit_parameters(f"--conf {args.pop('--conf')}")
    return py_files, conf, args


def argv(arguments: dict) -> list[str]:
    """``{"--k": v}`` -> ``["--k", "v"]``, as Glue passes job arguments to the script."""
    return [item for key, value in arguments.items() for item in (key, str(value))]


def spark_submit(
    *, name: str, entry_point: str, arguments: list[str], py_files: list[str], spark_conf: dict[str, str],
    workdir: Path,
) -> tuple[list[str], dict]:
    """The ``spark-submit`` command line and environment for one local job run (of the code version the request names)."""
    script = lake_files.local_path(entry_point)
    if not script.exists():
        raise LocalJobError(f"entry point {entry_point} not found (local file {script}); is it in include/jobs/?")
    conf = {
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "8",
        # Keep the local lake shaped like S3: no .crc side files next to the data.
        "spark.hadoop.fs.file.impl": "org.apache.hadoop.fs.RawLocalFileSystem",
        "spark.hadoop.fs.file.impl.disable.cache": "true",
        "spark.sql.warehouse.dir": str(workdir / "warehouse"),
        **spark_conf,
        **LOOPBACK_CONF,
    }
    command = [
        _spark_submit(),
        "--master", f"local[{os.cpu_count() or 2}]",
        "--name", name,
        "--driver-memory", local_settings.spark_memory(),
        "--driver-java-options", f"-Dlog4j2.configurationFile={LOG4J.as_uri()} -Dderby.system.home={workdir}",
    ]
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    local_py_files = [str(lake_files.local_path(p)) for p in py_files]
    if local_py_files:
        command += ["--py-files", ",".join(local_py_files)]
    command += [str(script), *[str(a) for a in lake_files.to_local_uris(list(arguments))]]
    env = dict(os.environ)
    env["SPARK_LOCAL_IP"] = LOOPBACK  # Spark's web UI and anything else that reads it: loopback as well
    # Spark gives --py-files to the driver and the executors' Python workers, not to the Python process
    # that plans a Python data source (the streaming job's churn.kinesis_source): "No module named
    # 'churn'" unless they are on PYTHONPATH as well.
    # The job's code is the request's code version only: include/ (which scripts/env.sh puts on the
    # PYTHONPATH of everything it starts) is left out, so a module missing from the version's
    # --py-files fails here as on AWS instead of loading from the working tree.
    working_tree = {os.path.realpath(local_settings.include_dir()), os.path.realpath(local_settings.REPO_ROOT / "include")}
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                 if p and os.path.realpath(p) not in working_tree]
    python_path = [*local_py_files, *inherited]
    if python_path:
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(python_path))
    # Spark's driver and workers run this interpreter unless told otherwise: it has pyspark and the
    # jobs' dependencies, whatever `python` on PATH is (without scripts/env.sh it is not the venv's).
    # spark-submit's own launcher script runs it as well, to find SPARK_HOME.
    env["PYSPARK_PYTHON"] = os.environ.get("PYSPARK_PYTHON") or sys.executable
    env["PYSPARK_DRIVER_PYTHON"] = os.environ.get("PYSPARK_DRIVER_PYTHON") or env["PYSPARK_PYTHON"]
    return command, env


# How often a running EMR Serverless job's stdout.gz/stderr.gz are rewritten under its logUri (AWS
# uploads the driver's logs while it runs, too); the last write is at the job's end.
S3_LOG_INTERVAL_SECONDS = 15.0
API_RECORD = "api-record.json"  # a run's API state in its job folder, as local_aws.spark_api saves it (RECORD)


def emr_log_prefix(log_uri: str, application_id: str, job_run_id: str) -> str:
    """Where EMR Serverless puts a job run's driver logs under the request's
    ``monitoringConfiguration.s3MonitoringConfiguration.logUri``:
    ``<logUri>/applications/<application id>/jobs/<job run id>/SPARK_DRIVER/`` (``stdout.gz``, ``stderr.gz``)."""
    return f"{log_uri.rstrip('/')}/applications/{application_id}/jobs/{job_run_id}/SPARK_DRIVER/"


def s3_log_uri(configuration_overrides: dict | None) -> str | None:
    """The request's ``monitoringConfiguration.s3MonitoringConfiguration.logUri``, if any; ValueError when
    it is not an ``s3://`` URI the lake can hold (the driver's logs become files of the lake)."""
    monitoring = (configuration_overrides or {}).get("monitoringConfiguration") or {}
    uri = (monitoring.get("s3MonitoringConfiguration") or {}).get("logUri")
    if uri is None:
        return None
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValueError(f"monitoringConfiguration.s3MonitoringConfiguration.logUri {uri!r} is not an s3:// URI")
    lake_files.local_path(uri)
    return uri


def write_s3_driver_logs(driver_log: Path, prefix: str) -> None:
    """``stdout.gz`` and ``stderr.gz`` of the driver (from ``driver_log``'s events file, which keeps the
    pipes apart) as objects under ``prefix`` (an ``s3://`` URI: files of the lake), each written aside
    and renamed, so a reader sees a whole object."""
    source = events_file(driver_log)
    records = [json.loads(line) for line in source.read_text(errors="replace").splitlines() if line.strip()] \
        if source.exists() else []
    for pipe in ("stdout", "stderr"):
        target = lake_files.local_path(f"{prefix}{pipe}.gz")
        target.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(r["message"] + "\n" for r in records if r.get("stream") == pipe)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(gzip.compress(text.encode("utf-8")))
        tmp.replace(target)


def run_log_prefix(workdir: Path) -> str | None:
    """Where an EMR Serverless run's driver logs go in S3 (``emr_log_prefix``), from the run's API record
    in its job folder (``local_aws.spark_api``): None for a Glue run or a request without an S3 logUri."""
    record = read_state(workdir / API_RECORD) or {}
    run = record.get("run") or {}
    if record.get("service") != "emr-serverless":
        return None
    uri = s3_log_uri(run.get("configuration_overrides"))
    return emr_log_prefix(uri, run["application_id"], run["id"]) if uri else None


def run_spark_job(
    *, name: str, entry_point: str, arguments: list[str], py_files: list[str], spark_conf: dict[str, str],
    log: logging.Logger,
) -> dict:
    """Run one Spark job locally; raise LocalJobError with the log tail when it fails.

    An EMR Serverless run whose request names an S3 ``logUri`` gets its driver's stdout and stderr
    there, as ``stdout.gz``/``stderr.gz`` (``emr_log_prefix``), while it runs and at its end."""
    workdir = control_plane("spark", "job-runs", name)
    command, env = spark_submit(name=name, entry_point=entry_point, arguments=arguments, py_files=py_files,
                                spark_conf=spark_conf, workdir=workdir)
    started = time.monotonic()
    state = {
        "name": name,
        "jobRunId": naming.content_hash({"name": name, "started": now()}, 16),
        "state": "RUNNING",
        "createdAt": now(),
        "entryPoint": entry_point,
        "entryPointArguments": list(arguments),
        "sparkSubmitParameters": shlex.join(command[1:-len(arguments) - 1] if arguments else command[1:-1]),
    }
    write_state(workdir / "job-run.json", state)
    driver_log = workdir / "driver.log"
    try:
        s3_log_prefix = run_log_prefix(workdir)
    except ValueError as err:
        log.warning("the driver's logs go to no S3 logUri: %s", err)
        s3_log_prefix = None
    uploaded = [time.monotonic()]

    def upload_now_and_then(line: str, proc: object) -> None:
        if s3_log_prefix and time.monotonic() - uploaded[0] >= S3_LOG_INTERVAL_SECONDS:
            uploaded[0] = time.monotonic()
            write_s3_driver_logs(driver_log, s3_log_prefix)

    try:
        code, lines = stream(command, env=env, log=log, log_file=driver_log, cwd=workdir, on_line=upload_now_and_then)
    finally:
        if s3_log_prefix:
            write_s3_driver_logs(driver_log, s3_log_prefix)
    state.update(
        state="SUCCESS" if code == 0 else "FAILED",
        updatedAt=now(),
        totalExecutionDurationSeconds=math.ceil(time.monotonic() - started),  # rounded up, as AWS's utilization
        stateDetails="" if code == 0 else f"spark-submit exited with {code}",
    )
    write_state(workdir / "job-run.json", state)
    if code != 0:
        raise LocalJobError(
            f"Spark job {name} failed (exit {code}). Last lines:\n{tail(lines)}\nFull log: {driver_log}"
        )
    return state
