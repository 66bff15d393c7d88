"""Shared pieces of the local runners: the control plane folder, subprocess streaming."""

from __future__ import annotations

import configparser
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from local_aws import settings as local_settings

LOCAL_REGION = local_settings.LOCAL_REGION  # the region of the local AWS connection (scripts/env.sh)
REPO_DIR = Path(__file__).resolve().parents[1]
# A runner subprocess imports this package and the plugins' churn_ml: both go on its PYTHONPATH.
RUNNER_PATH = (str(REPO_DIR), str(REPO_DIR / "plugins"))


class LocalJobError(RuntimeError):
    """A local job failed; the message carries the reason and where its full log is."""


def path_segment(name: object) -> str:
    """``name`` if it can be one folder or file name below the control plane, else ValueError.

    Names (jobs, models, endpoints, runs) become paths here; a name that is empty, ``.``/``..``,
    or holds a separator or NUL could lead elsewhere. The services' own name rules are stricter
    (``naming.check_name``); this is the floor every name meets before it touches the file system."""
    if not isinstance(name, str) or not name or name in (".", "..") or len(name) > 255 \
            or any(c in name for c in "/\\\0"):
        raise ValueError(
            f"{name!r} cannot be a resource name: names are 1-255 characters without '/', '\\' or NUL, "
            "and not '.' or '..' (SageMaker's own rule: letters, digits and hyphens)"
        )
    return name


def control_plane(*parts: str) -> Path:
    path = local_settings.lake_root() / ".control-plane"
    for part in parts:
        path = path / path_segment(part)
    path.mkdir(parents=True, exist_ok=True)
    return path


class Credentials(NamedTuple):
    access_key_id: str
    secret_access_key: str

    def as_client_kwargs(self) -> dict:
        """For ``boto3.client(...)``."""
        return {"aws_access_key_id": self.access_key_id, "aws_secret_access_key": self.secret_access_key}


CREDENTIALS_FILE = "credentials"  # in the lake's .control-plane/; scripts/env.sh reads and creates the same file


def credentials(lake_root: Path | None = None) -> Credentials:
    """This lake's (``LAKE_ROOT``'s, or ``lake_root``'s) access key for the local target's servers,
    created on first use.

    The control plane and the endpoints' router accept only requests signed (SigV4) with it, so a
    web page in the developer's browser cannot use them: one random key per lake, in
    ``.control-plane/credentials`` (mode 0600, the AWS shared-credentials format, so boto3 can read
    it through ``AWS_SHARED_CREDENTIALS_FILE``). scripts/env.sh reads it for the Airflow connection,
    and creates it the same way when it is missing: written aside, then hard-linked into place,
    so that of two creators one wins and both read the winner's key."""
    path = (Path(lake_root) / ".control-plane" if lake_root else control_plane()) / CREDENTIALS_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # CHURN_LOCAL_KEY_FILE: a key file whose key every new lake gets instead of a random one. For the
        # test suite, whose in-process Spark session keeps the environment it started with (its Python
        # workers sign with AWS_ACCESS_KEY_ID from then) and so could not sign for a lake made later.
        given = os.environ.get("CHURN_LOCAL_KEY_FILE", "").strip()
        content = Path(given).read_text() if given else (
            f"[default]\naws_access_key_id = LOCAL{secrets.token_hex(8).upper()[:15]}\n"
            f"aws_secret_access_key = {secrets.token_hex(20)}\n")
        tmp = path.with_name(f".{CREDENTIALS_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(content)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise LocalJobError(f"{path} is readable by other users (mode {mode:o}): it holds the local target's "
                            f"secret key. Run: chmod 600 {path}")
    parser = configparser.ConfigParser()
    parser.read(path)
    try:
        return Credentials(parser["default"]["aws_access_key_id"], parser["default"]["aws_secret_access_key"])
    except KeyError as err:
        raise LocalJobError(f"{path} has no [default] aws_access_key_id and aws_secret_access_key ({err} is "
                            "missing); delete it and a new key is made (then re-source scripts/env.sh and restart "
                            "the stack)") from None


def endpoint_token() -> str:
    """What the router sends the model containers (header ``X-Churn-Local-Token``) and local tools send
    the router's ``/_local/`` pages: derived from the lake's secret, so only who can read it can call them."""
    return hmac.new(credentials().secret_access_key.encode(), b"churn-local endpoint token", hashlib.sha256).hexdigest()


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def arn(service: str, kind: str, name: str) -> str:
    return f"arn:aws:{service}:{LOCAL_REGION}:{local_settings.LOCAL_ACCOUNT}:{kind}/{name}"


def read_state(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def write_state(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True, default=str))
    tmp.replace(path)


def created(kind: str, name: str) -> dict | None:
    """What ``create_once`` stored for ``name`` (``{"request", "CreationTime"}``), or None."""
    return read_state(control_plane("sagemaker", kind) / f"{path_segment(name)}.json")


def create_once(kind: str, name: str, request: dict, log: logging.Logger) -> dict:
    """Create* for a control-plane resource (model, endpoint config): idempotent for the same request,
    an error for a different one under the same name. Returns the stored state."""
    existing = created(kind, name)
    if existing and existing["request"] != request:
        raise LocalJobError(f"a different {kind.rstrip('s').replace('-', ' ')} named {name} already exists; names must be unique")
    if not existing:
        existing = {"request": request, "CreationTime": now()}
        write_state(control_plane("sagemaker", kind) / f"{path_segment(name)}.json", existing)
        log.info("created %s %s", kind.rstrip("s").replace("-", " "), name)
    return existing


def completed_job(kind: str, name: str, status_key: str, log: logging.Logger) -> tuple[Path, dict | None]:
    """The job's control-plane folder, and its description if it already completed (to re-attach)."""
    job_dir = control_plane("sagemaker", kind, name)
    previous = read_state(job_dir / "describe.json")
    if previous and previous.get(status_key) == "Completed":
        log.info("%s %s already completed: re-attaching to it", kind.rstrip("s").replace("-", " "), name)
        return job_dir, previous
    return job_dir, None


EVENTS_SUFFIX = ".events.jsonl"


def events_file(log_file: Path) -> Path:
    """The CloudWatch-shaped events file beside a runner's plain log (``stream`` writes both)."""
    return log_file.with_name(log_file.name + EVENTS_SUFFIX)


def stream(
    command: list[str], *, env: dict, log: logging.Logger, log_file: Path, timeout: float | None = None,
    cwd: Path | None = None, on_line: Callable[[str, subprocess.Popen], None] | None = None, append: bool = False,
) -> tuple[int, list[str]]:
    """Run ``command``, copy its output to the task log and ``log_file``; returns (exit code, all lines).

    ``log_file`` is written line by line as the process prints (each line flushed), so it can be
    followed with ``tail -f`` while the job runs, as CloudWatch shows a SageMaker job's log live.
    For that the child must not buffer either: a Python child gets ``PYTHONUNBUFFERED=1`` (its
    stdout is a pipe, which Python otherwise block-buffers until exit).

    Beside it, ``<log_file>.events.jsonl`` gets each line as a CloudWatch log event,
    ``{"timestamp": <ms>, "message": ..., "stream": "stdout"|"stderr"}``: the time the line was
    read, and which pipe it came from (Glue's ``/output`` and ``/error`` groups and EMR Serverless'
    ``stdout.gz``/``stderr.gz`` keep them apart). The control plane's CloudWatch Logs reads these
    files (``local_aws.job_logs``), so the files are the logs' only state.

    ``timeout`` (seconds) kills the process when it runs longer, whether or not it prints, and
    raises ``subprocess.TimeoutExpired``. ``on_line`` sees each line with the process (to signal
    it, e.g. a simulated spot interruption).
    """
    log.info("running: %s", " ".join(command))
    lines: list[str] = []
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = {**env, "PYTHONUNBUFFERED": "1"}
    mode = "a" if append else "w"
    with log_file.open(mode, encoding="utf-8") as sink, events_file(log_file).open(mode, encoding="utf-8") as events:
        proc = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
            errors="replace",
        )
        # One reader per pipe, so neither blocks the other; this thread writes what they read, in order.
        received: queue.Queue[tuple[str, str] | None] = queue.Queue()

        def read(pipe, name: str) -> None:
            try:
                for text in pipe:
                    received.put((name, text))
            finally:
                received.put(None)

        readers = [threading.Thread(target=read, args=(pipe, name), daemon=True)
                   for pipe, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))]
        # The output loop only ends when the process closes its pipes, so the time limit is a
        # watchdog that kills it; waiting with a timeout after the loop would never fire in time.
        timed_out = threading.Event()

        def kill_on_timeout() -> None:
            if proc.poll() is None:
                timed_out.set()
                proc.kill()

        watchdog = threading.Timer(timeout, kill_on_timeout) if timeout is not None else None
        try:
            if watchdog is not None:
                watchdog.daemon = True
                watchdog.start()
            for reader in readers:
                reader.start()
            open_pipes = len(readers)
            while open_pipes:
                item = received.get()
                if item is None:
                    open_pipes -= 1
                    continue
                pipe_name, line = item[0], item[1].rstrip("\n")
                lines.append(line)
                sink.write(line + "\n")
                sink.flush()
                events.write(json.dumps({"timestamp": int(time.time() * 1000), "message": line,
                                         "stream": pipe_name}) + "\n")
                events.flush()
                log.info("| %s", line)
                if on_line is not None:
                    on_line(line, proc)
            code = proc.wait()
        finally:
            if watchdog is not None:
                watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if timed_out.is_set():
            raise subprocess.TimeoutExpired(command, timeout, output="\n".join(lines))
    return code, lines


def tail(lines: list[str], n: int = 15) -> str:
    return "\n".join(deque(lines, maxlen=n))


def python() -> str:
    return sys.executable
