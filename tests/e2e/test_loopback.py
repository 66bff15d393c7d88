"""Every server of the local stack listens on loopback only (security review, issue 17).

After the batch chain ran through the stack (tests/e2e/conftest.py), the processes of the stack
are: the sessions scripts/stack.sh started (scheduler, dag-processor, triggerer, api-server, and
whatever runs under them), PostgreSQL, and the services the DAGs left running (the endpoint's
router and container processes; the Kinesis emulator and the streaming job when churn_streaming
ran). They are found by session (the stack's pid files) and by the test's folder in their command
line or environment (LAKE_ROOT, AIRFLOW_HOME, the PostgreSQL data folder), with their descendants;
then every TCP socket they hold in LISTEN state must be bound to 127.0.0.1 or ::1. PostgreSQL
must hold none at all (a Unix socket only). Local Spark, which runs only while a job does, is
checked the same way by tests/unit/test_local_spark_loopback.py.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from urllib.parse import urlparse

import psutil
import pytest

pytestmark = pytest.mark.e2e


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _mentions(proc: psutil.Process, text: str) -> bool:
    try:
        if any(text in arg for arg in proc.cmdline()):
            return True
        return any(text in value for value in proc.environ().values())
    except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
        return False


def stack_processes(work: Path) -> dict[int, psutil.Process]:
    """The processes of the stack under ``work``: its sessions, anything naming the folder, their descendants."""
    sessions = {int(p.read_text()) for p in (work / "airflow/stack-pids").glob("*.pid")}
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            in_session = os.getsid(proc.pid) in sessions
        except OSError:
            continue
        if in_session or _mentions(proc, str(work)):
            found[proc.pid] = proc
    for proc in list(found.values()):
        try:
            found.update({child.pid: child for child in proc.children(recursive=True)})
        except psutil.NoSuchProcess:
            continue
    return found


def listening(processes: dict[int, psutil.Process]) -> list[tuple[int, str, str, int]]:
    """(pid, command, address, port) of every TCP socket in LISTEN state the processes hold."""
    found = []
    for proc in processes.values():
        try:
            command = " ".join(proc.cmdline())[:120]
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.append((proc.pid, command, conn.laddr.ip, conn.laddr.port))
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return sorted(found)


def test_every_listening_socket_of_the_stack_is_on_loopback(stack):
    work = stack["work"]
    processes = stack_processes(work)
    sockets = listening(processes)
    exposed = [entry for entry in sockets if not _is_loopback(entry[2])]
    assert not exposed, f"listening on a non-loopback address (pid, command, address, port): {exposed}"

    # The check saw the servers it is about: the api-server (UI, REST and Execution API) and the
    # endpoint's router and containers, each on loopback.
    ports = {port for _, _, address, port in sockets if _is_loopback(address)}
    expected = {"api-server": int(stack["env"]["CHURN_AIRFLOW_PORT"]),
                "endpoint router": int(stack["env"]["CHURN_LOCAL_RUNTIME_PORT"])}
    instances = stack["endpoint"]().get("Local", {}).get("Instances", [])
    for index, instance in enumerate(instances):
        if isinstance(instance, dict) and instance.get("url"):
            expected[f"endpoint instance {index}"] = urlparse(instance["url"]).port
    missing = {name: port for name, port in expected.items() if port not in ports}
    assert not missing, f"servers not found listening on loopback among the stack's processes: {missing}; saw {sockets}"


def test_postgresql_listens_on_its_unix_socket_only(stack):
    data = stack["work"] / "airflow/pg/data"
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    server = psutil.Process(postmaster)
    processes = {p.pid: p for p in [server, *server.children(recursive=True)]}
    assert listening(processes) == [], "PostgreSQL must not listen on any TCP port"
    # .s.PGSQL.<port> is the socket; .s.PGSQL.<port>.lock beside it is a plain lock file.
    sockets = [s for s in (stack["work"] / "airflow/pg/socket").glob(".s.PGSQL.*") if not s.name.endswith(".lock")]
    assert sockets and all(s.is_socket() for s in sockets), f"PostgreSQL's Unix socket is missing: {sockets}"
