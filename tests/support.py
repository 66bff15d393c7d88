"""Helpers the tests share: small training channels and a CreateTrainingJob request for them."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

from local_aws import lake_files

FEATURES = ["f1", "f2", "f3"]


def write_channel(root, name, rng, rows=400):
    x = rng.normal(size=(rows, 3))
    y = (x[:, 0] + 0.5 * rng.normal(size=rows) > 0.8).astype(int)
    path = lake_files.local_path(f"s3://churn-lake/ts/{name}/part-00000.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["churned_30d," + ",".join(FEATURES)] + [f"{a}," + ",".join(f"{v:.5f}" for v in row) for a, row in zip(y, x)]
    path.write_text("\n".join(lines) + "\n")


def deployed_code() -> str:
    """``s3://<artifacts bucket>/code/<version>``: include/ deployed into the lake of the test (``LAKE_ROOT``:
    ``lake_root``, or a module's control plane) by ``local_aws.code_deploy``, as scripts/stack.sh start
    deploys it. The runners run the version a request names and build nothing themselves."""
    from churn_ml import artifacts
    from local_aws import code_deploy

    return artifacts.code_uri(code_deploy.deploy()).rstrip("/")


def sourcedir() -> str:
    """The SageMaker source bundle of the deployed code version (``code/<version>/sagemaker/sourcedir.tar.gz``)."""
    return f"{deployed_code()}/sagemaker/sourcedir.tar.gz"


def training_request(**hyperparameters):
    hps = {"num_round": "20", "max_depth": "3", "early_stopping_rounds": "0", **hyperparameters}
    return {
        "TrainingJobName": "test-train",
        "AlgorithmSpecification": {
            "TrainingImage": "xgboost:1.7-1",
            "TrainingInputMode": "File",
            "MetricDefinitions": [
                {"Name": "holdout:auc", "Regex": r"^holdout:auc: ([0-9.]+)"},
                {"Name": "validation:auc", "Regex": r"validation-auc:([0-9.]+)"},
            ],
        },
        "HyperParameters": {
            **hps,
            "sagemaker_program": "churn_train.py",
            "sagemaker_submit_directory": sourcedir(),
        },
        "InputDataConfig": [
            {"ChannelName": c, "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://churn-lake/ts/{c}/"}}}
            for c in ("train", "validation", "holdout")
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://churn-lake/models/test/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "RoleArn": "arn:aws:iam::000000000000:role/x",
        "StoppingCondition": {"MaxRuntimeInSeconds": 300},
    }


def model_request(name: str, model_data_url: str) -> dict:
    """CreateModel for the framework container with this repository's inference handlers."""
    return {
        "ModelName": name,
        "ExecutionRoleArn": "arn:aws:iam::000000000000:role/x",
        "PrimaryContainer": {
            "Image": "xgboost:1.7-1",
            "ModelDataUrl": model_data_url,
            "Environment": {
                "SAGEMAKER_PROGRAM": "inference.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": sourcedir(),
            },
        },
    }


# The training DAG's DeploymentConfig shape: a canary of one instance, then the rest; rollback alarms.
BLUE_GREEN_CANARY = {
    "BlueGreenUpdatePolicy": {
        "TrafficRoutingConfiguration": {"Type": "CANARY", "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
                                        "WaitIntervalInSeconds": 600},
        "TerminationWaitInSeconds": 600,
        "MaximumExecutionTimeoutInSeconds": 3600,
    },
    "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "churn-xgboost-invocation-errors"}]},
}


def free_port() -> int:
    """A port nothing listens on at the moment, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chromium(*extra_flags: str):
    """A headless Chromium session (Debian's chromium and chromedriver, driven by Selenium); the caller quits
    it. Missing browser: a failure in CI (it must run there), a skip elsewhere. No sandbox as root; no
    background traffic to Google's hosts (this machine has no network)."""
    import os
    import shutil

    import pytest
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver):
        message = ("the browser check needs Debian's chromium and chromium-driver: apt-get install chromium "
                   "chromium-driver (scripts/test.sh installs them when run as root)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1400,1000", *extra_flags):
        options.add_argument(flag)
    session = webdriver.Chrome(service=Service(driver), options=options)
    session.set_script_timeout(60)
    return session


def serve_page(html: str):
    """Serve ``html`` at every path of a port of its own on 127.0.0.1 (another origin than the servers
    under test); returns the started server (``server_address[1]`` is the port; ``shutdown()`` stops it)."""
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            data = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def upload_code_version(s3, bucket: str, staging: Path, owner: str = "123456789012") -> str:
    """Put include/'s code version into the (moto) artifacts ``bucket`` the way a deploy does: built with
    ``churn_ml.artifacts.build``, uploaded by infra/deploy_mwaa.py's ``upload_code``, then pointed at by
    its ``write_code_pointer``; returns the version. ``staging``: an empty folder for the build."""
    from churn_ml import artifacts

    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("deploy_mwaa", repo / "infra" / "deploy_mwaa.py")
    deploy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(deploy)
    artifacts.build(repo / "include", staging)
    built = {"artifacts": staging, "source": repo}  # deploy.code_version: the fingerprint of <source>/include
    deploy.upload_code(s3, built, bucket, owner)
    deploy.write_code_pointer(s3, built, bucket, owner)
    artifacts.clear_cache()  # the pointer another test's bucket had is not this one's
    return deploy.code_version(built)


def lineage_event_problems(event: dict) -> list[str]:
    """What keeps ``event`` (a decoded OpenLineage event) from being a valid RunEvent: the JSON schema of
    tests/openlineage_run_event.schema.json with its formats, and the producer and schema URIs. Empty: valid."""
    import json
    from urllib.parse import urlparse

    import jsonschema

    schema = json.loads((Path(__file__).with_name("openlineage_run_event.schema.json")).read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(event)]
    facets = [f for part in (event.get("run", {}), event.get("job", {})) for f in (part.get("facets") or {}).values()]
    facets += [f for d in (*event.get("inputs", []), *event.get("outputs", [])) for f in (d.get("facets") or {}).values()]
    for uri in (event.get("producer"), event.get("schemaURL"), *(f.get("_producer") for f in facets),
                *(f.get("_schemaURL") for f in facets)):
        parsed = urlparse(str(uri))
        if not (parsed.scheme and (parsed.netloc or parsed.path)):
            problems.append(f"{uri!r} is not a URI")
    return problems
