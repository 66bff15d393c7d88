"""The local target's AWS: the APIs the project uses, on 127.0.0.1, with jobs that really run.

One process, ``python -m local_aws.control_plane serve``: moto's server (request parsing for every
protocol, errors and answers in botocore's shapes, and the services it emulates in full: Kinesis,
SNS, CloudWatch Logs, IAM/STS), with the job APIs extended so that creating a job runs it
(``sagemaker_api``: training, tuning, transform jobs and models; ``spark_api``: EMR Serverless job
runs and Glue job runs of the template's jobs, batch and streaming), and S3 the lake folder, read
and write (``lake_s3``). The Amazon provider's operators, hooks, triggers and waiters talk to it through the AWS
connection's ``endpoint_url``, exactly as they talk to AWS. MWAA, which moto does not have, is the control plane's
own (``local_aws.mwaa``): the template's environment, whose InvokeRestApi the local Airflow api-server answers.

It answers only this machine's processes that sign with the lake's key (``common.credentials()``):
every request is checked before moto dispatches it (``guard``, with ``request_guard``): a Host
other than its loopback address and port, anything a web browser sent (``Origin``, ``Sec-Fetch-*``)
and a request not SigV4-signed with that key, or with one of the roles' keys derived from it
(``local_aws.iam``), are refused with a 403 in the service's error shape; moto's CORS (flask_cors on
every request) is off. A role's S3 requests are then checked against the role's policies in moto's
IAM (the template's, created at the start: ``create_roles``), as S3 checks them: the Airflow connection
signs as MWAA's execution role, so a grant the template lacks fails a local task first.

``ensure_server()`` starts it on ``CHURN_LOCAL_AWS_PORT`` (4566) unless this lake's control plane
already answers, in a session of its own (it outlives the task or command that started it, like an
AWS account outlives a DAG run); ``stop_server()`` stops it and the jobs it runs. Its pid and URL
are in ``.control-plane/server.json``, its log in ``.control-plane/server.log``.

``python -m local_aws.control_plane start|status|stop|serve``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from churn_ml import settings as cfg
from local_aws import settings as local_settings
from local_aws.common import (
    LOCAL_REGION,
    RUNNER_PATH,
    Credentials,
    LocalJobError,
    control_plane,
    credentials,
    now,
    read_state,
    write_state,
)

DEFAULT_PORT = 4566
# What every client of the control plane needs besides its endpoint URL: no host prefix (botocore sends MWAA's
# InvokeRestApi to ``env.<endpoint host>`` and GetEnvironment to ``api.<endpoint host>``, names 127.0.0.1 has
# not). The AWS connection carries it as ``config_kwargs`` (``connection()``, scripts/env.sh, docker-compose.yaml).
CLIENT_CONFIG = {"inject_host_prefix": False}
REGION = LOCAL_REGION
STARTUP_SECONDS = 60.0
log = logging.getLogger(__name__)


def port() -> int:
    return int(os.environ.get("CHURN_LOCAL_AWS_PORT", "").strip() or DEFAULT_PORT)


def client(service: str, url: str):
    import boto3
    from botocore.config import Config

    return boto3.client(service, endpoint_url=url, region_name=REGION, **credentials().as_client_kwargs(),
                        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=30,
                                      **CLIENT_CONFIG))


def _answers(url: str) -> bool:
    """This lake's control plane answers at ``url`` (another lake's refuses this lake's key)."""
    return _probe(url) == "ours"


def _probe(url: str) -> str:
    """``ours``: a control plane that takes this lake's key; ``other``: a server that refuses it (another
    lake's control plane: a key is per lake); ``none``: nothing usable answers."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client("sts", url).get_caller_identity()
    except ClientError as err:
        refused = err.response.get("Error", {}).get("Code") in ("InvalidClientTokenId", "SignatureDoesNotMatch")
        return "other" if refused else "none"
    except (BotoCoreError, OSError):
        return "none"
    return "ours"


def server_url() -> str | None:
    state = read_state(control_plane() / "server.json")
    return state["url"] if state and _answers(state["url"]) else None


def connection(url: str | None = None, role: str | None = "churn-mwaa") -> dict:
    """The AWS connection of the local target (scripts/env.sh exports the same one): every client
    to the control plane, the SageMaker Runtime to the endpoints' router, signed with the key of
    ``role`` (MWAA's execution role by default, as deployed tasks sign; ``local_aws.iam``), whose
    policies the control plane checks each S3 request against; ``role=None``: the lake's own key,
    which nothing restricts (tests that set up data through the plugins' code use it)."""
    from local_aws import iam

    key = credentials()
    if role is not None:
        key = iam.role_credentials(key.secret_access_key, role)
    return {
        "conn_type": "aws", "login": key.access_key_id, "password": key.secret_access_key,
        "extra": {
            "region_name": REGION, "endpoint_url": url or f"http://127.0.0.1:{port()}",
            "service_config": {"sagemaker-runtime": {"endpoint_url": f"http://127.0.0.1:{local_settings.runtime_port()}"}},
            "config_kwargs": dict(CLIENT_CONFIG),
        },
    }


def athena_connection(url: str | None = None, role: str | None = "churn-mwaa") -> dict:
    """The Athena connection of the local target (``CHURN_ATHENA_CONN_ID``; scripts/env.sh exports the same one):
    the data checks' SQL (AthenaSQLHook, PyAthena) to the control plane's Athena, signed as ``connection()`` signs,
    in the template's workgroup, with the lake's Glue database as its schema. On AWS the same connection has no
    endpoint and no key (the execution role's), as docs/architecture.md shows."""
    aws = connection(url, role)
    return {
        "conn_type": "athena", "login": aws["login"], "password": aws["password"], "schema": cfg.settings.glue_database,
        "extra": {"region_name": REGION, "endpoint_url": aws["extra"]["endpoint_url"],
                  "work_group": cfg.settings.athena_workgroup},
    }


def export_credentials(environ: dict | None = None) -> None:
    """Put the lake's key in ``environ`` (this process's by default) as AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY: the jobs and tools that build their clients from the default credential
    chain, as they do on AWS (the streaming job, the event producer), then sign with it."""
    environ = os.environ if environ is None else environ
    key = credentials()
    environ["AWS_ACCESS_KEY_ID"], environ["AWS_SECRET_ACCESS_KEY"] = key.access_key_id, key.secret_access_key
    environ.pop("AWS_SESSION_TOKEN", None)


def ensure_server() -> str:
    """This lake's control plane, started if it is not running; returns its URL. This process's
    environment gets the lake's key (``export_credentials``), as the jobs the control plane runs do."""
    export_credentials()
    running = server_url()
    if running:
        return running
    url = f"http://127.0.0.1:{port()}"
    if _probe(url) != "none":
        raise LocalJobError(f"127.0.0.1:{port()} already serves another lake's control plane; stop it or set "
                            "CHURN_LOCAL_AWS_PORT")
    folder = control_plane()
    log_file = folder / "server.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*RUNNER_PATH, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    with log_file.open("ab") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "local_aws.control_plane", "serve", "--port", str(port())],
            stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env,
        )
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LocalJobError(f"the control plane exited with {proc.returncode}; see {log_file}")
        if _answers(url) and read_state(folder / "server.json"):
            log.info("started the local control plane at %s (pid %d)", url, proc.pid)
            return url
        time.sleep(0.2)
    proc.kill()
    raise LocalJobError(f"the control plane did not answer within {STARTUP_SECONDS:.0f}s; see {log_file}")


def stop_server(timeout: float = 30.0) -> None:
    """Stop the control plane and the jobs it runs (TERM to its session; KILL after ``timeout``)."""
    state = read_state(control_plane() / "server.json")
    if not state:
        return
    import psutil

    try:
        group = os.getpgid(state["pid"])
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        group = None
    deadline = time.monotonic() + timeout
    while group is not None and time.monotonic() < deadline:
        if not [p for p in psutil.process_iter(["pid"]) if _in_group(p, group)]:
            break
        time.sleep(0.2)
    else:
        if group is not None:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
    (control_plane() / "server.json").unlink(missing_ok=True)
    log.info("stopped the local control plane (pid %d)", state["pid"])


def _in_group(process, group: int) -> bool:
    """A live process of the group (an exited one that its parent has not reaped yet does not count;
    when that parent is this process, it is reaped here)."""
    import psutil

    try:
        if os.getpgid(process.pid) != group:
            return False
        if process.status() == psutil.STATUS_ZOMBIE:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(process.pid, os.WNOHANG)
            return False
        return True
    except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
        return False


def guard(app, expected: Credentials):
    """``app`` (moto's WSGI application) behind the checks of ``request_guard``: a refused request
    gets its 403 here and never reaches moto, so no handler runs and nothing is created. Then an
    operation the control plane does not emulate (``local_aws.operations``) is refused the same way,
    in the service's error shape (400, S3's 501), before moto could answer it with an HTML 500 or a
    fake success. Built after ``install_extensions()``: what they register is what is emulated.
    A request to a service moto does not have (``operations.OWN``: MWAA) goes, checked the same way, to
    the ``application`` of the control plane's own module for it (``local_aws.mwaa``) instead of moto."""
    import importlib
    import io
    from http import HTTPStatus

    from local_aws import iam, operations, request_guard

    catalog = operations.catalog()  # what the installed extensions emulate (warnings logged once, at start)
    own = {service: importlib.import_module(module).application for service, module in operations.OWN.items()}

    def guarded(environ, start_response):
        headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")}
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers[key.replace("_", "-").lower()] = environ[key]
        query = environ.get("QUERY_STRING", "")
        style = request_guard.error_style(headers, query)
        try:
            request_guard.check_host_and_browser(headers, int(environ["SERVER_PORT"]))
            key, role = request_guard.signing_key(headers, expected)  # the lake's key, or a role's (local_aws.iam)
            signed = request_guard.authorization(headers, key)  # before reading a body
            length = int(environ.get("CONTENT_LENGTH") or 0)
            stream = environ["wsgi.input"]
            body = stream.read() if environ.get("wsgi.input_terminated") else stream.read(length) if length else b""
            environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
            raw_path = (environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")).split("?", 1)[0]
            request_guard.check_signature(environ["REQUEST_METHOD"], raw_path, query, headers, body, key)
            decision = catalog.check(
                signed.group(4), environ["REQUEST_METHOD"], raw_path, query, headers, body,
                host_names=[name.rsplit(":", 1)[0] for name in request_guard.allowed_hosts(int(environ["SERVER_PORT"]))],
                fallback_style=style)
            if not decision.allowed:
                style = decision.style
                raise request_guard.Refused("not_emulated", decision.message)
            if role is not None:
                try:
                    iam.authorize_request(role, decision.service, decision.operation, raw_path, query, headers, body)
                except iam.Denied as denied:
                    style = decision.style
                    raise request_guard.Refused("access_denied", str(denied)) from None
        except request_guard.Refused as refused:
            log.warning("refused %s %s: %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO", "")[:200],
                        refused.message)
            status, response_headers, body = refused.render(style)
            start_response(f"{status} {HTTPStatus(status).phrase}",
                           [*response_headers, ("Content-Length", str(len(body)))])
            return [body]
        if decision.service in own:
            return own[decision.service](environ, start_response)
        return app(environ, start_response)

    return guarded


def _moto_app():
    """moto's server application without its CORS: moto wraps each service's app in flask_cors unless
    MOTO_DISABLE_GLOBAL_CORS was set when moto.settings was first imported."""
    os.environ["MOTO_DISABLE_GLOBAL_CORS"] = "true"
    from moto.moto_server import werkzeug_app

    if not werkzeug_app.DISABLE_GLOBAL_CORS:
        raise LocalJobError("moto was imported before the control plane turned its CORS off; "
                            "serve() must run before anything imports moto in this process")
    return werkzeug_app.DomainDispatcherApplication(werkzeug_app.create_backend_app)


def install_extensions() -> None:
    """The control plane's extensions of moto, installed before serving (and by ``python -m
    local_aws.operations``, which reports what they emulate)."""
    from local_aws import athena, job_logs, kinesis_shard, lake_s3, sagemaker_api, spark_api

    kinesis_shard.install()  # moto's Kinesis shard without its O(N) per put and per read; before serving
    lake_s3.install()
    sagemaker_api.install()
    spark_api.install()  # EMR Serverless and Glue: local_aws.spark_api's backend and response subclasses
    job_logs.install()  # the jobs' logs in CloudWatch Logs, read from the runners' files
    athena.install()  # Athena: the catalog's tables queried with DuckDB (local_aws.athena)


def serve(listen_port: int, host: str = "127.0.0.1") -> None:
    """Run the control plane in this process until SIGTERM."""
    os.environ["MOTO_ACCOUNT_ID"] = local_settings.LOCAL_ACCOUNT
    local_settings.export()  # the local stack's resource names, for a control plane started without scripts/env.sh
    app = _moto_app()
    from moto.backends import get_backend
    from werkzeug.serving import make_server

    from local_aws import spark_api

    export_credentials()  # the jobs it runs (Spark, Glue streaming) inherit the lake's key
    install_extensions()
    url = f"http://127.0.0.1:{listen_port}"
    spark_api.create_application(get_backend("emr-serverless")[local_settings.LOCAL_ACCOUNT][REGION],
                                 cfg.settings.emr_application_id)
    glue = get_backend("glue")[local_settings.LOCAL_ACCOUNT][REGION]
    spark_api.create_glue_jobs(glue, url)
    spark_api.create_catalog(glue, url)  # the template's database and tables of the lake
    spark_api.adopt_streaming_runs(glue)
    create_work_group(url)
    create_mwaa_environment()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per request
    server = make_server(host, listen_port, guard(app, credentials()), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="control-plane", daemon=True)
    thread.start()
    # The template's Kinesis stream (the events the streaming job reads), as the stack creates it.
    from local_aws.kinesis import ensure_stream

    ensure_stream(url, cfg.settings.kinesis_stream)
    create_buckets()
    create_topics(url)
    create_data_key()
    create_roles()
    write_state(control_plane() / "server.json", {"pid": os.getpid(), "url": url, "started": now()})
    print(f"control plane serving {url} for lake {local_settings.lake_root()}", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    while not stopped.wait(0.5):
        pass
    server.shutdown()
    thread.join()


def create_buckets() -> None:
    """The template's lake and artifacts buckets, as the stack creates them: folders of the lake
    (``local_aws.lake_s3``); an existing one is left as it is."""
    for bucket in (cfg.settings.lake_bucket, cfg.settings.artifacts_bucket):
        (local_settings.lake_root() / bucket).mkdir(parents=True, exist_ok=True)


def create_work_group(url: str) -> str:
    """The template's Athena workgroup (its results location in the lake, ``local_aws.athena``), as the stack
    creates it; returns its name. An existing one is left as it is."""
    from local_aws import athena, spark_api
    from local_aws.moto_ext import backend
    from local_aws.template import athena_work_group

    refs = {**spark_api.glue_refs(url), "DataKey.Arn": cfg.settings.capture_kms_key_id}  # the data key's alias ARN
    request = athena_work_group(refs)
    athena.create_work_group(backend("athena"), request)
    return request["Name"]


def create_mwaa_environment() -> str:
    """The template's MWAA environment under the local name (``AIRFLOW_ENV_NAME``, ``local_aws.settings``:
    scripts/env.sh exports it, as MWAA sets it in its containers), whose InvokeRestApi the local stack's Airflow
    answers (``local_aws.mwaa``); returns its name."""
    from local_aws import mwaa
    from local_aws.template import mwaa_environment

    name = local_settings.airflow_env_name()
    mwaa.create_environment(name, mwaa_environment(
        {"Project": "churn", "MwaaExecutionRole.Arn": f"arn:aws:iam::{local_settings.LOCAL_ACCOUNT}:role/churn-mwaa"}))
    return name


def create_topics(url: str) -> list[str]:
    """The template's SNS topics (the model alerts churn_monitoring publishes to), as the stack creates
    them; returns their ARNs. CreateTopic of an existing name answers its ARN, so a restart is harmless."""
    from local_aws import spark_api
    from local_aws.template import sns_topic_names

    sns = client("sns", url)
    return [sns.create_topic(Name=name)["TopicArn"] for name in sns_topic_names(spark_api.glue_refs(url))]


def create_roles() -> dict[str, str]:
    """The template's roles in moto's IAM with their S3 statements (``local_aws.iam``): each role's
    requests to the lake are checked against them; returns role -> ARN."""
    from local_aws import iam
    from local_aws.moto_ext import backend

    s = cfg.settings
    return iam.create_roles(backend("iam", region="global"),
                            iam.bucket_refs(s.lake_bucket, s.artifacts_bucket, local_settings.LOCAL_ACCOUNT, REGION))


def create_data_key() -> str:
    """The template's DataKey under its local alias (``local_aws.settings.DATA_KEY_ALIAS``), which the
    endpoints' data capture names (CHURN_CAPTURE_KMS_KEY_ID); returns the key's id. A restart makes a new
    key under the same alias, so the alias ARN the settings name stays valid."""
    from moto.backends import get_backend

    from local_aws.settings import DATA_KEY_ALIAS

    kms = get_backend("kms")[local_settings.LOCAL_ACCOUNT][REGION]
    existing = kms.get_key_id_from_alias(DATA_KEY_ALIAS)
    if existing:
        return existing
    key = kms.create_key(policy=None, key_usage="ENCRYPT_DECRYPT", key_spec="SYMMETRIC_DEFAULT",
                         description="churn data key (the template's DataKey)", tags=None)
    kms.create_alias(key.id, DATA_KEY_ALIAS)
    return key.id


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(prog="python -m local_aws.control_plane")
    parser.add_argument("command", choices=["start", "status", "stop", "serve"])
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.port or port(), local_settings.bind_host())
    elif args.command == "start":
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
