"""The local endpoint under hostile input: property-based fuzzing of the real router and containers.

Hypothesis generates request bodies (CSV, JSON, JSON Lines and raw bytes, each often mutated),
content types, accept headers and endpoint names, and sends them over one keep-alive connection
(some chunked) to the SageMaker Runtime path of the router, which forwards to two container
processes. Every answer must be a 2XX or a 4XX with the Runtime's error shape: never a 5XX, a
reset or a hang; the connection must stay usable; afterwards ``/ping`` and a valid request still
answer. A second test goes through boto3's ``sagemaker-runtime`` client.

Examples found failing are kept as ``@example`` regression cases. Runs are derandomized so CI is
repeatable; ``benchmarks/endpoint_fuzz.py`` fuzzes longer with fresh seeds and watches memory.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.parse
from collections import Counter
from pathlib import Path

import boto3
import numpy as np
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from local_aws import endpoints, request_guard
from local_aws.common import credentials
from local_aws.training import run_training_job
from support import FEATURES, free_port, model_request, training_request, write_channel

pytestmark = pytest.mark.e2e  # real processes, ~30 s: in the full test command, not in make test-fast
LOG = logging.getLogger("test")
NAME = "churn-fuzz"
FUZZ = settings(max_examples=2000, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ---------------------------------------------------------------- what the fuzzer sends

EDGE_TOKENS = [
    "", " ", "nan", "NaN", "NAN", "-nan", "nAn", "inf", "-inf", "+inf", "Infinity", "INF", "1e400", "-1e400",
    "1e-400", "1_0", "\u0661", "\u0663.\u0665", "True", "false", " 1", "1 ", "\t2", "+.5", "5.", ".", "-", "1e",
    "1e+", "e5", "0x10", "NA", "null", "None", "#1", "'2'", '"3"', "1\x00", "\u00a01", "9" * 400, "1" + "0" * 310,
    "99999999999999999999", "-99999999999999999999999", "1.5.2", "--1", "1e5.5", "\ufeff1", "\x0b1", "1\x0c",
    "1;2", "1\\", "\u2028", "\x85", "½",
]
numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda v: f"{v:.6g}"),
    st.integers(-(10**25), 10**25).map(str),
)
tokens = st.one_of(numbers, numbers, numbers, st.sampled_from(EDGE_TOKENS), st.text(max_size=6))
ids = st.one_of(st.from_regex(r"C[0-9]{1,7}", fullmatch=True), st.integers(0, 10**12).map(str),
                st.sampled_from(EDGE_TOKENS), st.text(max_size=8))


@st.composite
def csv_bodies(draw) -> str:
    width = draw(st.sampled_from([len(FEATURES), len(FEATURES), len(FEATURES) + 1, 1, 2, 6]))
    with_id = width == len(FEATURES) + 1 and draw(st.booleans())
    rows = draw(st.lists(
        st.tuples(ids, st.lists(tokens, min_size=width - with_id, max_size=width - with_id)),
        min_size=0, max_size=draw(st.sampled_from([3, 3, 80])),
    ))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r", "\n\n"]))
    lines = [",".join(([row_id] if with_id else []) + fields) for row_id, fields in rows]
    return draw(st.sampled_from(["", "\ufeff"])) + newline.join(lines) + draw(st.sampled_from(["", newline]))


json_scalars = st.one_of(
    st.none(), st.booleans(), st.floats(), st.integers(-(10**30), 10**30), st.text(max_size=6),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 10**400]),
)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
    st.sampled_from([*FEATURES, "id", "features", "instances", "x"]), inner, max_size=5), max_leaves=25)
feature_lists = st.lists(st.one_of(st.floats(), st.integers(-(10**20), 10**20), st.none(), json_scalars),
                         min_size=len(FEATURES) - 1, max_size=len(FEATURES) + 1)
instances = st.one_of(
    feature_lists,
    st.builds(lambda i, f: {"id": i, "features": f}, json_scalars, feature_lists),
    st.fixed_dictionaries({name: st.one_of(st.floats(), st.none(), json_scalars) for name in FEATURES},
                          optional={"id": json_scalars, "x": json_scalars}),
)


def _dumps(value) -> str:
    try:
        return json.dumps(value)  # NaN and Infinity literals included, as Python writes them
    except ValueError:  # integers over Python's digit limit
        return "[1]"


json_documents = st.one_of(
    st.lists(instances, max_size=20).map(lambda items: _dumps({"instances": items})),
    st.lists(instances, max_size=20).map(_dumps),
    json_values.map(_dumps),
    st.integers(1, 200_000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(1, 200_000).map(lambda depth: '{"instances":' * depth + "[]" + "}" * depth),
    st.sampled_from(["[[1e400, 1, 2]]", "[[" + "9" * 5000 + ", 1, 2]]", "[[NaN, Infinity, -Infinity]]", "{}", "null"]),
)
jsonl_documents = st.lists(st.one_of(instances.map(_dumps), json_values.map(_dumps), st.text(max_size=10)),
                           max_size=20).map("\n".join)


@st.composite
def mutated(draw, bodies) -> bytes:
    data = bytearray(draw(bodies).encode("utf-8", "surrogatepass"))
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        where = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[where] ^= 1 << draw(st.integers(0, 7))
        elif action == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=4))
        elif action == "delete" and data:
            del data[where]
        elif action == "truncate":
            del data[where:]
    return bytes(data)


bodies = st.one_of(
    csv_bodies().map(lambda text: text.encode("utf-8", "surrogatepass")), mutated(csv_bodies()),
    json_documents.map(str.encode), mutated(json_documents),
    jsonl_documents.map(lambda text: text.encode("utf-8", "surrogatepass")), mutated(jsonl_documents),
    st.binary(max_size=512),
)
header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
content_types = st.one_of(st.sampled_from([
    "text/csv", "text/csv", "application/json", "application/jsonlines", "application/jsonl", "text/plain",
    "text/csv; charset=utf-8", "text/csv; charset=latin-1", "application/json; charset=UTF-16",
    "application/x-protobuf", "text/x-libsvm", "*/*", "", "TEXT/CSV", "text/csv;", ";",
]), header_text, st.none())
accepts = st.one_of(st.none(), st.sampled_from([
    "text/csv", "application/json", "application/jsonlines", "*/*", "text/*", "application/*",
    "image/png", "text/csv, application/json", "application/json;q=0.5", "",
]), header_text)
names = st.one_of(
    st.just(NAME), st.just(NAME), st.just(NAME), st.just(NAME),
    st.sampled_from(["../../x", "a/b", "..", ".", "x-", "-x", "a" * 64, "a" * 63, "churn fuzz", "CHURN-FUZZ",
                     "no-such-endpoint", "%2e%2e", "a%00b", "\u00e9", "x\ny"]),
    st.text(max_size=70),
)


# ---------------------------------------------------------------- the endpoint under test

@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        root = tmp_path_factory.mktemp("fuzz") / "lake"
        root.mkdir()
        patch.setenv("LAKE_ROOT", str(root))
        patch.setenv("ML_TARGET", "local")
        patch.setenv("CHURN_LOCAL_RUNTIME_PORT", str(free_port()))
        rng = np.random.default_rng(7)
        for channel in ("train", "validation", "holdout"):
            write_channel(root, channel, rng)
        training = run_training_job(training_request(), LOG)
        model = "s3://" + training["ModelArtifacts"]["S3ModelArtifacts"].removeprefix("s3://")
        request = {
            "Model": model_request("fuzz-model", model),
            "EndpointConfig": {"EndpointConfigName": f"{NAME}-v1", "ProductionVariants": [{
                "VariantName": "primary", "ModelName": "fuzz-model", "InitialInstanceCount": 2,
                "InstanceType": "ml.m5.large"}]},
            "Endpoint": {"EndpointName": NAME, "EndpointConfigName": f"{NAME}-v1"},
        }
        described = endpoints.deploy(request, LOG)["Endpoint"]
        url = urllib.parse.urlsplit(endpoints.runtime_url())
        client = Client(url.hostname, url.port)
        boto3_client = boto3.client(  # no retries: a 5XX must show, not be retried away
            "sagemaker-runtime", endpoint_url=endpoints.runtime_url(), region_name="us-east-1",
            **credentials().as_client_kwargs(),
            config=Config(retries={"mode": "standard", "max_attempts": 1}),
        )
        try:
            yield {"client": client, "boto3": boto3_client, "instances": described["Local"]["Instances"]}
        finally:
            client.close()
            print(f"\nfuzzed requests: {sum(client.statuses.values())}, statuses {dict(sorted(client.statuses.items()))}, "
                  f"reconnects {client.reconnects}")
            endpoints.main(["delete", "--all"])


class Client:
    """One keep-alive HTTP/1.1 connection, reopened only when the server says ``Connection: close``;
    requests signed with the lake's key, as boto3 signs them (the router refuses others)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port, self.statuses, self.reconnects = host, port, Counter(), 0
        self.connection = http.client.HTTPConnection(host, port, timeout=60)
        self.key = credentials()

    def post(self, path: str, body: bytes, headers: dict, chunked: bool = False) -> tuple[int, dict, bytes]:
        headers = request_guard.sign("POST", f"http://{self.host}:{self.port}{path}", body, headers, self.key)
        if chunked:
            self.connection.request("POST", path, body=iter([body[: len(body) // 2], body[len(body) // 2:]]),
                                    headers=headers, encode_chunked=True)
        else:
            self.connection.request("POST", path, body=body, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        answer = {k.lower(): v for k, v in response.getheaders()}
        self.statuses[response.status] += 1
        if answer.get("connection", "").lower() == "close":
            self.reconnects += 1
            self.close()
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        return response.status, answer, data

    def get(self, path: str) -> int:
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        response.read()
        return response.status

    def close(self) -> None:
        self.connection.close()


def _check(status: int, headers: dict, data: bytes) -> None:
    assert status < 500, f"{status}: {data[:300]!r}"
    if status == 200:
        return
    assert status in (400, 413, 424), f"{status}: {data[:300]!r}"  # 415 comes from the container, as a 424
    error = json.loads(data)  # the Runtime's error shape
    assert error["message"] and headers["x-amzn-errortype"].endswith(":"), error
    if status == 424:
        assert headers["x-amzn-errortype"] == "ModelError:" and error["OriginalStatusCode"] in (400, 413, 415), error


def _headers(content_type: str | None, accept: str | None) -> dict:
    return {k: v for k, v in (("Content-Type", content_type), ("Accept", accept)) if v is not None}


# ---------------------------------------------------------------- the properties

@FUZZ
@given(body=bodies, content_type=content_types, accept=accepts, name=names, chunked=st.booleans())
@example(body=b"1,2,1e400\n", content_type="text/csv", accept=None, name=NAME, chunked=False)
@example(body=b"[[1e400, 1, 2]]", content_type="application/json", accept=None, name=NAME, chunked=False)
@example(body=b"[" * 100_000 + b"]" * 100_000, content_type="application/json", accept=None, name=NAME, chunked=False)
@example(body=b"1,2,3\n" * 70 + b"1_0,2,3\n", content_type="text/csv", accept=None, name=NAME, chunked=False)
@example(body=b"\xef\xbb\xbfC1,1,2,3\n", content_type="text/csv", accept="application/json", name=NAME, chunked=False)
@example(body=b"1,2,3\n", content_type="text/csv", accept=None, name="../../x", chunked=False)
@example(body=b"1,2,3\n", content_type="text/csv", accept=None, name="a" * 64, chunked=True)
@example(body=b'{"instances": [{"id": "a,b", "features": [1, 2, 3]}]}', content_type="application/json",
         accept="text/csv", name=NAME, chunked=False)
def test_no_request_gets_a_5xx_or_breaks_the_connection(endpoint, body, content_type, accept, name, chunked):
    path = f"/endpoints/{urllib.parse.quote(name, safe='')}/invocations"
    status, headers, data = endpoint["client"].post(path, body, _headers(content_type, accept), chunked)
    _check(status, headers, data)


runtime_bodies = st.one_of(csv_bodies().map(str.encode), json_documents.map(str.encode), st.binary(max_size=256))


@settings(FUZZ, max_examples=300)
@given(body=runtime_bodies, content_type=st.sampled_from(["text/csv", "application/json", "application/jsonlines", "x/y"]),
       name=names.filter(lambda n: n and "\n" not in n))
def test_boto3_sees_only_client_errors(endpoint, body, content_type, name):
    client = endpoint["boto3"]
    try:
        answer = client.invoke_endpoint(EndpointName=name, ContentType=content_type, Body=body)
    except ClientError as err:
        response = err.response
        assert response["ResponseMetadata"]["HTTPStatusCode"] < 500, response
        assert response["Error"]["Code"] in ("ValidationError", "ModelError"), response
    else:
        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_the_endpoint_still_answers_after_the_fuzz(endpoint):
    """Runs after the fuzz (file order): the router and both containers are up and score right."""
    client = endpoint["client"]
    assert client.get("/ping") == 200
    for instance in endpoint["instances"]:
        url = urllib.parse.urlsplit(instance["url"])
        direct = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        direct.request("GET", "/ping")
        assert direct.getresponse().status == 200
        direct.close()
    status, _, data = client.post(f"/endpoints/{NAME}/invocations", b"C1,0.5,,-1.25\nC2,1,2,3\n",
                                  {"Content-Type": "text/csv"})
    assert status == 200 and [line.split(",")[0] for line in data.decode().splitlines()] == ["C1", "C2"]
    # Enough of the fuzz was valid to show scoring kept working all along (seen: 78-109 answers of 200).
    assert sum(client.statuses.values()) >= 2000 and client.statuses[200] >= 50
    # No line per request: after the fuzz the servers' logs are a few lines (startup, shutdown).
    router_log = endpoints.control_plane("sagemaker", "runtime") / "server.log"
    for log_file in [router_log, *(Path(i["log"]) for i in endpoint["instances"])]:
        assert log_file.stat().st_size < 20_000, log_file.read_text()[-2000:]


def test_a_chunked_body_over_the_limit_is_413_and_the_connection_stays_usable(endpoint):
    client = endpoint["client"]
    big = b"1.0,2.0,3.0\n" * (7 * 1024 * 1024 // 12)  # 7 MB, sent chunked: no Content-Length to check first
    status, headers, data = client.post(f"/endpoints/{NAME}/invocations", big, {"Content-Type": "text/csv"}, chunked=True)
    assert status == 413 and headers["x-amzn-errortype"] == "ValidationError:" and b"6 MB" in data
    status, _, data = client.post(f"/endpoints/{NAME}/invocations", b"1,2,3\n", {"Content-Type": "text/csv"})
    assert status == 200 and len(data.decode().splitlines()) == 1
