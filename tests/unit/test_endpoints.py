"""The local endpoint: real server processes, boto3 sagemaker-runtime, blue/green with rollback.

Each test gets its own lake and runtime port; every process it starts is stopped at teardown.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import threading
import time

import httpx
import numpy as np
import pytest
from botocore.exceptions import ClientError

from local_aws import endpoints, lake_files, request_guard
from local_aws.common import LocalJobError, credentials
from local_aws.training import run_training_job
from support import BLUE_GREEN_CANARY, free_port, model_request, sourcedir, training_request, write_channel

LOG = logging.getLogger("test")
NAME = "churn-test"
CANARY = BLUE_GREEN_CANARY



@pytest.fixture
def runtime(lake_root, monkeypatch):
    monkeypatch.setenv("CHURN_LOCAL_RUNTIME_PORT", str(free_port()))
    monkeypatch.setenv("CHURN_LOCAL_BAKE_SECONDS", "1.5")
    yield lake_root
    endpoints.main(["delete", "--all"])


@pytest.fixture
def models(runtime):
    """Two trained models that score differently: {"a": training describe, "b": ...}."""
    rng = np.random.default_rng(0)
    for channel in ("train", "validation", "holdout"):
        write_channel(runtime, channel, rng)
    jobs = {}
    for key, hps in (("a", {"max_depth": "3"}), ("b", {"max_depth": "2", "num_round": "8"})):
        request = training_request(**hps)
        request["TrainingJobName"] = f"train-{key}"
        jobs[key] = run_training_job(request, LOG)
    return jobs


def expectations(training: dict) -> dict:
    with tarfile.open(lake_files.local_path(training["ModelArtifacts"]["S3ModelArtifacts"])) as tar:
        return json.load(tar.extractfile("evaluation.json"))["canary"]


def request_for(training: dict, version: int, model_data_url: str | None = None, policy: dict | None = CANARY) -> dict:
    config = f"{NAME}-v{version}"
    return {
        "Model": model_request(f"model-v{version}", model_data_url or training["ModelArtifacts"]["S3ModelArtifacts"]),
        "EndpointConfig": {
            "EndpointConfigName": config,
            "ProductionVariants": [{"VariantName": "primary", "ModelName": f"model-v{version}",
                                    "InitialInstanceCount": 2, "InstanceType": "ml.m5.large"}],
            "Tags": [{"Key": "model_package_version", "Value": str(version)}],
        },
        "Endpoint": {"EndpointName": NAME, "EndpointConfigName": config, **({"DeploymentConfig": policy} if policy else {})},
    }


def csv_body(canary: dict) -> str:
    return "".join(f"r{i}," + ",".join("" if v is None else str(v) for v in row) + "\n" for i, row in enumerate(canary["rows"]))


def invoke_scores(client, canary: dict) -> list[float]:
    answer = client.invoke_endpoint(EndpointName=NAME, ContentType="text/csv", Accept="text/csv", Body=csv_body(canary))
    return [float(line.split(",")[1]) for line in answer["Body"].read().decode().splitlines()]


class Client(threading.Thread):
    """A client thread for the length of a ``with`` block: ``run`` loops until ``stop`` is set."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.join(30)


class Traffic(Client):
    """Steady requests through the Runtime while a deployment runs; records every failure."""

    def __init__(self, canary: dict) -> None:
        super().__init__()
        self.canary, self.sent, self.failures = canary, 0, []
        self.scores: list[list[float]] = []

    def run(self) -> None:
        client = endpoints.runtime_client()
        while not self.stop.is_set():
            try:
                self.scores.append(invoke_scores(client, self.canary))
            except Exception as err:
                self.failures.append(repr(err))
            self.sent += 1
            time.sleep(0.02)


def test_create_then_boto3_runtime_returns_the_trained_scores(models, runtime, capsys):
    canary = expectations(models["a"])
    result = endpoints.deploy(request_for(models["a"], 1), LOG, canary)
    described = result["Endpoint"]
    assert described["EndpointStatus"] == "InService" and described["EndpointConfigName"] == f"{NAME}-v1"
    assert described["Local"]["ModelPackageVersion"] == "1" and len(described["Local"]["Instances"]) == 2

    client = endpoints.runtime_client()
    assert invoke_scores(client, canary) == pytest.approx(canary["scores"], abs=2e-6)
    as_json = client.invoke_endpoint(
        EndpointName=NAME, ContentType="application/json",
        Body=json.dumps({"instances": [{"id": "x", "features": canary["rows"][0]}]}),
    )
    assert as_json["ContentType"] == "application/json" and as_json["InvokedProductionVariant"] == "primary"
    assert json.loads(as_json["Body"].read())["predictions"][0] == {"id": "x", "score": pytest.approx(canary["scores"][0], abs=2e-6)}

    # The same request again is a no-op (a retried task), and the CLI shows the version.
    assert endpoints.deploy(request_for(models["a"], 1), LOG, canary)["Endpoint"]["Local"]["Instances"] == described["Local"]["Instances"]
    assert endpoints.main(["list"]) == 0
    listing = capsys.readouterr().out
    assert NAME in listing and "InService" in listing and "v1" in listing


def test_errors_have_the_runtime_shapes_and_the_container_statuses(models, runtime):
    canary = expectations(models["a"])
    instance = endpoints.deploy(request_for(models["a"], 1, policy=None), LOG, canary)["Endpoint"]["Local"]["Instances"][0]
    client = endpoints.runtime_client()
    cases = [("text/html", "<p>", 415), ("text/csv", "1,2\n", 400), ("application/json", "{oops", 400)]
    for content_type, body, status in cases:
        with pytest.raises(ClientError) as caught:
            client.invoke_endpoint(EndpointName=NAME, ContentType=content_type, Body=body)
        assert caught.value.response["Error"]["Code"] == "ModelError"
        assert caught.value.response["OriginalStatusCode"] == status
        direct = httpx.post(f"{instance['url']}/invocations", content=body,
                            headers={"Content-Type": content_type, **endpoints.local_token()})  # as the router sends it
        assert direct.status_code == status and direct.text  # the container contract, with the message
    with pytest.raises(ClientError, match="not found"):
        client.invoke_endpoint(EndpointName="no-such-endpoint", ContentType="text/csv", Body="1,2,3\n")
    too_big = b"0" * (6 * 1024 * 1024 + 1)
    assert httpx.post(f"{instance['url']}/invocations", content=too_big,
                      headers={"Content-Type": "text/csv", **endpoints.local_token()}).status_code == 413
    url = f"{endpoints.runtime_url()}/endpoints/{NAME}/invocations"
    signed = request_guard.sign("POST", url, too_big, {"Content-Type": "text/csv"}, credentials())
    assert httpx.post(url, content=too_big, headers=signed).status_code == 413
    assert httpx.get(f"{instance['url']}/ping").status_code == 200
    assert invoke_scores(client, canary) == pytest.approx(canary["scores"], abs=2e-6)  # still serving


def test_blue_green_canary_switches_without_dropping_a_request(models, runtime):
    first, second = expectations(models["a"]), expectations(models["b"])
    endpoints.deploy(request_for(models["a"], 1), LOG, first)
    with Traffic(first) as traffic:
        time.sleep(0.5)
        result = endpoints.deploy(request_for(models["b"], 2), LOG, second)
        time.sleep(0.5)
    assert traffic.failures == [] and traffic.sent > 20
    described = result["Endpoint"]
    assert described["EndpointConfigName"] == f"{NAME}-v2" and described["Local"]["Standby"] == f"{NAME}-v1"
    assert described["Local"]["LastDeployment"]["Status"] == "Succeeded"
    # Traffic moved from A to B: both models answered during the deployment, B at the end.
    a_scores = [pytest.approx(s, abs=2e-6) for s in endpoints_scores(models["a"], first)]
    b_scores = [pytest.approx(s, abs=2e-6) for s in endpoints_scores(models["b"], first)]
    seen = {"a" if s == a_scores else "b" if s == b_scores else "?" for s in traffic.scores}
    assert seen == {"a", "b"}
    assert traffic.scores[-1] == b_scores
    metrics = endpoints.router_metrics(endpoints.runtime_url(), NAME)
    assert metrics[f"{NAME}-v2"]["Invocations"] > 0 and metrics[f"{NAME}-v2"]["Invocation5XXErrors"] == 0

    # The standby takes the traffic back on request.
    assert endpoints.rollback(NAME, LOG)["EndpointConfigName"] == f"{NAME}-v1"
    assert invoke_scores(endpoints.runtime_client(), first) == pytest.approx(first["scores"], abs=2e-6)


def endpoints_scores(training: dict, canary: dict) -> list[float]:
    """What ``training``'s model gives the canary rows (computed in-process, for comparison)."""
    import xgboost as xgb

    with tarfile.open(lake_files.local_path(training["ModelArtifacts"]["S3ModelArtifacts"])) as tar:
        booster = xgb.Booster()
        booster.load_model(bytearray(tar.extractfile("xgboost-model.json").read()))
    rows = np.array([[np.nan if v is None else v for v in row] for row in canary["rows"]], dtype="float64")
    return [round(float(s), 6) for s in booster.inplace_predict(rows)]


def _broken_artifact(runtime) -> str:
    uri = "s3://churn-lake/models/broken/model.tar.gz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = b'{"learner": "not a model"}'
        info = tarfile.TarInfo("xgboost-model.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    lake_files.write_bytes(uri, buffer.getvalue())
    return uri


@pytest.mark.parametrize("broken", ["model that does not load", "model that scores differently"])
def test_a_broken_model_is_rolled_back_and_the_old_one_keeps_serving(models, runtime, broken):
    first = expectations(models["a"])
    endpoints.deploy(request_for(models["a"], 1), LOG, first)
    if broken == "model that does not load":
        bad_request, bad_expectations = request_for(models["b"], 2, model_data_url=_broken_artifact(runtime)), first
        reason = "exited with code"
    else:  # model B, but the registry said model A: the canary rows catch it before any traffic moves
        bad_request, bad_expectations = request_for(models["b"], 2), first
        reason = "does not reproduce the registered one"
    with Traffic(first) as traffic, pytest.raises(LocalJobError, match=f"rolled back(.|\n)*{reason}") as caught:
        endpoints.deploy(bad_request, LOG, bad_expectations)
    assert "still serves churn-test-v1" in str(caught.value)
    assert traffic.failures == [] and traffic.sent > 0
    assert all(s == pytest.approx(first["scores"], abs=2e-6) for s in traffic.scores)
    described = endpoints.describe_endpoint(NAME)
    assert described["EndpointStatus"] == "InService" and described["EndpointConfigName"] == f"{NAME}-v1"
    assert described["Local"]["LastDeployment"]["Status"] == "RolledBack"
    assert [r["EndpointConfigName"] for r in described["Local"]["Routes"]] == [f"{NAME}-v1"]


def test_traffic_steps_follow_the_blue_green_policy():
    def policy(routing):
        return {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing}}

    assert endpoints.traffic_steps(None, 2) == [1.0]
    assert endpoints.traffic_steps(policy({"Type": "ALL_AT_ONCE"}), 2) == [1.0]
    assert endpoints.traffic_steps(policy({"Type": "CANARY", "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1}}), 2) == [0.5, 1.0]
    assert endpoints.traffic_steps(policy({"Type": "CANARY", "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10}}), 2) == [0.1, 1.0]
    assert endpoints.traffic_steps(
        policy({"Type": "LINEAR", "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25}}), 4
    ) == [0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError, match="ALL_AT_ONCE, CANARY or LINEAR"):
        endpoints.traffic_steps(policy({"Type": "BLUE"}), 2)


def test_client_request_batches_respect_rows_and_bytes():
    from churn.scoring import request_batches

    lines = [f"c{i},{'9' * 50}" for i in range(1200)]
    assert [len(b) for b in request_batches(lines, max_rows=500)] == [500, 500, 200]
    by_bytes = list(request_batches(lines, max_rows=10_000, max_bytes=10 * 56))
    assert all(sum(len(line) + 1 for line in b) <= 560 for b in by_bytes) and sum(map(len, by_bytes)) == 1200
    with pytest.raises(ValueError, match="does not fit"):
        list(request_batches(["x" * 100], max_bytes=50))


class Garbage(Client):
    """A client sending bad requests (4XX) and, optionally, rows a failing model answers with 5XX."""

    def __init__(self, bodies: list[tuple[str, str]]) -> None:
        super().__init__()
        self.bodies, self.answers = bodies, []

    def run(self) -> None:
        url, key = f"{endpoints.runtime_url()}/endpoints/{NAME}/invocations", credentials()
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                for content_type, body in self.bodies:
                    signed = request_guard.sign("POST", url, body.encode(), {"Content-Type": content_type}, key)
                    answer = client.post(url, content=body, headers=signed)
                    ok = answer.status_code == 200
                    self.answers.append(200 if ok else answer.json().get("OriginalStatusCode", answer.status_code))
                time.sleep(0.01)


BAD_REQUESTS = [("text/csv", "1,2\n"), ("text/csv", "C1,x,1,2\n"), ("application/json", "{oops"), ("text/html", "<p>")]


def _failing_program(runtime) -> str:
    """A source bundle whose handlers fail (500) on rows whose id starts with "boom": a model bug that
    passes the health check and the canary rows, and shows only under traffic."""
    bundle = lake_files.local_path(sourcedir())
    buffer = io.BytesIO()
    with tarfile.open(bundle) as source, tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member in source.getmembers():
            tar.addfile(member, source.extractfile(member) if member.isfile() else None)
        code = (b"import inference\nfrom inference import input_fn, model_fn, output_fn, response_type  # noqa: F401\n\n"
                b"def predict_fn(data, model):\n"
                b"    if data.ids and any(str(i).startswith('boom') for i in data.ids):\n"
                b"        raise RuntimeError('the model failed')\n"
                b"    return inference.predict_fn(data, model)\n")
        info = tarfile.TarInfo("failing_inference.py")
        info.size = len(code)
        tar.addfile(info, io.BytesIO(code))
    uri = "s3://churn-artifacts/sagemaker/failing-sourcedir.tar.gz"
    lake_files.write_bytes(uri, buffer.getvalue())
    return uri


@pytest.mark.e2e  # two deployments under traffic (~15 s each): in the full test command
def test_bad_client_requests_during_the_bake_do_not_roll_back_a_good_model(models, runtime):
    first, second = expectations(models["a"]), expectations(models["b"])
    endpoints.deploy(request_for(models["a"], 1), LOG, first)
    good = ("text/csv", csv_body(first))
    with Garbage([*BAD_REQUESTS, good]) as garbage:
        result = endpoints.deploy(request_for(models["b"], 2), LOG, second)
    assert result["Endpoint"]["Local"]["LastDeployment"]["Status"] == "Succeeded"
    assert result["Endpoint"]["EndpointConfigName"] == f"{NAME}-v2"
    assert garbage.answers.count(200) > 5 and sum(400 <= a < 500 for a in garbage.answers) > 20
    assert not any(a >= 500 for a in garbage.answers)
    metrics = endpoints.router_metrics(endpoints.runtime_url(), NAME)[f"{NAME}-v2"]
    assert metrics["Invocation4XXErrors"] > 0 and metrics["Invocation5XXErrors"] == 0


@pytest.mark.e2e
def test_a_model_that_returns_5xx_under_traffic_is_still_rolled_back(models, runtime):
    first, second = expectations(models["a"]), expectations(models["b"])
    endpoints.deploy(request_for(models["a"], 1), LOG, first)
    failing = request_for(models["b"], 2)
    failing["Model"]["PrimaryContainer"]["Environment"].update(
        SAGEMAKER_PROGRAM="failing_inference.py", SAGEMAKER_SUBMIT_DIRECTORY=_failing_program(runtime),
    )
    boom = ("text/csv", "".join(f"boom{i},1.0,2.0,3.0\n" for i in range(3)))
    with Garbage([*BAD_REQUESTS, boom]) as garbage, pytest.raises(LocalJobError, match="rolled back(.|\n)*5XX"):
        endpoints.deploy(failing, LOG, second)
    assert any(a == 500 for a in garbage.answers)  # green's failures, wrapped as ModelError
    described = endpoints.describe_endpoint(NAME)
    assert described["EndpointConfigName"] == f"{NAME}-v1" and described["Local"]["LastDeployment"]["Status"] == "RolledBack"


def test_endpoint_names_are_checked_before_they_become_paths(runtime, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("../../outside", "a/b", "x-", "x" * 64):
        assert endpoints.main(["delete", name]) == 1
        with pytest.raises(ValueError, match="validation error"):
            endpoints.describe_endpoint(name)
    assert outside.is_dir()
