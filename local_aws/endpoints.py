"""Local SageMaker endpoints: control plane, blue/green deployment with rollback, and a CLI.

An endpoint is real processes that outlive the task that deployed it: one router (the SageMaker
Runtime front end on ``127.0.0.1:$CHURN_LOCAL_RUNTIME_PORT``, shared by every endpoint of this
lake) and, per production variant, ``InitialInstanceCount`` container processes (capped by
``CHURN_LOCAL_ENDPOINT_MAX_INSTANCES``) on free ports. The state lives in the lake's control plane:
``.control-plane/sagemaker/endpoints/<name>.json`` holds the status, the live and standby
variants and the ``routes`` the router follows.

A deployment (``deploy``) is CreateModel + CreateEndpointConfig + CreateEndpoint or UpdateEndpoint:

- create: start the variant, health-check it (``/ping``), check it against the model's
  expectations (canary rows scored at training time), then route all traffic to it;
- update, blue/green: start the new (green) variant beside the live (blue) one, health check and
  expectations against green directly, then shift traffic as the request's
  ``BlueGreenUpdatePolicy`` says (ALL_AT_ONCE, CANARY, LINEAR), each step baking for
  ``CHURN_LOCAL_BAKE_SECONDS`` while an alarm watches green's 5XX rate; the last step is an
  atomic switch of the routes file, and blue stays up as the standby (kept for rollback).
  Any failure puts all traffic back on blue, stops green, records the reason and fails the task.

``python -m local_aws.endpoints list|describe NAME|rollback NAME|delete NAME|delete --all``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from churn_ml import canary_check, naming
from churn_ml import settings as cfg
from local_aws import data_capture, lake_files, request_guard
from local_aws import settings as local_settings
from local_aws.common import (
    LOCAL_REGION,
    RUNNER_PATH,
    LocalJobError,
    arn,
    control_plane,
    create_once,
    created,
    credentials,
    endpoint_token,
    now,
    python,
    read_state,
    tail,
    write_state,
)
from local_aws.models import create_model, describe_model, unpack_model

logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per health or metrics poll otherwise
STARTUP_SECONDS = 90.0
STOP_SECONDS = 30.0
ALARM_MARGIN = 0.01  # green may not err more often than blue by more than this


# ---------------------------------------------------------------- processes

def _ping(url: str, timeout: float = 2.0) -> dict | None:
    import httpx

    try:
        answer = httpx.get(f"{url}/ping", timeout=timeout)
    except httpx.HTTPError:
        return None
    if answer.status_code != 200:
        return None
    try:
        return answer.json() if answer.content else {}
    except ValueError:
        return {}


def _exited(pid: int) -> bool:
    """True when the process is gone (reaping it if it was our child)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return True
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _stop_process(pid: int, log: logging.Logger, what: str) -> None:
    """SIGTERM (uvicorn finishes the requests in flight), SIGKILL after STOP_SECONDS."""
    if _exited(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline:
        if _exited(pid):
            log.info("stopped %s (pid %d)", what, pid)
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    log.warning("killed %s (pid %d): it did not stop within %.0fs", what, pid, STOP_SECONDS)


def _start_process(role: str, args: list[str], folder: Path, env: dict, log: logging.Logger) -> dict:
    """Start a detached server process and wait until it answers /ping; returns pid, port, url, log."""
    folder.mkdir(parents=True, exist_ok=True)
    port_file, log_file, out_file = folder / "port.json", folder / "server.log", folder / "server.out"
    port_file.unlink(missing_ok=True)
    # The server logs to a rotating server.log; server.out keeps only what bypasses logging (a crash).
    with out_file.open("ab") as sink:
        proc = subprocess.Popen(
            [python(), "-m", "local_aws.endpoint_server", "--log-file", str(log_file), role, *args,
             "--port-file", str(port_file)],
            stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=folder,
            start_new_session=True,  # not in the task's process group: it outlives the task
        )
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            lines = [line for f in (log_file, out_file) if f.exists() for line in f.read_text(errors="replace").splitlines()]
            raise LocalJobError(
                f"{role} process exited with code {proc.returncode} before it was healthy.\n"
                f"Last lines:\n{tail(lines)}\nFull log: {log_file}"
            )
        if port_file.exists():
            url = f"http://127.0.0.1:{json.loads(port_file.read_text())['port']}"
            if _ping(url) is not None:
                return {"pid": proc.pid, "url": url, "log": str(log_file)}
        time.sleep(0.1)
    _stop_process(proc.pid, log, role)
    raise LocalJobError(f"{role} process did not answer /ping within {STARTUP_SECONDS:.0f}s; see {log_file}")


def _env(extra: dict | None = None) -> dict:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*RUNNER_PATH, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "PYTHONUNBUFFERED": "1",
        **(extra or {}),
    }


# ---------------------------------------------------------------- the router

def routes_dir() -> Path:
    return control_plane("sagemaker", "endpoints")


def runtime_url() -> str | None:
    """The local SageMaker Runtime URL if its router is up (for ``endpoint_url=``)."""
    state = read_state(control_plane("sagemaker", "runtime") / "router.json")
    if state and _ping(state["url"]) is not None:
        return state["url"]
    return None


def runtime_client(url: str | None = None):
    """``boto3.client("sagemaker-runtime")`` pointed at the local Runtime, signing with the lake's key."""
    import boto3
    from botocore.config import Config

    url = url or runtime_url()
    if url is None:
        raise LocalJobError("the local SageMaker Runtime is not running: deploy an endpoint first")
    return boto3.client(
        "sagemaker-runtime", endpoint_url=url, region_name=LOCAL_REGION, **credentials().as_client_kwargs(),
        config=Config(retries={"mode": "standard", "max_attempts": 3}),
    )


def ensure_router(log: logging.Logger) -> str:
    """Start the router unless this lake's router is already answering; returns its URL.

    Under a lock: two endpoints deployed at once would otherwise both start one, and the one that
    lost the port would be recorded as the router (the real one then outlives ``stop_router``)."""
    folder = control_plane("sagemaker", "runtime")
    with (folder / ".router.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_router(folder, log)


def _ensure_router(folder: Path, log: logging.Logger) -> str:
    port = local_settings.runtime_port()
    url = f"http://127.0.0.1:{port}"
    answer = _ping(url)
    if answer is not None:
        if answer.get("state_dir") != str(routes_dir()):
            raise LocalJobError(
                f"127.0.0.1:{port} already serves another lake's endpoints ({answer.get('state_dir')}); "
                "stop it (python -m local_aws.endpoints delete --all with that LAKE_ROOT) or set "
                "CHURN_LOCAL_RUNTIME_PORT to a free port"
            )
        return url
    info = _start_process(
        "router", ["--port", str(port), "--state-dir", str(routes_dir()), "--account", local_settings.LOCAL_ACCOUNT,
                   "--host", local_settings.bind_host()],
        folder, _env(), log,
    )
    write_state(folder / "router.json", info | {"port": port, "started": now()})
    log.info("started the local SageMaker Runtime at %s (pid %d)", info["url"], info["pid"])
    return info["url"]


def stop_router(log: logging.Logger) -> None:
    folder = control_plane("sagemaker", "runtime")
    state = read_state(folder / "router.json")
    if state:
        _stop_process(state["pid"], log, "router")
        (folder / "router.json").unlink(missing_ok=True)


def router_metrics(url: str, endpoint: str) -> dict:
    import httpx

    return httpx.get(f"{url}/_local/metrics", headers=local_token(), timeout=5).json().get(endpoint, {})


def local_token() -> dict:
    """The header the router's ``/_local/`` pages and the model containers take (``request_guard``)."""
    return {request_guard.TOKEN_HEADER: endpoint_token()}


# ---------------------------------------------------------------- endpoint configs

def create_endpoint_config(request: dict, log: logging.Logger) -> dict:
    name = request.get("EndpointConfigName")
    variants = request.get("ProductionVariants") or []
    if not name:
        raise ValueError("endpoint config request is missing EndpointConfigName")
    naming.check_name(name, "sagemaker", "CreateEndpointConfig", "EndpointConfigName")
    if len(variants) != 1:
        raise ValueError(f"endpoint config {name}: the local target serves exactly one production variant, got {len(variants)}")
    for key in ("VariantName", "ModelName"):
        if not variants[0].get(key):
            raise ValueError(f"endpoint config {name}: ProductionVariants[0].{key} is required")
    count = variants[0].get("InitialInstanceCount", 1)
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"endpoint config {name}: InitialInstanceCount must be an integer >= 1, got {count!r}")
    naming.check_name(variants[0]["VariantName"], "sagemaker-runtime", "InvokeEndpoint", "TargetVariant")
    if request.get("DataCaptureConfig") is not None:
        _check_data_capture(name, request["DataCaptureConfig"])
    describe_model(variants[0]["ModelName"])
    create_once("endpoint-configs", name, request, log)
    return describe_endpoint_config(name)


def delete_endpoint_config(name: str, log: logging.Logger) -> None:
    """DeleteEndpointConfig: forget the config; an endpoint deployed with it keeps serving (as on
    SageMaker: its variant's processes and routes carry what they need)."""
    path = control_plane("sagemaker", "endpoint-configs") / f"{naming.check_name(name, 'sagemaker', 'DeleteEndpointConfig', 'EndpointConfigName')}.json"
    if not path.exists():
        raise LocalJobError(f"Could not find endpoint configuration {name}.")
    path.unlink()
    log.info("deleted endpoint config %s", name)


def _check_data_capture(name: str, capture: dict) -> None:
    """What the local router needs of a DataCaptureConfig, beyond botocore's shape (which the client
    checked): a percentage 0-100, capture modes, and an ``s3://`` destination under the lake bucket's
    ``monitoring/capture/`` (``dag_support.CAPTURE``), the one prefix the template lets the SageMaker role
    write capture to: the router writes there as the control plane's user, and must not be pointed at
    any other part of the lake (a model, the production pointer, another job's output)."""
    percentage = capture.get("InitialSamplingPercentage")
    if not isinstance(percentage, int) or isinstance(percentage, bool) or not 0 <= percentage <= 100:
        raise ValueError(f"endpoint config {name}: DataCaptureConfig.InitialSamplingPercentage must be an integer "
                         f"from 0 to 100, got {percentage!r}")
    modes = [o.get("CaptureMode") for o in capture.get("CaptureOptions") or []]
    if not modes or any(m not in data_capture.MODES for m in modes):
        raise ValueError(f"endpoint config {name}: DataCaptureConfig.CaptureOptions must name CaptureMode "
                         f"{', '.join(data_capture.MODES)}, got {modes!r}")
    destination = capture.get("DestinationS3Uri") or ""
    try:
        lake_files.local_path(destination)  # where the router writes; refuses what would lead outside the lake
    except ValueError as err:
        raise ValueError(f"endpoint config {name}: DataCaptureConfig.DestinationS3Uri: {err}") from err
    capture_root = f"s3://{cfg.settings.lake_bucket}/monitoring/capture/"  # dag_support.CAPTURE (no Airflow import here)
    if not f"{destination.rstrip('/')}/".startswith(capture_root):
        raise ValueError(f"endpoint config {name}: DataCaptureConfig.DestinationS3Uri must be under {capture_root} "
                         f"(the lake's capture prefix, which the monitoring job reads), got {destination!r}")


def describe_endpoint_config(name: str) -> dict:
    state = created("endpoint-configs", name)
    if state is None:
        raise LocalJobError(f"Could not find endpoint configuration {name}.")
    request = state["request"]
    return {
        "EndpointConfigName": name,
        "EndpointConfigArn": arn("sagemaker", "endpoint-config", name.lower()),
        "ProductionVariants": request["ProductionVariants"],
        **({"DataCaptureConfig": request["DataCaptureConfig"]} if request.get("DataCaptureConfig") else {}),
        "Tags": request.get("Tags", []),
        "CreationTime": state["CreationTime"],
    }


def _tag(config: dict, key: str) -> str | None:
    return next((t["Value"] for t in config.get("Tags", []) if t["Key"] == key), None)


# ---------------------------------------------------------------- endpoints

def _endpoint(name: object) -> str:
    """``name`` if SageMaker would accept it as an EndpointName: names become file names below."""
    return naming.check_name(name, "sagemaker", "CreateEndpoint", "EndpointName")


def _state_file(name: str) -> Path:
    return routes_dir() / f"{_endpoint(name)}.json"


def _instances_dir(name: str, config_name: str) -> Path:
    naming.check_name(config_name, "sagemaker", "CreateEndpointConfig", "EndpointConfigName")
    return control_plane("sagemaker", "endpoint-instances", _endpoint(name), config_name)


@contextlib.contextmanager
def _deployment_lock(name: str, busy: str | None = None):
    lock_path = routes_dir() / f".{_endpoint(name)}.lock"
    with lock_path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise LocalJobError(busy or f"another deployment of endpoint {name} is in progress; wait for it to finish") from err
        yield


def _healthy(variant: dict | None) -> bool:
    return bool(variant) and all(_ping(i["url"]) is not None for i in variant["instances"])


def _route(variant: dict, weight: float) -> dict:
    """What the router follows for a variant; its config's DataCaptureConfig goes with it (blue and green
    capture as each of their configs says)."""
    route = {"EndpointConfigName": variant["EndpointConfigName"], "VariantName": variant["VariantName"],
             "urls": [i["url"] for i in variant["instances"]], "weight": weight}
    if variant.get("DataCaptureConfig"):
        route["DataCaptureConfig"] = variant["DataCaptureConfig"]
    return route


def _capture_summary(capture: dict) -> dict:
    """DescribeEndpoint's DataCaptureConfigSummary of a config's DataCaptureConfig."""
    capturing = data_capture.CaptureSettings.of(capture) is not None
    return {"EnableCapture": bool(capture.get("EnableCapture", True)), "CaptureStatus": "Started" if capturing else "Stopped",
            "CurrentSamplingPercentage": capture["InitialSamplingPercentage"],
            "DestinationS3Uri": capture["DestinationS3Uri"], "KmsKeyId": capture.get("KmsKeyId", "")}


def describe_endpoint(name: str) -> dict:
    """DescribeEndpoint's shape, plus ``Local``: runtime URL, model version, processes, last deployment."""
    state = read_state(_state_file(name))
    if state is None:
        raise LocalJobError(f"Could not find endpoint {name}.")
    live, status, reason = state.get("live"), state["EndpointStatus"], state.get("FailureReason")
    if status == "InService" and not _healthy(live):
        status, reason = "Failed", f"a container of {live['EndpointConfigName'] if live else 'the endpoint'} is not answering /ping; see its server.log"
    weights = {r["EndpointConfigName"]: r["weight"] for r in state.get("routes", [])}
    describe = {
        "EndpointName": name,
        "EndpointArn": arn("sagemaker", "endpoint", name.lower()),
        "EndpointConfigName": state.get("EndpointConfigName"),
        "EndpointStatus": status,
        "ProductionVariants": [
            {"VariantName": v["VariantName"], "CurrentWeight": weights.get(v["EndpointConfigName"], 0.0),
             "DesiredWeight": 1.0, "CurrentInstanceCount": len(v["instances"]),
             "DesiredInstanceCount": len(v["instances"]), "DeployedImages": [{"SpecifiedImage": v["Image"]}]}
            for v in [live] if v
        ],
        "CreationTime": state["CreationTime"],
        "LastModifiedTime": state["LastModifiedTime"],
        "Local": {
            "RuntimeUrl": f"http://127.0.0.1:{local_settings.runtime_port()}",
            "ModelPackageVersion": live.get("ModelPackageVersion") if live else None,
            "ModelDataUrl": live.get("ModelDataUrl") if live else None,
            "Instances": live["instances"] if live else [],
            "Standby": (state.get("standby") or {}).get("EndpointConfigName"),
            "Routes": state.get("routes", []),
            "LastDeployment": state.get("LastDeployment"),
        },
    }
    if live and live.get("DataCaptureConfig"):
        describe["DataCaptureConfig"] = _capture_summary(live["DataCaptureConfig"])
    if state.get("DeploymentConfig"):
        describe["LastDeploymentConfig"] = state["DeploymentConfig"]
    if state.get("PendingDeployment"):
        describe["PendingDeploymentSummary"] = state["PendingDeployment"]
    if reason:
        describe["FailureReason"] = reason
    return describe


def list_endpoints() -> list[str]:
    return sorted(p.stem for p in routes_dir().glob("*.json"))


def _launch(name: str, config: dict, log: logging.Logger) -> dict:
    """Start the config's variant: unpack the model, one container process per instance, all healthy."""
    variant = config["ProductionVariants"][0]
    model = describe_model(variant["ModelName"])
    folder = _instances_dir(name, config["EndpointConfigName"])
    model_dir, code_dir, env = unpack_model(model, folder)
    count = min(variant.get("InitialInstanceCount", 1), local_settings.endpoint_max_instances())
    threads = max(1, (os.cpu_count() or 1) // count)
    launched = {
        "EndpointConfigName": config["EndpointConfigName"], "VariantName": variant["VariantName"],
        "ModelName": model["ModelName"], "Image": model["PrimaryContainer"]["Image"],
        "ModelDataUrl": model["PrimaryContainer"]["ModelDataUrl"],
        "ModelPackageVersion": _tag(config, "model_package_version"), "instances": [],
        **({"DataCaptureConfig": config["DataCaptureConfig"]} if config.get("DataCaptureConfig") else {}),
    }
    try:
        for index in range(count):
            info = _start_process(
                "container",
                ["--model-dir", str(model_dir), "--code-dir", str(code_dir), "--program", env["SAGEMAKER_PROGRAM"]],
                folder / f"instance-{index}", _env({**env, "OMP_NUM_THREADS": str(threads)}), log,
            )
            launched["instances"].append(info)
            log.info("%s instance %d of %s is up at %s (pid %d)", config["EndpointConfigName"], index, name, info["url"], info["pid"])
    except Exception:
        _retire(launched, log)
        raise
    return launched


def _retire(variant: dict | None, log: logging.Logger) -> None:
    for instance in (variant or {}).get("instances", []):
        _stop_process(instance["pid"], log, f"{variant['EndpointConfigName']} instance")


def check_expectations(variant: dict, canary: dict | None, log: logging.Logger) -> None:
    """Send the canary rows to every instance, as CSV and as JSON; every score must match training's."""
    import httpx

    if not canary or not canary.get("rows"):
        log.warning("no canary rows for %s: deploying on the health check alone", variant["EndpointConfigName"])
        return
    token = local_token()
    for instance in variant["instances"]:
        for body, content_type in ((canary_check.csv_body(canary), "text/csv"), (canary_check.json_body(canary), "application/json")):
            answer = httpx.post(f"{instance['url']}/invocations", content=body,
                                headers={"Content-Type": content_type, "Accept": "application/json", **token},
                                timeout=60)
            if answer.status_code != 200:
                raise LocalJobError(
                    f"canary request ({content_type}) to {instance['url']} got HTTP {answer.status_code}: {answer.text[:500]}"
                )
            problem = canary_check.mismatch([p["score"] for p in answer.json()["predictions"]], canary)
            if problem:
                raise LocalJobError(f"canary ({content_type}, {instance['url']}): {problem}")
    log.info("canary: %d rows x %d instance(s), CSV and JSON, all within %.0e of training's scores",
             len(canary["rows"]), len(variant["instances"]), canary_check.TOLERANCE)


def traffic_steps(deployment_config: dict | None, instances: int) -> list[float]:
    """Green's share of traffic at each step of a BlueGreenUpdatePolicy (the last is 1.0)."""
    routing = ((deployment_config or {}).get("BlueGreenUpdatePolicy") or {}).get("TrafficRoutingConfiguration") or {}
    kind = routing.get("Type", "ALL_AT_ONCE")

    def share(size: dict) -> float:
        if size.get("Type") == "INSTANCE_COUNT":
            return min(1.0, size["Value"] / max(instances, 1))
        return min(1.0, size["Value"] / 100.0)

    if kind == "ALL_AT_ONCE":
        return [1.0]
    if kind == "CANARY":
        return sorted({share(routing["CanarySize"]), 1.0})
    if kind == "LINEAR":
        step = share(routing["LinearStepSize"])
        steps = [min(1.0, step * k) for k in range(1, math.ceil(1 / step) + 1)]
        return sorted(set(steps) | {1.0})
    raise ValueError(f"TrafficRoutingConfiguration.Type must be ALL_AT_ONCE, CANARY or LINEAR, got {kind!r}")


def _errors(counts: dict) -> tuple[int, int]:
    """Invocations and the errors the alarm counts: 5XX (the model failed or did not answer), as the
    template's ``<endpoint>-invocation-errors`` alarm on Invocation5XXErrors does on AWS. Client
    errors (4XX, a ModelError for a bad request) are the caller's fault: garbage sent during a
    bake must not roll back a good model."""
    return counts.get("Invocations", 0), counts.get("Invocation5XXErrors", 0)


def _bake(url: str, name: str, blue: str, green: str, seconds: float, log: logging.Logger) -> None:
    """Watch the variants' 5XX counts for ``seconds``; raise (the alarm) when green errs more than blue."""
    start = router_metrics(url, name)
    deadline = time.monotonic() + seconds
    while True:
        now_counts = router_metrics(url, name)
        (g_calls, g_errors), (g_calls0, g_errors0) = _errors(now_counts.get(green, {})), _errors(start.get(green, {}))
        (b_calls, b_errors), (b_calls0, b_errors0) = _errors(now_counts.get(blue, {})), _errors(start.get(blue, {}))
        errors = g_errors - g_errors0
        # The router counts a request's 5XX and its invocation one after the other: a snapshot between
        # the two has an error more than calls, never a division by zero.
        calls = max(g_calls - g_calls0, errors)
        blue_rate = (b_errors - b_errors0) / max(b_calls - b_calls0, 1)
        if errors and errors / calls > blue_rate + ALARM_MARGIN:
            raise LocalJobError(
                f"alarm: {green} answered {errors} of {calls} requests with a 5XX while baking ({blue} 5XX rate {blue_rate:.1%})"
            )
        if time.monotonic() >= deadline:
            log.info("baked %.0fs: %s served %d requests, %d errors", seconds, green, calls, errors)
            return
        time.sleep(0.25)


def _save(name: str, state: dict) -> None:
    state["LastModifiedTime"] = now()
    write_state(_state_file(name), state)  # atomic replace: what the router switches on


def deploy(request: dict, log: logging.Logger, expectations: dict | None = None) -> dict:
    """CreateModel + CreateEndpointConfig + CreateEndpoint/UpdateEndpoint with blue/green; returns
    ``{"EndpointConfig": ..., "Endpoint": ...}`` like the provider's endpoint operator."""
    endpoint = request["Endpoint"]
    name, config_name = endpoint["EndpointName"], endpoint["EndpointConfigName"]
    if request.get("Model"):
        create_model(request["Model"], log)
    if request.get("EndpointConfig"):
        config = create_endpoint_config(request["EndpointConfig"], log)
    else:  # CreateEndpoint/UpdateEndpoint of an existing config, as the control plane receives them
        config = describe_endpoint_config(config_name)
    if config_name != config["EndpointConfigName"]:
        raise ValueError(f"Endpoint.EndpointConfigName {config_name} is not the config in the request ({config['EndpointConfigName']})")
    with _deployment_lock(name):
        url = ensure_router(log)
        state = read_state(_state_file(name))
        if state and state.get("EndpointConfigName") == config_name and state["EndpointStatus"] == "InService" \
                and _healthy(state.get("live")):
            log.info("endpoint %s already serves %s: nothing to deploy", name, config_name)
        elif state is None or not _healthy(state.get("live")):
            _create(name, config, endpoint, state, url, expectations, log)
        else:
            _update(name, config, endpoint, state, url, expectations, log)
    return {"EndpointConfig": config, "Endpoint": describe_endpoint(name)}


def begin(request: dict, operation: str) -> None:
    """The synchronous part of CreateEndpoint / UpdateEndpoint on the control plane: check the
    request against the endpoint's state and record Creating or Updating, so that a DescribeEndpoint
    right after the call sees the deployment; a worker then runs ``deploy``."""
    name, config_name = _endpoint(request.get("EndpointName")), request.get("EndpointConfigName")
    describe_endpoint_config(config_name)
    state = read_state(_state_file(name))
    if operation == "CreateEndpoint" and state is not None:
        raise LocalJobError(f"Cannot create already existing endpoint {arn('sagemaker', 'endpoint', name.lower())}.")
    if operation == "UpdateEndpoint" and state is None:
        raise LocalJobError(f"Could not find endpoint {arn('sagemaker', 'endpoint', name.lower())}.")
    if state is not None and state["EndpointStatus"] in ("Creating", "Updating", "RollingBack", "Deleting"):
        raise LocalJobError(f"Cannot update in-progress endpoint {arn('sagemaker', 'endpoint', name.lower())}.")
    if state is None:
        state = {"EndpointName": name, "CreationTime": now(), "EndpointConfigName": config_name, "routes": [],
                 "EndpointStatus": "Creating"}
    else:
        state.update(EndpointStatus="Updating", PendingDeployment={"EndpointConfigName": config_name, "StartTime": now()},
                     DeploymentConfig=request.get("DeploymentConfig"))
    _save(name, state)


def deployment_ended(name: str, reason: str) -> None:
    """The deployment's worker died without finishing: a new endpoint is Failed, an updated one keeps
    serving its live variant (as SageMaker rolls a failed update back)."""
    state = read_state(_state_file(name))
    if state is None or state["EndpointStatus"] not in ("Creating", "Updating"):
        return
    if state.get("live"):
        state.update(EndpointStatus="InService", PendingDeployment=None, EndpointConfigName=state["live"]["EndpointConfigName"],
                     routes=[_route(state["live"], 1.0)], FailureReason=f"the update did not finish: {reason}"[:1024])
    else:
        state.update(EndpointStatus="Failed", FailureReason=reason[:1024])
    _save(name, state)


def _create(name, config, endpoint, state, url, expectations, log) -> None:
    if state:  # a Failed endpoint (its containers died): replace it
        _retire(state.get("live"), log)
        _retire(state.get("standby"), log)
    state = {"EndpointName": name, "CreationTime": (state or {}).get("CreationTime", now()),
             "EndpointStatus": "Creating", "EndpointConfigName": config["EndpointConfigName"], "routes": []}
    _save(name, state)
    variant = None
    try:
        variant = _launch(name, config, log)
        check_expectations(variant, expectations, log)
    except Exception as err:
        _retire(variant, log)
        state.update(EndpointStatus="Failed", FailureReason=str(err).splitlines()[0], live=None)
        _save(name, state)
        raise LocalJobError(f"endpoint {name} failed to create with {config['EndpointConfigName']}: {err}") from err
    state.update(EndpointStatus="InService", live=variant, routes=[_route(variant, 1.0)],
                 LastDeployment={"EndpointConfigName": config["EndpointConfigName"], "Status": "Succeeded", "Time": now()})
    state.pop("FailureReason", None)
    _save(name, state)
    log.info("endpoint %s is InService with %s at %s/endpoints/%s/invocations", name, config["EndpointConfigName"], url, name)


def _update(name, config, endpoint, state, url, expectations, log) -> None:
    blue, green = state["live"], None
    new = config["EndpointConfigName"]
    deployment_config = endpoint.get("DeploymentConfig")
    state.update(EndpointStatus="Updating", PendingDeployment={"EndpointConfigName": new, "StartTime": now()},
                 DeploymentConfig=deployment_config)
    _save(name, state)
    try:
        green = _launch(name, config, log)
        check_expectations(green, expectations, log)
        steps = traffic_steps(deployment_config, len(green["instances"]))
        bake = local_settings.bake_seconds()
        for share in steps:
            state["routes"] = [r for r in (_route(blue, round(1 - share, 4)), _route(green, share)) if r["weight"] > 0]
            _save(name, state)
            log.info("traffic: %s %.0f%%, %s %.0f%%", blue["EndpointConfigName"], 100 * (1 - share), new, 100 * share)
            # Each step bakes under the alarm; after the full shift blue is still up, so a late alarm rolls back too.
            _bake(url, name, blue["EndpointConfigName"], new, bake, log)
    except Exception as err:
        state.update(routes=[_route(blue, 1.0)], EndpointStatus="InService", PendingDeployment=None,
                     FailureReason=f"the update to {new} was rolled back: {str(err).splitlines()[0]}"[:1024],
                     LastDeployment={"EndpointConfigName": new, "Status": "RolledBack", "Reason": str(err), "Time": now()})
        _save(name, state)
        _retire(green, log)
        raise LocalJobError(
            f"deployment of {new} to endpoint {name} was rolled back: {err}\n"
            f"The endpoint still serves {blue['EndpointConfigName']} (all traffic)."
        ) from err
    previous_standby = state.get("standby")
    state.update(live=green, standby=blue, EndpointConfigName=new, EndpointStatus="InService", PendingDeployment=None,
                 LastDeployment={"EndpointConfigName": new, "Status": "Succeeded", "Time": now()})
    state.pop("FailureReason", None)
    _save(name, state)
    if previous_standby and previous_standby["EndpointConfigName"] not in (new, blue["EndpointConfigName"]):
        _retire(previous_standby, log)
    log.info("endpoint %s now serves %s; %s stays up as the standby for rollback", name, new, blue["EndpointConfigName"])


def rollback(name: str, log: logging.Logger) -> dict:
    """Switch all traffic back to the standby variant (the one the last deployment replaced)."""
    with _deployment_lock(name):
        state = read_state(_state_file(name))
        if state is None:
            raise LocalJobError(f"Could not find endpoint {name}.")
        standby = state.get("standby")
        if not _healthy(standby):
            raise LocalJobError(f"endpoint {name} has no healthy standby to roll back to")
        state.update(routes=[_route(standby, 1.0)], live=standby, standby=state["live"],
                     EndpointConfigName=standby["EndpointConfigName"], EndpointStatus="InService",
                     LastDeployment={"EndpointConfigName": standby["EndpointConfigName"], "Status": "ManualRollback",
                                     "Time": now()})
        _save(name, state)
    log.info("endpoint %s rolled back to %s", name, standby["EndpointConfigName"])
    return describe_endpoint(name)


def begin_delete(name: str) -> None:
    """DeleteEndpoint's synchronous part on the control plane: the endpoint is Deleting and has no
    routes (the router answers "not found" from now on); ``delete_endpoint`` then stops its processes
    and forgets it. An endpoint being created or updated cannot be deleted until that ends."""
    with _deployment_lock(name, f"Cannot delete in-progress endpoint {arn('sagemaker', 'endpoint', name.lower())}."):
        state = read_state(_state_file(name))
        if state is None:
            raise LocalJobError(f"Could not find endpoint {name}.")
        if state["EndpointStatus"] in ("Creating", "Updating", "RollingBack"):
            raise LocalJobError(f"Cannot delete in-progress endpoint {arn('sagemaker', 'endpoint', name.lower())}.")
        if state["EndpointStatus"] != "Deleting":
            state.update(EndpointStatus="Deleting", routes=[], PendingDeployment=None)
            _save(name, state)


def delete_endpoint(name: str, log: logging.Logger) -> None:
    """Stop an endpoint's processes and forget it (the end of DeleteEndpoint, and the CLI's delete)."""
    with _deployment_lock(name):
        state = read_state(_state_file(name))
        if state is None:
            raise LocalJobError(f"Could not find endpoint {name}.")
        if state["EndpointStatus"] != "Deleting" or state.get("routes"):
            state.update(EndpointStatus="Deleting", routes=[], PendingDeployment=None)
            _save(name, state)  # the router stops routing at once
        _retire(state.get("live"), log)
        _retire(state.get("standby"), log)
        _state_file(name).unlink()  # gone only when its processes are
        shutil.rmtree(control_plane("sagemaker", "endpoint-instances", _endpoint(name)), ignore_errors=True)
    log.info("deleted endpoint %s", name)


# ---------------------------------------------------------------- CLI

def _print_table(names: list[str]) -> None:
    print(f"{'endpoint':<22} {'status':<10} {'model':<7} {'config':<40} {'standby':<40} url")
    for name in names:
        d = describe_endpoint(name)
        local = d["Local"]
        version = f"v{local['ModelPackageVersion']}" if local["ModelPackageVersion"] else "-"
        print(f"{name:<22} {d['EndpointStatus']:<10} {version:<7} {d['EndpointConfigName'] or '-':<40} "
              f"{local['Standby'] or '-':<40} {local['RuntimeUrl']}/endpoints/{name}/invocations")
        last = local.get("LastDeployment") or {}
        if last.get("Status") == "RolledBack":
            print(f"{'':<22} last deployment {last['EndpointConfigName']} rolled back: {last.get('Reason', '').splitlines()[0]}")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    log = logging.getLogger("churn_ml.endpoints")
    parser = argparse.ArgumentParser(prog="python -m local_aws.endpoints",
                                     description="Local SageMaker endpoints of this lake ($LAKE_ROOT).")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="endpoints, status, model version, URL")
    describe = sub.add_parser("describe", help="DescribeEndpoint as JSON")
    describe.add_argument("name")
    back = sub.add_parser("rollback", help="send all traffic back to the standby variant")
    back.add_argument("name")
    delete = sub.add_parser("delete", help="stop an endpoint's processes and forget it")
    delete.add_argument("name", nargs="?")
    delete.add_argument("--all", action="store_true", help="every endpoint, and the router")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            names = list_endpoints()
            if not names:
                print("no local endpoints (the churn_training DAG deploys one)")
            else:
                _print_table(names)
        elif args.command == "describe":
            print(json.dumps(describe_endpoint(args.name), indent=1, default=str))
        elif args.command == "rollback":
            print(json.dumps(rollback(args.name, log), indent=1, default=str))
        elif args.all:
            for name in list_endpoints():
                delete_endpoint(name, log)
            stop_router(log)
        elif args.name:
            delete_endpoint(args.name, log)
        else:
            parser.error("delete needs an endpoint name or --all")
    except (LocalJobError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
