"""``local_aws.operations``: every operation of the services the project uses is recognised from the
request botocore itself builds (no server: a ``before-send`` handler captures the prepared request),
and a refusal renders in each protocol's error shape, parsed back by botocore as a ClientError it
does not retry."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

import boto3
import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError

from local_aws import operations, request_guard

SERVICES = ["s3", "sagemaker", "emr-serverless", "glue", "logs", "kinesis", "sns", "sts", "iam", "cloudwatch", "kms",
            "sqs", "athena", "mwaa"]
HOST = "localhost:4566"


class Captured(Exception):
    def __init__(self, request) -> None:
        super().__init__("captured")
        self.request = request


def _value(shape, depth: int = 0):
    """A value of ``shape`` that botocore serializes (required members only)."""
    kind = shape.type_name
    if kind == "structure":
        if depth > 8:
            return {}
        return {name: _value(shape.members[name], depth + 1) for name in shape.required_members}
    if kind == "list":
        return [_value(shape.member, depth + 1)] * max(shape.metadata.get("min", 1), 1)
    if kind == "map":
        return {}
    if kind in ("integer", "long"):
        return max(int(shape.metadata.get("min", 1)), 1)
    if kind in ("float", "double"):
        return 1.0
    if kind == "boolean":
        return True
    if kind == "timestamp":
        return dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    if kind == "blob":
        return b"x"
    if shape.enum:
        return shape.enum[0]
    return "a" * max(int(shape.metadata.get("min", 1)), 5)


def _params(model, name: str) -> dict:
    shape = model.operation_model(name).input_shape
    if shape is None:
        return {}
    params = _value(shape)
    if model.service_name == "s3":
        params.update({k: v for k, v in {"Bucket": "bucket-1", "Key": "dir/key.csv"}.items() if k in shape.members
                       and k in params})
    return params


def _client(service: str, addressing: str = "path"):
    client = boto3.client(service, endpoint_url=f"http://{HOST}", region_name="eu-west-1",
                          aws_access_key_id="LOCALKEY", aws_secret_access_key="secret",
                          config=Config(parameter_validation=False, inject_host_prefix=False,
                                        retries={"max_attempts": 1}, s3={"addressing_style": addressing}))

    def capture(request, **_):
        raise Captured(request)

    client.meta.events.register("before-send", capture)
    return client


def _request(client, name: str):
    model = client.meta.service_model
    with pytest.raises(Captured) as captured:
        getattr(client, botocore.xform_name(name))(**_params(model, name))
    return captured.value.request


def _parts(request) -> tuple[str, str, str, dict[str, str], bytes]:
    """Method, raw path, query, lower-case headers (Host included) and body, as the control plane sees them."""
    url = urlsplit(request.url)
    headers = {key.lower(): value.decode() if isinstance(value, bytes) else value for key, value in request.headers.items()}
    headers["host"] = url.netloc
    body = request.body
    if body is None or isinstance(body, str):
        body = (body or "").encode()
    elif not isinstance(body, bytes):
        body = body.read()
    return request.method, url.path or "/", url.query, headers, body


def _identify(service: str, request) -> str | None:
    return operations.operation_of(service, *_parts(request), host_names=["localhost", "127.0.0.1"])


def _expected(model, name: str) -> str:
    """The operation a request of ``name`` is taken for: itself, unless it is deprecated or one of
    ``SAME_REQUEST_AS`` (the same request as its successor's on an endpoint URL)."""
    same = operations.SAME_REQUEST_AS.get(model.service_name, {})
    if name in same:
        return same[name]
    if model.operation_model(name).deprecated:
        return name.replace("Lifecycle", "LifecycleConfiguration").replace("Notification", "NotificationConfiguration")
    return name


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_is_recognised_from_the_request_botocore_builds(service):
    client = _client(service)
    model = client.meta.service_model
    wrong, stood_in = {}, 0
    for name in model.operation_names:
        expected = _expected(model, name)
        request = _request(client, name)
        found = _identify(service, request)
        if found != expected:
            wrong[name] = found
        if expected != name:  # the two requests are really the same on the wire
            stood_in += 1
            other = _request(client, expected)
            assert (request.method, request.url.split("?")[0]) == (other.method, other.url.split("?")[0])
    assert not wrong, (f"{len(wrong)} of {len(model.operation_names)} {service} operations identified wrongly "
                       f"(expected: found): {wrong}")
    assert stood_in == (5 if service == "s3" else 0)


def test_s3_virtual_host_requests_name_the_same_operations():
    client = _client("s3", addressing="virtual")
    sample = ["ListObjectsV2", "GetObject", "PutObject", "CopyObject", "UploadPart", "UploadPartCopy",
              "CreateMultipartUpload", "CompleteMultipartUpload", "DeleteObjects", "HeadBucket", "CreateBucket",
              "GetBucketWebsite", "PutBucketReplication", "GetBucketAnalyticsConfiguration",
              "ListBucketAnalyticsConfigurations", "ListObjects"]
    for name in sample:
        request = _request(client, name)
        assert request.url.startswith("http://bucket-1.localhost:4566"), request.url  # really virtual-host style
        assert _identify("s3", request) == name


def test_an_unknown_request_is_no_operation():
    assert operations.operation_of("sagemaker", "POST", "/", "", {"x-amz-target": "SageMaker.Frobnicate"}, b"") is None
    assert operations.operation_of("sts", "POST", "/", "", {"content-type": "application/x-www-form-urlencoded"},
                                   b"Action=Frobnicate&Version=2011-06-15") is None
    assert operations.operation_of("emr-serverless", "GET", "/nowhere/at/all", "", {}, b"") is None


def _catalog(**emulated: frozenset[str]) -> operations.Catalog:
    return operations.Catalog({
        service: operations.ServiceOperations(service, frozenset(operations.service_model(service).operation_names),
                                              names, "test")
        for service, names in emulated.items()})


def test_the_catalog_allows_the_emulated_and_refuses_the_rest_naming_the_operation():
    catalog = _catalog(sagemaker=frozenset({"CreateTrainingJob"}))
    sagemaker = _client("sagemaker")

    def check(name: str, signing: str = "sagemaker", client=sagemaker) -> operations.Decision:
        return catalog.check(signing, *_parts(_request(client, name)))

    assert check("CreateTrainingJob").allowed
    refused = check("CreateProcessingJob")
    assert not refused.allowed and refused.operation == "CreateProcessingJob" and refused.style == "json"
    assert "CreateProcessingJob is not emulated by the local target" in refused.message
    assert "emulates 1 of the 409 operations of sagemaker" in refused.message
    ecs = check("ListClusters", signing="ecs", client=_client("ecs"))
    assert not ecs.allowed and ecs.operation == "ListClusters" and "does not serve ecs" in ecs.message
    unknown = catalog.check("no-such-service", "POST", "/", "", {}, b"", fallback_style="query")
    assert not unknown.allowed and unknown.style == "query" and operations.NOT_EMULATED in unknown.message


@pytest.mark.parametrize("service, name, code, status", [
    ("sagemaker", "CreateProcessingJob", "UnknownOperationException", 400),  # JSON
    ("emr-serverless", "StartSession", "UnknownOperationException", 400),  # REST-JSON
    ("sns", "CreateSMSSandboxPhoneNumber", "InvalidAction", 400),  # query
    ("s3", "PutBucketReplication", "NotImplemented", 501),  # REST-XML
    ("cloudwatch", "PutAnomalyDetector", "UnknownOperationException", 400),  # JSON (query-compatible)
    ("mwaa", "CreateWebLoginToken", "UnknownOperationException", 400),  # REST-JSON, answered by local_aws.mwaa
])
def test_a_refusal_parses_as_the_services_error_and_is_not_retried(service, name, code, status):
    """botocore reads the rendered refusal like the service's own error; its retry rules (legacy and
    standard) leave it alone: one attempt."""
    refusal = request_guard.Refused("not_emulated", f"{name} is {operations.NOT_EMULATED}: test")
    status_code, headers, body = refusal.render(operations.error_style(operations.service_model(service)))
    for mode in ("legacy", "standard"):
        client = boto3.client(service, endpoint_url=f"http://{HOST}", region_name="eu-west-1",
                              aws_access_key_id="LOCALKEY", aws_secret_access_key="secret",
                              config=Config(parameter_validation=False, retries={"mode": mode, "max_attempts": 5}))
        attempts = []

        def answer(request, attempts=attempts, **_):
            attempts.append(request)
            response = AWSResponse(request.url, status_code, dict(headers), None)
            response._content = body
            return response

        client.meta.events.register("before-send", answer)
        with pytest.raises(ClientError) as raised:
            getattr(client, botocore.xform_name(name))(**_params(client.meta.service_model, name))
        error = raised.value.response
        assert error["Error"]["Code"] == code, (mode, error)
        assert f"{name} is not emulated by the local target" in error["Error"]["Message"]
        assert error["ResponseMetadata"]["HTTPStatusCode"] == status
        assert error["ResponseMetadata"]["RetryAttempts"] == 0 and len(attempts) == 1, mode


def test_moto_implements_is_read_from_moto_and_excludes_its_fakes():
    implemented = operations.moto_implements("sagemaker")
    assert {"CreateTrainingJob", "CreateProcessingJob"} <= implemented  # moto has both (one a fake)
    assert "CreateAIBenchmarkJob" not in implemented
    assert "GetCallerIdentity" in operations.moto_implements("sts")
    assert "SubscribeToShard" not in operations.moto_implements("kinesis")


def test_the_table_counts_each_services_operations():
    entry = operations.ServiceOperations("sts", frozenset({"GetCallerIdentity", "AssumeRoot"}),
                                         frozenset({"GetCallerIdentity"}), "test")
    text = operations.table([entry])
    assert "sts: 1 emulated with shared state, 1 of 2 answered" in text and "not emulated: AssumeRoot" in text
    markdown = operations.table([entry], markdown=True)
    assert "| sts | 1 | 1 of 2 | GetCallerIdentity |" in markdown


def test_the_architecture_docs_table_is_what_the_control_plane_emulates():
    """docs/architecture.md's counts per service are ``python -m local_aws.operations --markdown``'s (run in a
    process of its own: it installs the control plane's extensions, as ``serve`` does)."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    printed = subprocess.run([sys.executable, "-m", "local_aws.operations", "--markdown"], cwd=repo, capture_output=True,
                             text=True, timeout=120, check=True).stdout

    def rows(text: str) -> dict[str, tuple[str, str]]:
        found = re.findall(r"^\| ([a-z0-9-]+) \| (\d+) \| (\d+ of \d+) \|", text, flags=re.MULTILINE)
        return {service: (emulated, refused) for service, emulated, refused in found}

    expected = rows(printed)
    assert set(expected) == set(operations.SERVED.values())
    documented = rows((repo / "docs" / "architecture.md").read_text())
    assert documented == expected, ("docs/architecture.md's table of emulated operations is out of date: update it "
                                    f"from `python -m local_aws.operations --markdown` ({expected})")
