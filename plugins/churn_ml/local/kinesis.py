"""The local target's Kinesis: moto in server mode on 127.0.0.1, started on demand and reused.

``ensure_server()`` starts ``python -m moto.server`` on ``CHURN_LOCAL_KINESIS_PORT`` (4567) unless
this lake's server already answers, and keeps its pid and URL in the control plane
(``.control-plane/kinesis/server.json``); it outlives the task that started it, like the endpoint.
``ensure_stream()`` creates the stream if it is missing and waits until it is ACTIVE.

``python -m churn_ml.local.kinesis start|status|stop``.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time

from churn_ml.local.common import LocalJobError, control_plane, now, read_state, write_state

DEFAULT_PORT = 4567
STARTUP_SECONDS = 30.0
log = logging.getLogger(__name__)


def port() -> int:
    return int(os.environ.get("CHURN_LOCAL_KINESIS_PORT", "").strip() or DEFAULT_PORT)


def client(url: str):
    """A boto3 Kinesis client for the local server: the producer's and the Spark source's."""
    from churn.stream_producer import kinesis_client

    return kinesis_client(url)


def _answers(url: str) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client(url).list_streams(Limit=1)
    except (BotoCoreError, ClientError, OSError):
        return False
    return True


def _external_url() -> str:
    """CHURN_LOCAL_KINESIS_URL: a Kinesis-compatible server run elsewhere (docker-compose's moto)."""
    return os.environ.get("CHURN_LOCAL_KINESIS_URL", "").strip()


def server_url() -> str | None:
    external = _external_url()
    if external:
        return external if _answers(external) else None
    state = read_state(control_plane("kinesis") / "server.json")
    return state["url"] if state and _answers(state["url"]) else None


def ensure_server() -> str:
    """This lake's Kinesis-compatible server, started if it is not running; returns its URL.

    With ``CHURN_LOCAL_KINESIS_URL`` set (docker-compose runs moto as its own service), that server is
    used instead and must answer."""
    external = _external_url()
    if external:
        if not _answers(external):
            raise LocalJobError(f"CHURN_LOCAL_KINESIS_URL={external} does not answer Kinesis requests; is the emulator up?")
        return external
    folder = control_plane("kinesis")
    running = server_url()
    if running:
        return running
    url = f"http://127.0.0.1:{port()}"
    if _answers(url):
        raise LocalJobError(f"127.0.0.1:{port()} already serves another lake's emulator; stop it or set CHURN_LOCAL_KINESIS_PORT")
    log_file = folder / "server.log"
    with log_file.open("ab") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port())],
            stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LocalJobError(f"the Kinesis emulator exited with {proc.returncode}; see {log_file}")
        if _answers(url):
            write_state(folder / "server.json", {"pid": proc.pid, "url": url, "started": now()})
            log.info("started the local Kinesis emulator at %s (pid %d)", url, proc.pid)
            return url
        time.sleep(0.2)
    proc.kill()
    raise LocalJobError(f"the Kinesis emulator did not answer within {STARTUP_SECONDS:.0f}s; see {log_file}")


def ensure_stream(url: str, name: str, shards: int = 2) -> dict:
    """Create the stream if missing (``shards`` shards) and wait until it is ACTIVE; its summary."""
    kinesis = client(url)
    try:
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    except kinesis.exceptions.ResourceNotFoundException:
        kinesis.create_stream(StreamName=name, ShardCount=shards)
        log.info("created stream %s with %d shards", name, shards)
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    deadline = time.monotonic() + 30
    while summary["StreamStatus"] != "ACTIVE":
        if time.monotonic() > deadline:
            raise LocalJobError(f"stream {name} is {summary['StreamStatus']}, not ACTIVE, after 30 s")
        time.sleep(0.2)
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    return summary


def stop_server() -> None:
    folder = control_plane("kinesis")
    state = read_state(folder / "server.json")
    if not state:
        return
    try:
        os.kill(state["pid"], 15)
    except ProcessLookupError:
        pass
    (folder / "server.json").unlink(missing_ok=True)
    log.info("stopped the local Kinesis emulator (pid %d)", state["pid"])


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(prog="python -m churn_ml.local.kinesis")
    parser.add_argument("command", choices=["start", "status", "stop"])
    args = parser.parse_args(argv)
    if args.command == "start":
        print(ensure_server())
    elif args.command == "status":
        url = server_url()
        print(url or "not running")
        return 0 if url else 1
    else:
        stop_server()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
