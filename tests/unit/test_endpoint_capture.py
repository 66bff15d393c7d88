"""The local endpoint's data capture, through the control plane, read back by the monitoring reader.

An endpoint is deployed as the training DAG deploys it (the request builder's DataCaptureConfig,
CreateModel / CreateEndpointConfig / CreateEndpoint through boto3 to a control plane of this
module's own), invoked with boto3's sagemaker-runtime client, and its capture files are read with
``churn.capture.read_capture``: what was sent and answered comes back. At 0 % nothing is written.
The capture writer's own rules (layout, encodings, failures, shutdown) are tested on it directly.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import jinja2
import numpy as np
import pytest
from botocore.exceptions import ClientError

from churn import capture
from churn.features import FEATURE_COLUMNS
from churn_ml import training_requests as requests
from churn_ml.settings import settings
from local_aws import control_plane, data_capture, endpoints, lake_files
from local_aws.settings import deployment_environment
from local_aws.training import run_training_job
from support import free_port, training_request

LOG = logging.getLogger("test")
DESTINATION = "s3://churn-lake/monitoring/capture/"
FLUSH_SECONDS = 0.5


def write_channels(rows: int = 300) -> None:
    """Train/validation/holdout CSV with the model's real features, so the capture reader's columns apply."""
    rng = np.random.default_rng(5)
    for name in ("train", "validation", "holdout"):
        x = rng.normal(size=(rows, len(FEATURE_COLUMNS)))
        y = (x[:, 0] + 0.5 * rng.normal(size=rows) > 0.8).astype(int)
        path = lake_files.local_path(f"s3://churn-lake/ts/{name}/part-00000.csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [",".join(["churned_30d", *FEATURE_COLUMNS])] + [
            f"{a}," + ",".join(f"{v:.5f}" for v in row) for a, row in zip(y, x)]
        path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    """A control plane, router port and lake of this module's own; the router flushes every 0.5 s."""
    lake_root = tmp_path_factory.mktemp("capture") / "lake"
    runtime_port = free_port()
    env = {"LAKE_ROOT": str(lake_root), "ML_TARGET": "local", "CHURN_LOCAL_AWS_PORT": str(free_port()),
           "CHURN_LOCAL_RUNTIME_PORT": str(runtime_port), "CHURN_LOCAL_CAPTURE_FLUSH_SECONDS": str(FLUSH_SECONDS),
           "CHURN_LOCAL_BAKE_SECONDS": "0.5"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        url = control_plane.ensure_server()
        # The plugins' S3 calls (the capture reader) go to this plane's S3, over this module's lake.
        patch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(control_plane.connection(url, role=None)))
        try:
            write_channels()
            job = run_training_job({**training_request(num_round="10"), "TrainingJobName": "capture-model"}, LOG)
            yield {"url": url, "runtime": f"http://127.0.0.1:{runtime_port}", "lake": lake_root,
                   "model": job["ModelArtifacts"]["S3ModelArtifacts"]}
        finally:  # all at once: each process takes a second or two to stop
            with ThreadPoolExecutor() as pool:
                stopped = [pool.submit(endpoints.delete_endpoint, name, LOG) for name in endpoints.list_endpoints()]
                stopped.append(pool.submit(control_plane.stop_server))
            endpoints.stop_router(LOG)  # it writes what it still holds, then stops
            for future in stopped:
                future.result()


def render(value):
    """The builder's templates as the task renders them (the settings macro only)."""
    if isinstance(value, str):
        return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(value).render(churn=settings)
    if isinstance(value, dict):
        return {k: render(v) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v) for v in value]
    return value


def deploy(plane, name: str, percentage: int) -> dict:
    """CreateModel, CreateEndpointConfig and CreateEndpoint of the DAG's request through boto3 (botocore
    validates each request against the service model), as the deploy operator sends them."""
    request = render(requests.endpoint_request(model_data_url=plane["model"], capture_destination=DESTINATION,
                                               capture_sampling_percentage=str(percentage)))
    model, config = request["Model"], requests.resolve_data_capture(request["EndpointConfig"])
    model["ModelName"], config["EndpointConfigName"] = f"{name}-model", f"{name}-config"
    config["ProductionVariants"][0].update(ModelName=model["ModelName"], InitialInstanceCount=1)
    sagemaker = control_plane.client("sagemaker", plane["url"])
    sagemaker.create_model(**model)
    sagemaker.create_endpoint_config(**config)
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config["EndpointConfigName"])
    return config


def in_service(plane, *names: str) -> dict:
    sagemaker = control_plane.client("sagemaker", plane["url"])
    deadline = time.monotonic() + 90
    while True:
        described = {n: sagemaker.describe_endpoint(EndpointName=n) for n in names}
        if all(d["EndpointStatus"] == "InService" for d in described.values()):
            return described
        assert time.monotonic() < deadline and not any(d["EndpointStatus"] == "Failed" for d in described.values()), described
        time.sleep(0.3)


def capture_stats(plane) -> dict:
    return httpx.get(f"{plane['runtime']}/_local/capture", headers=endpoints.local_token(), timeout=5).json()


def line(values, record_id: str | None = None) -> str:
    return ",".join(([record_id] if record_id else []) + [repr(float(v)) for v in values])


def test_the_endpoint_captures_what_it_was_sent_and_answered_and_the_reader_gets_it_back(plane, spark):
    config = deploy(plane, "churn-capture", 100)
    off = deploy(plane, "churn-no-capture", 0)
    key = deployment_environment()["CHURN_CAPTURE_KMS_KEY_ID"]  # the data key the control plane creates
    assert off["DataCaptureConfig"]["EnableCapture"] is False
    assert config["DataCaptureConfig"]["KmsKeyId"] == key
    described = in_service(plane, "churn-capture", "churn-no-capture")
    assert described["churn-capture"]["DataCaptureConfig"] == {
        "EnableCapture": True, "CaptureStatus": "Started", "CurrentSamplingPercentage": 100,
        "DestinationS3Uri": DESTINATION, "KmsKeyId": key}
    assert described["churn-no-capture"]["DataCaptureConfig"]["CaptureStatus"] == "Stopped"
    sagemaker = control_plane.client("sagemaker", plane["url"])
    assert sagemaker.describe_endpoint_config(EndpointConfigName=config["EndpointConfigName"])["DataCaptureConfig"] \
        == config["DataCaptureConfig"]

    runtime = endpoints.runtime_client(plane["runtime"])
    rng = np.random.default_rng(11)
    sent = [np.round(rng.normal(size=len(FEATURE_COLUMNS)), 4) for _ in range(4)]
    bodies = [line(sent[0]) + "\n", "".join(line(row, f"c{i}") + "\n" for i, row in enumerate(sent[1:], 1))]
    answered = []
    days = {dt.datetime.now(dt.UTC).date()}
    for body in bodies:
        for name in ("churn-capture", "churn-no-capture"):
            text = runtime.invoke_endpoint(EndpointName=name, ContentType="text/csv", Accept="text/csv",
                                           Body=body)["Body"].read().decode()
            if name == "churn-capture":
                answered += [float(answer.split(",")[-1]) for answer in text.splitlines()]
    as_json = runtime.invoke_endpoint(EndpointName="churn-capture", ContentType="application/json",
                                      Body=json.dumps({"instances": [list(sent[0])]}))
    assert as_json["ContentType"] == "application/json"
    with pytest.raises(ClientError, match="ModelError"):  # a failed invocation is not captured
        runtime.invoke_endpoint(EndpointName="churn-capture", ContentType="text/csv", Body="1,2,3\n")

    deadline = time.monotonic() + 10
    while (stats := capture_stats(plane))["written"] < 3:
        assert time.monotonic() < deadline, stats
        time.sleep(0.1)
    days.add(dt.datetime.now(dt.UTC).date())
    assert stats["captured"] == 3 and stats["write_errors"] == 0 and stats["dropped"] == 0

    root = lake_files.local_path(DESTINATION)
    files = sorted(root.rglob("*.jsonl"))
    assert files and all(f.relative_to(root).parts[:2] == ("churn-capture", "primary") for f in files)
    assert all(re.fullmatch(r"\d{4}/\d{2}/\d{2}/\d{2}/\d{2}-\d{2}-\d{3}-[0-9a-f-]{36}\.jsonl",
                            "/".join(f.relative_to(root).parts[2:])) for f in files)
    assert not list(root.glob(".*")) and not list(root.rglob(".*.tmp"))  # nothing half-written left behind
    first = json.loads(files[0].read_text().splitlines()[0])
    assert set(first) == {"captureData", "eventMetadata", "eventVersion"} and first["eventVersion"] == "0"
    assert first["captureData"]["endpointInput"] == {"observedContentType": "text/csv", "mode": "INPUT",
                                                     "data": bodies[0], "encoding": "CSV"}
    assert first["captureData"]["endpointOutput"]["observedContentType"] == "text/csv; charset=utf-8"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", first["eventMetadata"]["inferenceTime"])

    found, rejected = [], []
    for day in sorted(days):
        rows, bad = capture.read_capture(spark, lake_files.local_uri(DESTINATION), day)
        found += rows.collect()
        rejected += bad.collect()
    assert sorted((tuple(r[c] for c in FEATURE_COLUMNS), r.score) for r in found) == sorted(
        (tuple(float(v) for v in row), score) for row, score in zip(sent, answered))
    assert {(r.endpoint_name, r.variant_name) for r in found} == {("churn-capture", "primary")}
    assert len({r.event_id for r in found}) == 2  # one event per request, one row per line
    assert [r.reason for r in rejected] == ["unsupported_content_type"]  # the JSON request: kept, not dropped
    assert json.loads(rejected[0].raw_record)["captureData"]["endpointInput"]["encoding"] == "JSON"
    assert not (root / "churn-no-capture").exists()


# ---------------------------------------------------------------- the capture writer itself

CONFIG = {"InitialSamplingPercentage": 100, "DestinationS3Uri": DESTINATION, "CaptureOptions": requests.CAPTURE_OPTIONS,
          "CaptureContentTypeHeader": requests.CAPTURE_CONTENT_TYPES}
SETTINGS = data_capture.CaptureSettings.of(CONFIG)


def test_bodies_of_unlisted_types_are_base64_and_the_modes_choose_the_sides():
    at = dt.datetime(2026, 6, 1, 12, 3, 4, 567000, tzinfo=dt.UTC).timestamp()
    record = data_capture.capture_record(SETTINGS, at, (b"\x00\x01", "application/x-npy"), (b'{"a": 1}', "application/json"), "e")
    assert record["captureData"]["endpointInput"] == {"observedContentType": "application/x-npy", "mode": "INPUT",
                                                      "data": base64.b64encode(b"\x00\x01").decode(), "encoding": "BASE64"}
    assert record["captureData"]["endpointOutput"]["encoding"] == "JSON"
    assert record["eventMetadata"] == {"eventId": "e", "inferenceTime": "2026-06-01T12:03:04Z"}
    no_header = data_capture.CaptureSettings.of({"InitialSamplingPercentage": 50, "DestinationS3Uri": DESTINATION,
                                                 "CaptureOptions": [{"CaptureMode": "Output"}]})
    record = data_capture.capture_record(no_header, at, (b"1,2\n", "text/csv"), (b"0.5\n", "text/csv"))
    assert set(record["captureData"]) == {"endpointOutput"}
    assert record["captureData"]["endpointOutput"]["encoding"] == "BASE64"  # without CaptureContentTypeHeader
    key = data_capture.capture_key(SETTINGS, "ep", "primary", at)
    assert re.fullmatch(r"s3://churn-lake/monitoring/capture/ep/primary/2026/06/01/12/03-04-567-[0-9a-f-]{36}\.jsonl", key)
    for nothing in ({**CONFIG, "EnableCapture": False}, {**CONFIG, "InitialSamplingPercentage": 0},
                    {**CONFIG, "CaptureOptions": []}, None):
        assert data_capture.CaptureSettings.of(nothing) is None


def test_a_failed_write_is_counted_not_raised_and_shutdown_writes_what_is_left(lake_root):
    async def scenario() -> dict:
        buffer = data_capture.CaptureBuffer(flush_seconds=60)  # only the shutdown flush can write
        writer = asyncio.create_task(buffer.run())
        blocked = data_capture.CaptureSettings.of({"InitialSamplingPercentage": 100, "CaptureOptions": [{"CaptureMode": "Input"}],
                                                   "DestinationS3Uri": "s3://churn-lake/blocked/"})
        (lake_root / "churn-lake").mkdir()
        (lake_root / "churn-lake" / "blocked").write_text("a file where the capture folder should be")
        for settings_, endpoint in ((SETTINGS, "ep"), (SETTINGS, "ep"), (blocked, "ep")):
            buffer.add(settings_, endpoint, "primary", (b"1,2\n", "text/csv"), (b"0.5\n", "text/csv"))
        await buffer.close(writer)
        return buffer.stats

    stats = asyncio.run(scenario())
    assert stats == {"captured": 3, "written": 2, "files": 1, "write_errors": 1, "lost": 1, "dropped": 0}
    files = list(lake_files.local_path(DESTINATION).rglob("*.jsonl"))
    assert len(files) == 1 and len(files[0].read_text().splitlines()) == 2


@pytest.mark.parametrize("value", ["", "-1", "101", "12.5", "all", None])
def test_a_sampling_percentage_sagemaker_would_refuse_fails_before_any_request(value):
    config = {"DataCaptureConfig": {**requests.data_capture_config(destination=DESTINATION, sampling_percentage="0"),
                                    "InitialSamplingPercentage": value}}
    with pytest.raises(ValueError, match="whole number from 0 to 100.*capture_sampling_percentage"):
        requests.resolve_data_capture(config)


@pytest.mark.parametrize("destination", [
    "s3://churn-lake/published/churn/", "s3://churn-lake/monitoring/", "s3://churn-lake/monitoring/capture-other/",
    "s3://other-bucket/monitoring/capture/", "s3://churn-lake/monitoring/capture/../../published/",
])
def test_the_local_capture_destination_is_the_lakes_capture_prefix_and_nothing_else(lake_root, destination):
    """The router writes capture as the control plane's user: only under monitoring/capture/ of the lake
    (the prefix the template lets the SageMaker role write), which CreateEndpointConfig answers with
    ValidationException otherwise (local_aws.sagemaker_api maps the ValueError)."""
    from churn_ml.dag_support import CAPTURE

    config = {**CONFIG, "CaptureOptions": [dict(o) for o in requests.CAPTURE_OPTIONS]}
    with pytest.raises(ValueError, match="DestinationS3Uri"):
        endpoints._check_data_capture("cfg", {**config, "DestinationS3Uri": destination})
    for allowed in (f"s3://churn-lake/{CAPTURE}", f"s3://churn-lake/{CAPTURE}churn-xgboost", "s3://churn-lake/monitoring/capture"):
        endpoints._check_data_capture("cfg", {**config, "DestinationS3Uri": allowed})
