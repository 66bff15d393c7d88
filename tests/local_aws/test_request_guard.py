"""What a web page can do to the local target's servers: nothing (``local_aws.request_guard``).

A page served from another loopback origin, opened in headless Chromium, calls the control plane,
the endpoints' router and a model container the ways a page can (fetch with a CORS preflight,
"simple" requests without one, ``no-cors``, a form POST into an iframe): the servers' state shows
that no handler ran (no model, no topic, no invocation counted), their logs that each request
arrived and was refused, and the page reads no answer. Plain HTTP: a foreign Host, a wrong key, a
bad or stale signature are refused as AWS refuses them; boto3 signed with the lake's key works.
"""

from __future__ import annotations

import datetime as dt
import logging

import boto3
import httpx
import numpy as np
import pytest
from botocore.exceptions import ClientError

from local_aws import control_plane, endpoints, request_guard
from local_aws.common import credentials
from local_aws.training import run_training_job
from support import chromium, free_port, model_request, serve_page, training_request, write_channel

pytestmark = pytest.mark.e2e
LOG = logging.getLogger("test")
ENDPOINT = "guard-test"
ROW = "0.5,1.0,-1.25\n"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """A control plane, a deployed endpoint (router + one container) and a lake of this module's own."""
    lake = tmp_path_factory.mktemp("guard") / "lake"
    env = {"LAKE_ROOT": str(lake), "ML_TARGET": "local", "CHURN_LOCAL_AWS_PORT": str(free_port()),
           "CHURN_LOCAL_RUNTIME_PORT": str(free_port()), "CHURN_LOCAL_SPOT_INTERRUPTIONS": ""}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        url = control_plane.ensure_server()
        try:
            rng = np.random.default_rng(1)
            for channel in ("train", "validation", "holdout"):
                write_channel(lake, channel, rng)
            job = run_training_job({**training_request(num_round="5"), "TrainingJobName": "guard-model"}, LOG)
            described = endpoints.deploy({
                "Model": model_request("guard-model", job["ModelArtifacts"]["S3ModelArtifacts"]),
                "EndpointConfig": {"EndpointConfigName": f"{ENDPOINT}-v1", "ProductionVariants": [{
                    "VariantName": "primary", "ModelName": "guard-model", "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large"}]},
                "Endpoint": {"EndpointName": ENDPOINT, "EndpointConfigName": f"{ENDPOINT}-v1"},
            }, LOG)["Endpoint"]
            yield {"url": url, "runtime": endpoints.runtime_url(), "lake": lake,
                   "container": described["Local"]["Instances"][0]["url"]}
        finally:
            endpoints.main(["delete", "--all"])
            control_plane.stop_server()


def refusals(log_file) -> int:
    return sum("refused" in line for line in log_file.read_text(errors="replace").splitlines())


# ---------------------------------------------------------------- a web page

PAGE = """<!doctype html><html><body><iframe name="sink"></iframe><script>
const CP = "%(cp)s", RT = "%(rt)s", CT = "%(ct)s";
async function attempt(name, url, init) {
  try {
    const answer = await fetch(url, init);
    let body = null;
    try { body = await answer.text(); } catch (e) {}
    return {name, fetched: true, type: answer.type, status: answer.status, body};
  } catch (e) {
    return {name, fetched: false, error: String(e)};
  }
}
const sns = (topic) => "Action=CreateTopic&Version=2010-03-31&Name=" + topic;
async function attack() {
  const results = await Promise.all([
    attempt("control plane, preflighted", CP + "/", {method: "POST", body: JSON.stringify({ModelName: "pwned-fetch",
      ExecutionRoleArn: "arn:aws:iam::000000000000:role/x", PrimaryContainer: {Image: "x"}}),
      headers: {"X-Amz-Target": "SageMaker.CreateModel", "Content-Type": "application/x-amz-json-1.1"}}),
    attempt("control plane, simple", CP + "/", {method: "POST", body: sns("pwned-simple"),
      headers: {"Content-Type": "application/x-www-form-urlencoded"}}),
    attempt("control plane, no-cors", CP + "/", {method: "POST", mode: "no-cors", body: sns("pwned-no-cors"),
      headers: {"Content-Type": "application/x-www-form-urlencoded"}}),
    attempt("control plane, S3 GET", CP + "/churn-lake/ts/train/part-00000.csv", {}),
    attempt("router, preflighted", RT + "/endpoints/%(endpoint)s/invocations", {method: "POST", body: "%(row)s",
      headers: {"Content-Type": "text/csv"}}),
    attempt("router, no-cors", RT + "/endpoints/%(endpoint)s/invocations", {method: "POST", mode: "no-cors",
      body: "%(row)s", headers: {"Content-Type": "text/plain"}}),
    attempt("router, metrics", RT + "/_local/metrics", {}),
    attempt("container, no-cors", CT + "/invocations", {method: "POST", mode: "no-cors", body: "%(row)s",
      headers: {"Content-Type": "text/plain"}}),
  ]);
  const form = document.createElement("form");
  form.method = "POST"; form.action = CP + "/"; form.target = "sink";
  for (const [name, value] of [["Action", "CreateTopic"], ["Version", "2010-03-31"], ["Name", "pwned-form"]]) {
    const input = document.createElement("input");
    input.name = name; input.value = value; form.appendChild(input);
  }
  document.body.appendChild(form);
  const frame = document.querySelector("iframe");
  await new Promise((resolve) => { frame.onload = resolve; form.submit(); });
  let framed;
  try { framed = frame.contentDocument ? frame.contentDocument.body.innerText : null; }
  catch (e) { framed = null; }
  results.push({name: "control plane, form POST", fetched: framed !== null, body: framed});
  return results;
}
</script></body></html>"""


@pytest.fixture(scope="module")
def page(servers):
    """The page, on a loopback port of its own (another origin)."""
    html = PAGE % {"cp": servers["url"], "rt": servers["runtime"], "ct": servers["container"],
                   "endpoint": ENDPOINT, "row": ROW.strip() + "\\n"}

    server = serve_page(html)
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    session = chromium()
    yield session
    session.quit()


def test_a_web_page_reaches_no_handler_and_reads_no_answer(servers, page, browser):
    runtime_log = endpoints.control_plane("sagemaker", "runtime") / "server.log"
    plane_log = servers["lake"] / ".control-plane" / "server.log"
    before = refusals(plane_log), refusals(runtime_log)
    browser.get(page)
    results = browser.execute_async_script("attack().then(arguments[arguments.length - 1]);")
    by_name = {r["name"]: r for r in results}
    assert len(by_name) == 9, results
    for result in results:  # CORS refused (TypeError), or an opaque answer: nothing to read
        assert not result["fetched"] or (result["type"] == "opaque" and result["status"] == 0 and not result["body"]), result
    # Every request arrived and was refused before dispatch (a preflight is refused, so its request is never sent).
    assert refusals(plane_log) - before[0] >= 5, plane_log.read_text()[-3000:]  # preflight, simple, no-cors, GET, form
    assert refusals(runtime_log) - before[1] >= 3, runtime_log.read_text()[-3000:]  # preflight, no-cors, metrics
    # No handler ran: nothing was created, nothing was invoked.
    sagemaker, sns = control_plane.client("sagemaker", servers["url"]), control_plane.client("sns", servers["url"])
    assert not [m for m in sagemaker.list_models()["Models"] if m["ModelName"].startswith("pwned")]
    assert not [t for t in sns.list_topics()["Topics"] if "pwned" in t["TopicArn"]]
    assert endpoints.router_metrics(servers["runtime"], ENDPOINT).get(f"{ENDPOINT}-v1", {}).get("Invocations", 0) == 0
    # A signed call from this process goes through, and is counted: the checks above could fail.
    answer = endpoints.runtime_client(servers["runtime"]).invoke_endpoint(EndpointName=ENDPOINT, ContentType="text/csv",
                                                                          Body=ROW)
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert endpoints.router_metrics(servers["runtime"], ENDPOINT)[f"{ENDPOINT}-v1"]["Invocations"] == 1


# ---------------------------------------------------------------- plain HTTP

def test_a_preflight_gets_no_cors_and_a_foreign_host_is_refused(servers):
    for url in (servers["url"], servers["runtime"], servers["container"]):
        preflight = httpx.options(f"{url}/", headers={"Origin": "https://evil.example",
                                                      "Access-Control-Request-Method": "POST",
                                                      "Access-Control-Request-Headers": "x-amz-target"})
        assert preflight.status_code == 403 and "web browser" in preflight.json()["message"], preflight.text
        assert not [h for h in preflight.headers if h.lower().startswith("access-control-")], dict(preflight.headers)
        port = url.rsplit(":", 1)[1]
        rebound = httpx.get(f"{url}/ping", headers={"Host": f"rebind.example:{port}"})
        assert rebound.status_code == 403 and "rebind.example" in rebound.json()["message"], rebound.text
        if url != servers["url"]:  # the endpoints' health check is open; every call to the control plane is signed
            assert httpx.get(f"{url}/ping", headers={"Host": f"localhost:{port}"}).status_code == 200
    # The same signed call under a foreign Host: refused before the signature is looked at.
    sts = boto3.client("sts", endpoint_url=servers["url"].replace("127.0.0.1", "localhost"), region_name="us-east-1",
                       **credentials().as_client_kwargs())
    assert sts.get_caller_identity()["Account"] == "000000000000"  # localhost:<port> is its own name too


def test_a_wrong_key_or_signature_is_refused_as_aws_refuses_it(servers):
    key = credentials()
    cases = {  # service: (call, code for an unknown key, code for a bad signature)
        "sts": (lambda c: c.get_caller_identity(), "InvalidClientTokenId", "SignatureDoesNotMatch"),
        "sagemaker": (lambda c: c.list_models(), "UnrecognizedClientException", "InvalidSignatureException"),
        "s3": (lambda c: c.list_objects_v2(Bucket="churn-lake"), "InvalidAccessKeyId", "SignatureDoesNotMatch"),
        "sns": (lambda c: c.list_topics(), "InvalidClientTokenId", "SignatureDoesNotMatch"),
    }
    for service, (call, unknown, bad) in cases.items():
        for key_id, secret, code in (("LOCALNOTTHISLAKESKEY", key.secret_access_key, unknown),
                                     (key.access_key_id, "not-the-secret", bad)):
            client = boto3.client(service, endpoint_url=servers["url"], region_name="us-east-1",
                                  aws_access_key_id=key_id, aws_secret_access_key=secret)
            with pytest.raises(ClientError) as refused:
                call(client)
            error = refused.value.response
            assert (error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]) == (403, code), (service, error)
        call(control_plane.client(service, servers["url"]))  # the lake's key: answered
    runtime = boto3.client("sagemaker-runtime", endpoint_url=servers["runtime"], region_name="us-east-1",
                           aws_access_key_id=key.access_key_id, aws_secret_access_key="not-the-secret")
    with pytest.raises(ClientError, match="InvalidSignatureException"):
        runtime.invoke_endpoint(EndpointName=ENDPOINT, ContentType="text/csv", Body=ROW)
    unsigned = httpx.post(f"{servers['runtime']}/endpoints/{ENDPOINT}/invocations", content=ROW,
                          headers={"Content-Type": "text/csv"})
    assert unsigned.status_code == 403 and unsigned.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException:"


def test_a_container_answers_only_the_routers_token(servers):
    url = f"{servers['container']}/invocations"
    headers = {"Content-Type": "text/csv"}
    assert httpx.post(url, content=ROW, headers=headers).status_code == 403
    assert httpx.post(url, content=ROW, headers={**headers, request_guard.TOKEN_HEADER: "guess"}).status_code == 403
    answer = httpx.post(url, content=ROW, headers={**headers, **endpoints.local_token()})
    assert answer.status_code == 200 and len(answer.text.splitlines()) == 1
    assert httpx.get(f"{servers['runtime']}/_local/metrics").status_code == 403


def test_a_signature_covers_the_body_and_expires(servers):
    key = credentials()
    url = f"{servers['runtime']}/endpoints/{ENDPOINT}/invocations"
    signed = request_guard.sign("POST", url, ROW.encode(), {"Content-Type": "text/csv"}, key)
    assert httpx.post(url, content=ROW, headers=signed).status_code == 200
    assert httpx.post(url, content="9,9,9\n", headers=signed).headers["x-amzn-errortype"] == "InvalidSignatureException:"
    headers = {k.lower(): v for k, v in signed.items()}
    later = dt.datetime.strptime(headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC) + dt.timedelta(minutes=16)
    path = f"/endpoints/{ENDPOINT}/invocations"
    with pytest.raises(request_guard.Refused, match="Signature expired"):
        request_guard.check_signature("POST", path, "", headers, ROW.encode(), key, now=later)
    request_guard.check_signature("POST", path, "", headers, ROW.encode(), key)  # the same request, in time


def test_the_key_is_the_lakes_own_and_the_connection_carries_it(servers, monkeypatch):
    from local_aws import iam

    key = credentials()
    assert control_plane.connection(role=None)["login"] == key.access_key_id
    # The Airflow connection signs as MWAA's execution role, with that role's key derived from the lake's.
    connection = control_plane.connection()
    mwaa = iam.role_credentials(key.secret_access_key, iam.MWAA_ROLE)
    assert (connection["login"], connection["password"]) == (mwaa.access_key_id, mwaa.secret_access_key)
    assert iam.signer(mwaa.access_key_id, key) == (mwaa, iam.MWAA_ROLE)
    assert iam.signer(key.access_key_id, key) == (key, None)
    path = servers["lake"] / ".control-plane" / "credentials"
    assert path.stat().st_mode & 0o777 == 0o600
    monkeypatch.delenv("CHURN_LOCAL_KEY_FILE", raising=False)  # the test suite's one key for all lakes (tests/conftest.py)
    other = credentials(servers["lake"].parent / "another-lake")
    assert other != key and len(other.access_key_id) == 20 and len(other.secret_access_key) == 40
