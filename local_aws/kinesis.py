"""The local target's Kinesis: the control plane's (moto's Kinesis, on 127.0.0.1).

``ensure_server()`` returns the control plane's URL, starting it if needed; with
``CHURN_LOCAL_KINESIS_URL`` set (docker-compose runs the emulator as a service of its own), that
server instead, which must answer. ``ensure_stream()`` creates the stream if it is missing and waits
until it is ACTIVE.

``python -m local_aws.kinesis start|status``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from local_aws import control_plane
from local_aws.common import LocalJobError

log = logging.getLogger(__name__)


def client(url: str):
    """A boto3 Kinesis client for the local server, signed with the lake's key (the producer and the
    Spark source build theirs from the default credential chain, which the control plane's jobs and
    ``control_plane.ensure_server()`` set to that key)."""
    return control_plane.client("kinesis", url)


def _answers(url: str) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client(url).list_streams(Limit=1)
    except (BotoCoreError, ClientError, OSError):
        return False
    return True


def _external_url() -> str:
    """CHURN_LOCAL_KINESIS_URL: a Kinesis-compatible server run elsewhere (docker-compose's)."""
    return os.environ.get("CHURN_LOCAL_KINESIS_URL", "").strip()


def server_url() -> str | None:
    external = _external_url()
    if external:
        return external if _answers(external) else None
    return control_plane.server_url()


def ensure_server() -> str:
    """The Kinesis-compatible server's URL: this lake's control plane, started if it is not running."""
    external = _external_url()
    if external:
        if not _answers(external):
            raise LocalJobError(f"CHURN_LOCAL_KINESIS_URL={external} does not answer Kinesis requests; is the emulator up?")
        return external
    return control_plane.ensure_server()


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


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(prog="python -m local_aws.kinesis")
    parser.add_argument("command", choices=["start", "status"])
    args = parser.parse_args(argv)
    if args.command == "start":
        print(ensure_server())
        return 0
    url = server_url()
    print(url or "not running")
    return 0 if url else 1


if __name__ == "__main__":
    raise SystemExit(main())
