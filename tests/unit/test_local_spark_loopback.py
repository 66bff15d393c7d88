"""Local Spark listens on loopback only (security review, issue 17).

The spark-submit JVM's RPC and block-manager ports were bound to the machine's network address:
when the hostname resolves to a loopback address Spark picks the first non-loopback interface
instead, unless SPARK_LOCAL_IP says otherwise, and scripts/env.sh (which exports it) is not sourced
by every launcher. The local runner now passes the loopback binding itself. The second test runs a
real job the way the local target does (``run_spark_job`` of the features job, on a tiny sample)
and reads the listening sockets of the job's processes (the spark-submit JVM and its Python driver
and workers) while it runs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import threading
import time
import uuid

import psutil
import pytest

from churn import datagen
from churn_ml.settings import settings
from local_aws import spark
from support import deployed_code

LOG = logging.getLogger("test")
START, DAYS = dt.date(2026, 1, 1), 3
DS = (START + dt.timedelta(days=DAYS)).isoformat()


def _conf(command: list[str]) -> dict[str, str]:
    return dict(command[i + 1].split("=", 1) for i, token in enumerate(command) if token == "--conf")


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def listening(processes: list[psutil.Process]) -> set[tuple[int, str, str, int]]:
    """(pid, process name, address, port) of every TCP socket in LISTEN state the processes hold."""
    found = set()
    for proc in processes:
        try:
            name = proc.name()
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.add((proc.pid, name, conn.laddr.ip, conn.laddr.port))
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def job_processes(job_name: str) -> list[psutil.Process]:
    """This test's child processes started for ``job_name`` (its name is on the JVM's command line),
    with their descendants (the Python driver, Spark's Python workers)."""
    roots = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if any(job_name in arg for arg in proc.cmdline()):
                roots.append(proc)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    tree = {p.pid: p for p in roots}
    for root in roots:
        try:
            tree.update({p.pid: p for p in root.children(recursive=True)})
        except psutil.NoSuchProcess:
            continue
    return list(tree.values())


def test_the_local_runner_binds_the_driver_to_loopback_whatever_the_request_says(lake_root, monkeypatch, tmp_path):
    monkeypatch.delenv("SPARK_LOCAL_IP", raising=False)
    monkeypatch.setattr(spark, "_spark_submit", lambda: "spark-submit")
    command, env = spark.spark_submit(
        name="t", entry_point=f"{deployed_code()}/jobs/churn_features.py", arguments=[], py_files=[],
        spark_conf={"spark.driver.host": "0.0.0.0", "spark.driver.bindAddress": "0.0.0.0"}, workdir=tmp_path)
    conf = _conf(command)
    assert conf["spark.driver.bindAddress"] == conf["spark.driver.host"] == "127.0.0.1"
    assert conf["spark.ui.enabled"] == "false"
    # Whatever else reads it (Spark's web UI, when a request turns it on, binds to SPARK_LOCAL_IP or 0.0.0.0).
    assert env["SPARK_LOCAL_IP"] == "127.0.0.1"


@pytest.mark.e2e  # a real Spark job (~30-60 s): in the full test command, not in make test-fast
def test_a_local_spark_job_listens_on_loopback_only(lake_root, monkeypatch):
    # Not scripts/env.sh's environment: the runner alone must keep Spark on loopback.
    for name in ("SPARK_LOCAL_IP", "SPARK_LOCAL_HOSTNAME", "SPARK_PUBLIC_DNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CHURN_LOCAL_SPARK_MEMORY", "1g")
    datagen.main(["--out", str(lake_root / "churn-lake" / "raw"), "--customers", "60", "--days", str(DAYS),
                  "--start", START.isoformat(), "--seed", "3"])
    job = f"loopback-{uuid.uuid4().hex[:12]}"
    code = deployed_code()
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["state"] = spark.run_spark_job(
                name=job, entry_point=f"{code}/jobs/churn_features.py",
                arguments=["--ds", DS, "--lake", settings.lake, "--history-days", str(DAYS), "--max-bad-fraction", "0.5"],
                py_files=[f"{code}/lib/churn.zip"],
                # The web UI on as well, so that its server is checked too (the runner's default is off).
                spark_conf={"spark.ui.enabled": "true"}, log=LOG)
        except Exception as err:  # reported by the main thread
            outcome["error"] = err

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    seen: set[tuple[int, str, str, int]] = set()
    deadline = time.monotonic() + 300
    while worker.is_alive() and time.monotonic() < deadline:
        seen |= listening(job_processes(job))
        time.sleep(0.1)
    worker.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not worker.is_alive(), "the Spark job did not finish within 300 s"
    assert "error" not in outcome, outcome.get("error")
    assert outcome["state"]["state"] == "SUCCESS"

    java = {(address, port) for _, name, address, port in seen if name == "java"}
    # The driver's RPC endpoint, its block manager and the web UI at least: the check saw the job's servers.
    assert len(java) >= 3, f"expected the JVM's listening sockets, saw only {sorted(seen)}"
    exposed = sorted(entry for entry in seen if not is_loopback(entry[2]))
    assert not exposed, f"listening on a non-loopback address (pid, process, address, port): {exposed}"
