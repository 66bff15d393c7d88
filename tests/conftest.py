"""Shared fixtures: an isolated local lake per test and one local SparkSession per test session."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
for sub in ("plugins", "include", "include/sagemaker"):
    if str(REPO / sub) not in sys.path:
        sys.path.insert(0, str(REPO / sub))
os.environ.setdefault("ML_TARGET", "local")
# The local stack's resource names (EMR application, roles, image, topic, data key), as scripts/env.sh exports them.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from local_aws import settings as _local_settings  # noqa: E402

_local_settings.export()
# Tests that need Airflow's metadata database but no scheduler (DagBag, tasks run in-process) use a
# SQLite database of their own, migrated once (pytest_configure); the end-to-end tests start the
# PostgreSQL stack with its own environment, and the `airflow dags test` runs set theirs.
SQLITE_DB = Path(os.environ.get("AIRFLOW_HOME", REPO / ".airflow")) / "tests" / "airflow.db"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{SQLITE_DB}"


def pytest_configure(config):
    from importlib.metadata import version

    stamp, airflow_version = SQLITE_DB.with_suffix(".migrated"), version("apache-airflow")
    if stamp.exists() and stamp.read_text() == airflow_version:
        return
    SQLITE_DB.parent.mkdir(parents=True, exist_ok=True)
    migrate = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True,
                             timeout=600, env=os.environ)
    if migrate.returncode != 0:
        raise pytest.UsageError(f"could not prepare the tests' SQLite database {SQLITE_DB}:\n{migrate.stderr[-3000:]}")
    stamp.write_text(airflow_version)
# One key for every lake of the session (local_aws.common.credentials), in this process's environment
# from the start: the session's SparkSession keeps the environment it started with, and its Python
# workers (the Kinesis source) sign with that key for the control plane of any later test's lake.
_KEY_FILE = Path(tempfile.mkdtemp(prefix="churn-test-key-")) / "credentials"
_KEY = ("LOCAL" + secrets.token_hex(8).upper()[:15], secrets.token_hex(20))
with os.fdopen(os.open(_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as _out:
    _out.write(f"[default]\naws_access_key_id = {_KEY[0]}\naws_secret_access_key = {_KEY[1]}\n")
os.environ["CHURN_LOCAL_KEY_FILE"] = str(_KEY_FILE)
os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = _KEY


def pytest_xdist_make_scheduler(config, log):
    """The test command runs on two workers (scripts/test.sh, pytest-xdist): each file's tests stay
    together on one worker, in order (module fixtures are built once), and the end-to-end package's
    files form one unit: its Airflow stack is one package fixture, and its files run in order on it
    (tests/e2e/conftest.py). (xdist's own ``--dist loadgroup`` does not group under pytest 9.)"""
    from xdist.scheduler import LoadFileScheduling

    class StackTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "tests/e2e/" if nodeid.startswith("tests/e2e/") else super()._split_scope(nodeid)

    return StackTogether(config, log)


def pytest_unconfigure(config):
    shutil.rmtree(_KEY_FILE.parent, ignore_errors=True)


os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
# Spark's Python workers (Python data sources, UDFs) import include/ and plugins/ modules too.
os.environ["PYTHONPATH"] = os.pathsep.join(
    dict.fromkeys([str(REPO / "include"), str(REPO / "plugins"), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])
)


@pytest.fixture
def lake_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "lake"
    root.mkdir()
    monkeypatch.setenv("LAKE_ROOT", str(root))
    monkeypatch.setenv("ML_TARGET", "local")
    return root


@pytest.fixture
def lake_s3(lake_root, monkeypatch) -> Path:
    """S3 over the test's lake folder in this process: moto's S3 (``mock_aws``) with the control plane's
    backend (``local_aws.lake_s3.LakeS3Backend``: every bucket a folder of ``lake_root``), so the plugins'
    S3 calls (``churn_ml.lake``, the S3 hook) read and write the files the test writes, without a server.
    Returns ``lake_root``."""
    from moto import mock_aws
    from moto.s3.models import s3_backends

    from local_aws import lake_s3

    for key, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AIRFLOW_CONN_AWS_DEFAULT": '{"conn_type": "aws"}'}.items():
        monkeypatch.setenv(key, value)
    used = dict(s3_backends)  # backends of earlier tests: this one's instances must be of the lake's class
    s3_backends.clear()
    monkeypatch.setattr(s3_backends, "backend", lake_s3.LakeS3Backend)
    from local_aws.control_plane import create_buckets

    create_buckets()  # the template's buckets, as the control plane creates them at its start
    try:
        with mock_aws():
            yield lake_root
    finally:
        s3_backends.clear()
        s3_backends.update(used)


@pytest.fixture
def memory_lake(monkeypatch) -> dict:
    """The lake as ``{uri: JSON payload}`` behind churn_ml.lake's JSON reads, writes, listings and deletes: for
    code that keeps small records in the lake (the cost ledger), tested without a server."""
    from churn_ml import lake
    from churn_ml.settings import settings

    store: dict[str, dict] = {}
    monkeypatch.setattr(type(settings), "lake", property(lambda self: "s3://churn-lake"))
    monkeypatch.setattr(lake, "write_json", lambda uri, payload: store.__setitem__(uri, json.loads(json.dumps(payload, default=str))))
    monkeypatch.setattr(lake, "read_json", lambda uri: store[uri])
    monkeypatch.setattr(lake, "list_keys", lambda prefix: sorted(u for u in store if u.startswith(prefix)))
    monkeypatch.setattr(lake, "delete_objects", lambda uris: len([store.pop(u) for u in uris]))
    return store


@pytest.fixture(scope="session")
def _runtime_port() -> int:
    """The port of the session control plane's endpoints router: not the default port another lake may hold."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


_SESSION_LAKE: dict[str, str] = {}  # the session control plane's URL -> its lake (whose key it takes)


@pytest.fixture(scope="session")
def _control_plane(tmp_path_factory, _runtime_port):
    """One local control plane (local_aws) for the tests that call AWS APIs in-process, on a lake
    and port of its own, with include/ deployed into it (``local_aws.code_deploy``, as
    scripts/stack.sh start deploys); stopped, with what it runs, at the end of the session."""
    import socket

    from local_aws import code_deploy, control_plane

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"LAKE_ROOT": str(tmp_path_factory.mktemp("control-plane") / "lake"), "CHURN_LOCAL_AWS_PORT": str(port),
           "CHURN_LOCAL_RUNTIME_PORT": str(_runtime_port), "ML_TARGET": "local"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        url = control_plane.ensure_server()
        code_deploy.deploy()
    _SESSION_LAKE[url] = env["LAKE_ROOT"]
    yield url
    import logging

    from local_aws import endpoints

    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        log = logging.getLogger("tests")
        for name in endpoints.list_endpoints():  # what tests deployed (the SDK's estimator.deploy included)
            endpoints.delete_endpoint(name, log)
        endpoints.stop_router(log)  # the router runs in a session of its own, as scripts/stack.sh stop knows
        control_plane.stop_server()


@pytest.fixture
def aws_local(_control_plane, _runtime_port, lake_root, monkeypatch, request) -> str:
    """The AWS connection points at the session's control plane (its SageMaker Runtime at the plane's router);
    a model package group of the test's own."""
    import json
    import re

    from local_aws import control_plane

    # The connection's only: a test's own lake keeps its own router port. Signed with the plane's lake's own
    # key (role None: tests set up data where no task writes; the stack's tasks sign as MWAA's role, and
    # tests/local_aws/test_iam_enforced.py checks a task under that role's grants).
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHURN_LOCAL_RUNTIME_PORT", str(_runtime_port))
        patch.setenv("LAKE_ROOT", _SESSION_LAKE[_control_plane])
        connection = control_plane.connection(_control_plane, role=None)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    # The plugins read and write the lake through the plane's S3, whose buckets are the plane's lake folder:
    # a test that also looks at files (local_aws.lake_files) must look there (after lake_root, if it has one).
    monkeypatch.setenv("LAKE_ROOT", _SESSION_LAKE[_control_plane])
    monkeypatch.setenv("CHURN_MODEL_PACKAGE_GROUP", re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name)[:50].strip("-"))
    from churn_ml import artifacts

    artifacts.clear_cache()  # the code pointer another test's lake had is not this one's
    return _control_plane


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("churn-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")  # loopback only, like every local server
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
        # The JIT's first tier only (as tests/runtime's spark-submits): the session's jobs are small and
        # short, so C2's compilations cost more CPU than they save. No effect on what the jobs compute.
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def airflow_sqlite(tmp_path) -> str:
    """A migrated SQLite metadata database of the test's own: a copy of the session's (migrating takes seconds)."""
    db = tmp_path / "airflow.db"
    shutil.copy(SQLITE_DB, db)
    return f"sqlite:///{db}"
