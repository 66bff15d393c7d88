"""``churn_ml.cost.run_note``: the run's cost line merged into its note, and what a failure to set it does.

The calls go to a stand-in for the provider's ``MwaaHook`` here; tests/local_aws/test_mwaa.py runs the same
function through the real hook and the control plane's InvokeRestApi."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from churn_ml.cost import run_note
from churn_ml.cost.run_note import merge_note
from churn_ml.errors import CannotSucceedOnRetry, fail_fast

COST = "Cost: 0.0270 USD for 1 job(s) (emr-serverless 0.0270), priced from the ledger's records"
LATER = "Cost: 0.0310 USD for 2 job(s) (emr-serverless 0.0310), priced from the ledger's records"
RETRAIN = "Retraining triggered by churn_monitoring for 2026-07-01: drift 0.31 over 0.2"
RUN = "scheduled__2026-07-01T00:00:00+00:00"


@pytest.mark.parametrize("note, expected", [
    (None, COST),
    ("", COST),
    ("  \n", COST),
    (RETRAIN, f"{RETRAIN}\n{COST}"),
    (f"{RETRAIN}\n\n", f"{RETRAIN}\n{COST}"),  # trailing blank lines dropped, the rest kept
    (f"{RETRAIN}\n{LATER}", f"{RETRAIN}\n{COST}"),  # an earlier run_cost's line replaced in place
    (f"{LATER}\n{RETRAIN}", f"{COST}\n{RETRAIN}"),
    ("first\n  Cost: indented is a person's\nlast", f"first\n  Cost: indented is a person's\nlast\n{COST}"),
    ("Costly run, see ticket 12", f"Costly run, see ticket 12\n{COST}"),  # "Cost:" with its colon only
])
def test_merge_keeps_other_lines_and_replaces_only_the_cost_line(note, expected):
    assert merge_note(note, COST) == expected


@pytest.mark.parametrize("note", [None, RETRAIN, f"{RETRAIN}\n{LATER}", f"a\n\nb\n{LATER}\nc", "x\r\ny"])
def test_merging_twice_is_merging_once(note):
    once = merge_note(note, COST)
    assert merge_note(once, COST) == once
    assert merge_note(merge_note(once, LATER), COST) == once


@pytest.mark.parametrize("summary", ["0.02 USD", "Cost: two\nlines", "Cost: a\rb"])
def test_the_summary_must_be_one_cost_line(summary):
    with pytest.raises(ValueError):
        merge_note(RETRAIN, summary)


class FakeHook:
    """The provider's MwaaHook as run_note calls it: answers from ``answers`` (a list, in order) or raises them."""

    answers: list = []
    calls: list = []

    def __init__(self, aws_conn_id: str) -> None:
        self.aws_conn_id = aws_conn_id

    def invoke_rest_api(self, **kwargs):
        FakeHook.calls.append(kwargs)
        answer = FakeHook.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def hook(monkeypatch):
    from airflow.providers.amazon.aws.hooks import mwaa

    monkeypatch.setattr(mwaa, "MwaaHook", FakeHook)
    monkeypatch.setenv("AIRFLOW_ENV_NAME", "churn")
    FakeHook.answers, FakeHook.calls = [], []
    return FakeHook


def listed(note: str | None) -> dict:
    return {"RestApiStatusCode": 200, "RestApiResponse": {"dag_runs": [
        {"dag_run_id": RUN + "-x", "note": "another run"}, {"dag_run_id": RUN, "note": note}], "total_entries": 2}}


def bulk(success=(f"churn_training.{RUN}",), errors=()) -> dict:
    return {"RestApiStatusCode": 200, "RestApiResponse": {"create": None, "delete": None,
                                                          "update": {"success": list(success), "errors": list(errors)}}}


def client_error(code: str, status: int | None = None) -> ClientError:
    response = {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": 400}}
    if status is not None:
        response.update(RestApiStatusCode=status, RestApiResponse={"detail": "d"})
    return ClientError(response, "InvokeRestApi")


def test_the_note_is_read_from_the_run_list_then_set_with_the_bulk_patch(hook):
    hook.answers = [listed(RETRAIN), bulk()]
    assert run_note.note_run_total("churn_training", RUN, COST) == f"{RETRAIN}\n{COST}"
    get, patch = hook.calls
    assert get == {"env_name": "churn", "path": "/dags/churn_training/dagRuns", "method": "GET", "body": None,
                   "query_params": {"run_id_pattern": RUN, "limit": 100}}
    assert all(len(call["path"]) <= run_note.REST_API_PATH_MAX for call in hook.calls)
    assert patch["path"] == "/dags/churn_training/dagRuns" and patch["method"] == "PATCH"
    assert patch["body"]["actions"][0]["entities"] == [{"dag_run_id": RUN, "note": f"{RETRAIN}\n{COST}"}]


def test_a_retry_that_finds_the_note_set_sends_nothing(hook):
    hook.answers = [listed(f"{RETRAIN}\n{COST}")]
    run_note.note_run_total("churn_training", RUN, COST)
    assert [call["method"] for call in hook.calls] == ["GET"]


def test_without_the_environment_name_it_says_what_to_set(hook, monkeypatch):
    monkeypatch.delenv("AIRFLOW_ENV_NAME")
    with pytest.raises(CannotSucceedOnRetry, match="AIRFLOW_ENV_NAME is not set.*scripts/env.sh"):
        run_note.note_run_total("churn_training", RUN, COST)
    assert hook.calls == []


def test_a_note_over_airflows_limit_fails_without_a_patch(hook):
    hook.answers = [listed("x" * 990)]
    with pytest.raises(CannotSucceedOnRetry, match="over Airflow's 1000"):
        run_note.note_run_total("churn_training", RUN, COST)
    assert len(hook.calls) == 1


@pytest.mark.parametrize("answer, raised", [
    (client_error("RestApiClientException", 404), CannotSucceedOnRetry),  # a DAG Airflow does not know
    (client_error("RestApiClientException", 403), CannotSucceedOnRetry),  # a role that may not edit runs
    (client_error("AccessDeniedException"), CannotSucceedOnRetry),  # no airflow:InvokeRestApi
    (client_error("RestApiClientException", 429), ClientError),  # too many requests: a retry may pass
    (client_error("RestApiServerException", 500), ClientError),  # Airflow's own failure: retried
    (client_error("ThrottlingException"), ClientError),
])
def test_what_a_retry_cannot_change_fails_at_once_the_rest_is_retried(hook, answer, raised):
    hook.answers = [answer]
    with pytest.raises(raised) as caught:
        run_note.note_run_total("churn_training", RUN, COST)
    if raised is CannotSucceedOnRetry:  # the task fails without its retries (errors.fail_fast)
        from airflow.sdk.exceptions import AirflowFailException

        with pytest.raises(AirflowFailException):
            with fail_fast():
                raise caught.value


@pytest.mark.parametrize("errors, raised", [
    ([{"error": "The DagRuns with these identifiers: [...] were not found", "status_code": 404}], CannotSucceedOnRetry),
    ([{"error": "database is locked", "status_code": 500}], RuntimeError),
])
def test_a_bulk_error_fails_the_task(hook, errors, raised):
    hook.answers = [listed(None), bulk(success=(), errors=errors)]
    with pytest.raises(raised, match="did not set the note"):
        run_note.note_run_total("churn_training", RUN, COST)


def test_mwaas_invalid_requests_are_fail_fasts(hook):
    hook.answers = [client_error("ResourceNotFoundException")]
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException):
        with fail_fast():
            run_note.note_run_total("churn_training", RUN, COST)
