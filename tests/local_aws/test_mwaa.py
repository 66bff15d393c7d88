"""MWAA's InvokeRestApi on the local target: the control plane forwards it to Airflow's REST API and answers as
MWAA does (local_aws/mwaa.py), so the run_cost task sets a run's note through the same code as on AWS.

A control plane of this module's own, pointed (AIRFLOW__API__BASE_URL) at a small fake of the Airflow 3 REST API
on 127.0.0.1: ``/auth/token`` as the local stack's simple auth manager answers it, a DAG run's GET and PATCH, the
DAG's run list with ``run_id_pattern`` and its bulk PATCH, a 500 route. Every client validates its requests
(botocore's default); the answers are parsed with botocore's output and error shapes.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from local_aws import control_plane
from local_aws.settings import MWAA_ENVIRONMENT_NAME
from support import free_port

pytestmark = pytest.mark.e2e
TOKEN = "fake-airflow-token"
DAG = "churn_training"
SHORT_RUN = "manual__1"  # /dags/churn_training/dagRuns/manual__1 fits MWAA's 64-character Path
RUN = "scheduled__2026-07-01T00:00:00+00:00"  # as Airflow names runs: its single-run path does not fit
RETRAIN_NOTE = "Retraining triggered by churn_monitoring for 2026-07-01: drift 0.31 over 0.2"


class FakeAirflow(BaseHTTPRequestHandler):
    """The routes of Airflow 3.3.1's REST API that the tests call, with its answer shapes (DAGRunResponse's
    dag_run_id and note, DAGRunCollectionResponse, BulkResponse, {"detail": ...} errors)."""

    runs: dict[tuple[str, str], dict] = {}
    seen: list[dict] = []

    def log_message(self, *args):  # no access log on stderr
        pass

    def _answer(self, status: int, document) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        if url.path == "/auth/token" and self.command == "GET":
            return self._answer(201, {"access_token": TOKEN})
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._answer(401, {"detail": "Not authenticated"})
        query = parse_qs(url.query)
        self.seen.append({"method": self.command, "path": url.path, "query": query, "body": body,
                          "host": self.headers.get("Host"), "origin": self.headers.get("Origin")})
        parts = [unquote(p) for p in url.path.split("/")]
        if url.path == "/api/v2/boom":
            return self._answer(500, {"detail": "Internal Server Error"})
        if parts[:4] != ["", "api", "v2", "dags"] or len(parts) not in (6, 7) or parts[5] != "dagRuns":
            return self._answer(404, {"detail": "Not Found"})
        dag_id = parts[4]
        if dag_id not in {d for d, _ in self.runs}:
            return self._answer(404, {"detail": f"The Dag with ID: `{dag_id}` was not found"})
        if len(parts) == 7:
            run = self.runs.get((dag_id, parts[6]))
            if run is None:
                return self._answer(404, {"detail": f"The DagRun with dag_id: `{dag_id}` and run_id: `{parts[6]}` "
                                                    "was not found"})
            if self.command == "PATCH":
                if "note" in (query.get("update_mask") or ["note"]):
                    run["note"] = body["note"]
            return self._answer(200, run)
        if self.command == "GET":
            pattern = (query.get("run_id_pattern") or [""])[0]
            found = [run for (d, r), run in self.runs.items() if d == dag_id and pattern in r]
            return self._answer(200, {"dag_runs": found[:int((query.get("limit") or ["50"])[0])],
                                      "total_entries": len(found)})
        if self.command == "PATCH":
            result = {"success": [], "errors": []}
            for action in body["actions"]:
                assert action["action"] == "update"
                for entity in action["entities"]:
                    run = self.runs.get((dag_id, entity["dag_run_id"]))
                    if run is None:
                        result["errors"].append({"error": "not found", "status_code": 404})
                        continue
                    run["note"] = entity["note"]
                    result["success"].append(f"{dag_id}.{entity['dag_run_id']}")
            return self._answer(200, {"create": None, "update": result, "delete": None})
        return self._answer(405, {"detail": "Method Not Allowed"})

    do_GET = do_PATCH = do_POST = do_PUT = do_DELETE = _handle


@pytest.fixture(scope="module")
def airflow():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeAirflow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def runs():
    FakeAirflow.runs.clear()
    FakeAirflow.runs.update({
        (DAG, SHORT_RUN): {"dag_id": DAG, "dag_run_id": SHORT_RUN, "state": "running", "note": None},
        (DAG, RUN): {"dag_id": DAG, "dag_run_id": RUN, "state": "running", "note": RETRAIN_NOTE},
        (DAG, RUN + "-other"): {"dag_id": DAG, "dag_run_id": RUN + "-other", "state": "success", "note": "x"},
    })
    FakeAirflow.seen.clear()
    return FakeAirflow.runs


@pytest.fixture(scope="module")
def plane(tmp_path_factory, airflow):
    lake = tmp_path_factory.mktemp("mwaa") / "lake"
    env = {"LAKE_ROOT": str(lake), "ML_TARGET": "local", "CHURN_LOCAL_AWS_PORT": str(free_port()),
           "CHURN_LOCAL_RUNTIME_PORT": str(free_port()), "AIRFLOW__API__BASE_URL": airflow,
           "AIRFLOW_ENV_NAME": MWAA_ENVIRONMENT_NAME}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        url = control_plane.ensure_server()
        # The tasks' connection (scripts/env.sh's): signed as MWAA's execution role, no host prefix.
        patch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(control_plane.connection(url)))
        try:
            yield {"url": url, "lake": lake}
        finally:
            control_plane.stop_server()


def mwaa(plane):
    return control_plane.client("mwaa", plane["url"])


def hook():
    from airflow.providers.amazon.aws.hooks.mwaa import MwaaHook

    return MwaaHook(aws_conn_id="aws_default")


def test_the_control_plane_creates_the_templates_environment_under_the_local_name(plane):
    environment = mwaa(plane).get_environment(Name=MWAA_ENVIRONMENT_NAME)["Environment"]
    assert environment["Name"] == MWAA_ENVIRONMENT_NAME and environment["Status"] == "AVAILABLE"
    assert environment["Arn"] == f"arn:aws:airflow:us-east-1:000000000000:environment/{MWAA_ENVIRONMENT_NAME}"
    assert environment["AirflowVersion"] == "3.3.1" and environment["WebserverAccessMode"] == "PRIVATE_ONLY"
    assert environment["ExecutionRoleArn"] == "arn:aws:iam::000000000000:role/churn-mwaa"
    with pytest.raises(ClientError) as raised:
        mwaa(plane).get_environment(Name="no-such-environment")
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_boto3_gets_and_patches_a_run_with_mwaas_answer_shapes(plane, runs):
    client = mwaa(plane)
    path = f"/dags/{DAG}/dagRuns/{SHORT_RUN}"
    got = client.invoke_rest_api(Name=MWAA_ENVIRONMENT_NAME, Path=path, Method="GET")
    assert got["RestApiStatusCode"] == 200 and set(got) == {"RestApiStatusCode", "RestApiResponse", "ResponseMetadata"}
    assert got["RestApiResponse"] == {"dag_id": DAG, "dag_run_id": SHORT_RUN, "state": "running", "note": None}
    patched = client.invoke_rest_api(Name=MWAA_ENVIRONMENT_NAME, Path=path, Method="PATCH", Body={"note": "hello"},
                                     QueryParameters={"update_mask": ["note"]})
    assert patched["RestApiStatusCode"] == 200 and patched["RestApiResponse"]["note"] == "hello"
    assert runs[(DAG, SHORT_RUN)]["note"] == "hello"
    get, patch = FakeAirflow.seen
    assert (get["method"], get["path"], get["body"]) == ("GET", f"/api/v2{path}", None)  # under /api/v2, no body
    assert (patch["method"], patch["path"], patch["query"], patch["body"]) == (
        "PATCH", f"/api/v2{path}", {"update_mask": ["note"]}, {"note": "hello"})
    assert patch["origin"] is None  # not a browser's request (the local api-server's guard refuses those)
    # botocore validates the request before it is sent (its default: required members, types, minimums) ...
    with pytest.raises(ParamValidationError):
        client.invoke_rest_api(Name=MWAA_ENVIRONMENT_NAME, Path=path)
    # ... and the control plane what MWAA's API refuses beyond that (enums, maximums): nothing is forwarded.
    with pytest.raises(ClientError) as raised:
        client.invoke_rest_api(Name=MWAA_ENVIRONMENT_NAME, Path=path, Method="FETCH")
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert len(FakeAirflow.seen) == 2


def test_the_providers_hook_gets_and_patches_through_the_tasks_connection(plane, runs):
    path = f"/dags/{DAG}/dagRuns/{SHORT_RUN}"
    got = hook().invoke_rest_api(env_name=MWAA_ENVIRONMENT_NAME, path=path, method="GET")
    assert got == {"RestApiStatusCode": 200, "RestApiResponse": runs[(DAG, SHORT_RUN)]}
    patched = hook().invoke_rest_api(env_name=MWAA_ENVIRONMENT_NAME, path=path, method="PATCH", body={"note": "hi"},
                                     query_params={"update_mask": "note"})
    assert patched["RestApiStatusCode"] == 200 and patched["RestApiResponse"]["note"] == "hi"
    assert FakeAirflow.seen[-1]["query"] == {"update_mask": ["note"]} and FakeAirflow.seen[-1]["body"] == {"note": "hi"}


def test_airflow_errors_are_mwaas_rest_api_exceptions_with_the_status(plane):
    missing = f"/dags/{DAG}/dagRuns/manual__404"
    with pytest.raises(ClientError) as raised:
        mwaa(plane).invoke_rest_api(Name=MWAA_ENVIRONMENT_NAME, Path=missing, Method="GET")
    error = raised.value.response
    assert error["Error"]["Code"] == "RestApiClientException" and error["RestApiStatusCode"] == 404
    assert "was not found" in error["RestApiResponse"]["detail"]
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400 and error["ResponseMetadata"]["RetryAttempts"] == 0
    with pytest.raises(ClientError) as raised:  # the same through the provider's hook, which re-raises it
        hook().invoke_rest_api(env_name=MWAA_ENVIRONMENT_NAME, path=missing, method="GET")
    assert raised.value.response["Error"]["Code"] == "RestApiClientException"
    assert raised.value.response["RestApiStatusCode"] == 404
    with pytest.raises(ClientError) as raised:
        mwaa(plane).invoke_rest_api(Name=MWAA_ENVIRONMENT_NAME, Path="/boom", Method="GET")
    assert raised.value.response["Error"]["Code"] == "RestApiServerException"
    assert raised.value.response["RestApiStatusCode"] == 500


def test_an_unknown_environment_is_resource_not_found(plane):
    for call in (lambda: mwaa(plane).invoke_rest_api(Name="churn-elsewhere", Path="/dags", Method="GET"),
                 lambda: hook().invoke_rest_api(env_name="churn-elsewhere", path="/dags", method="GET")):
        with pytest.raises(ClientError) as raised:
            call()
        assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"
        assert "churn-elsewhere" in raised.value.response["Error"]["Message"]
    assert FakeAirflow.seen == []


@pytest.mark.parametrize("path, why", [
    (f"/dags/{DAG}/dagRuns/{RUN}", "length less than or equal to 64"),  # MWAA's limit: the run's own path
    ("/../auth/token", "'..' segment"),
    ("/dags/%2e%2e/%2e%2e/execution", "'..' segment"),
    ("/dags/a%2Fb", "encoded slash"),
    ("dags", "does not start with '/'"),
    ("/dags?limit=1", "a query"),
])
def test_paths_outside_the_rest_api_are_a_validation_exception(plane, path, why):
    with pytest.raises(ClientError) as raised:
        mwaa(plane).invoke_rest_api(Name=MWAA_ENVIRONMENT_NAME, Path=path, Method="GET")
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert why in raised.value.response["Error"]["Message"]
    assert FakeAirflow.seen == []  # nothing was forwarded


def test_operations_mwaa_does_not_emulate_are_refused_as_such(plane):
    with pytest.raises(ClientError) as raised:
        mwaa(plane).create_web_login_token(Name=MWAA_ENVIRONMENT_NAME)
    assert raised.value.response["Error"]["Code"] == "UnknownOperationException"
    assert "CreateWebLoginToken is not emulated by the local target" in raised.value.response["Error"]["Message"]


def test_run_cost_sets_the_runs_note_keeping_what_was_there(plane, runs):
    """churn_ml.cost.run_note, as the run_cost task calls it: the run's id does not fit a Path, so the run is read
    from the DAG's run list and its note set with the bulk PATCH; a retry changes nothing."""
    from churn_ml.cost import run_note

    first = "Cost: 0.0270 USD for 1 job(s) (emr-serverless 0.0270), priced from the ledger's records"
    assert run_note.note_run_total(DAG, RUN, first) == f"{RETRAIN_NOTE}\n{first}"
    assert runs[(DAG, RUN)]["note"] == f"{RETRAIN_NOTE}\n{first}"
    assert runs[(DAG, RUN + "-other")]["note"] == "x"  # the run whose id only contains this one's is left alone
    listed, bulk = FakeAirflow.seen
    assert (listed["method"], listed["path"], listed["query"]) == (
        "GET", f"/api/v2/dags/{DAG}/dagRuns", {"run_id_pattern": [RUN], "limit": ["100"]})
    assert (bulk["method"], bulk["path"]) == ("PATCH", f"/api/v2/dags/{DAG}/dagRuns")
    assert bulk["body"] == {"actions": [{"action": "update", "entities": [{"dag_run_id": RUN, "note": runs[(DAG, RUN)]["note"]}],
                                         "update_mask": ["note"], "action_on_non_existence": "fail"}]}
    run_note.note_run_total(DAG, RUN, first)  # a retry: read, nothing to change
    assert [seen["method"] for seen in FakeAirflow.seen] == ["GET", "PATCH", "GET"]
    second = "Cost: 0.0310 USD for 2 job(s) (emr-serverless 0.0310), priced from the ledger's records"
    run_note.note_run_total(DAG, RUN, second)  # a rerun of the date: its line replaced
    assert runs[(DAG, RUN)]["note"] == f"{RETRAIN_NOTE}\n{second}"


def test_run_cost_fails_at_once_for_a_run_airflow_does_not_know(plane):
    from churn_ml.cost import run_note
    from churn_ml.errors import CannotSucceedOnRetry

    with pytest.raises(CannotSucceedOnRetry, match="lists no run"):
        run_note.note_run_total(DAG, "manual__nothing", "Cost: no job of this run wrote a ledger record")
    with pytest.raises(CannotSucceedOnRetry, match="Airflow answered 404"):
        run_note.note_run_total("no_such_dag_with_a_path", RUN, "Cost: no job of this run wrote a ledger record")
