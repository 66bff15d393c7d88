"""A DAG run's cost total in its note in the Airflow UI, through MWAA's InvokeRestApi on both targets.

The ``run_cost`` task (``dag_support.run_cost_after``) logs the run's total (``recorder.log_run_total``) and then
calls ``note_run_total`` with its one-line summary ("Cost: 0.0270 USD for 1 job(s) (...), priced from the
ledger's records"). A task cannot set its own run's note through Airflow 3's Execution API, so the note goes
through the Airflow REST API the way MWAA supports it: MWAA's ``InvokeRestApi`` (the Amazon provider's
``MwaaHook.invoke_rest_api``), on the environment ``AIRFLOW_ENV_NAME`` names (MWAA sets it in its containers to
the environment's name; on the local target scripts/env.sh exports ``churn-local``, the environment the control
plane creates, which forwards the call to the local api-server: local_aws/mwaa.py). The same code on both targets.

**The two calls.** InvokeRestApi takes a ``Path`` of at most 64 characters (``RestApiPath`` in the API reference
and botocore's model), and ``/dags/<dag_id>/dagRuns/<run_id>`` is longer for every run id Airflow makes
(``scheduled__2026-07-01T00:00:00+00:00`` alone is 36), so the single-run routes cannot be used. Both calls name
the DAG's runs instead, with the run id in the query or the body (Airflow 3.3.1's REST API v2):

1. ``GET /dags/<dag_id>/dagRuns?run_id_pattern=<run_id>``: the runs whose id contains it, of which the one with
   exactly that id is kept; its ``note`` is the current note;
2. ``PATCH /dags/<dag_id>/dagRuns`` (bulk): ``{"actions": [{"action": "update", "entities": [{"dag_run_id":
   <run_id>, "note": <note>}], "update_mask": ["note"], "action_on_non_existence": "fail"}]}``; Airflow answers
   200 with the run under ``update.success`` or an error under ``update.errors``.

**The note.** ``merge_note`` keeps what a person or another task wrote ("Retraining triggered by churn_monitoring
..."): it replaces an earlier line starting with ``Cost:`` (an earlier run_cost's, e.g. before a clear) or else
appends the summary on a line of its own. A retry that finds the note already merged sends no update.

**Failures fail the task** (the note is the point of the call), so a retry sets it: an Airflow 5xx, 408 or 429,
throttling or the network are raised as they are. What a retry cannot change raises ``CannotSucceedOnRetry``
(``fail_fast`` makes it AirflowFailException: no retries): no ``AIRFLOW_ENV_NAME``; an Airflow 4xx (a DAG or run it
does not know, a role that may not edit runs); a note that would exceed Airflow's 1000 characters; MWAA's
AccessDeniedException (the execution role lacks ``airflow:InvokeRestApi``: ``NoteRunCost`` in
infra/cloudformation/churn.yaml). MWAA's ValidationException and ResourceNotFoundException (an environment of
that name does not exist) are ``fail_fast``'s invalid requests. Concurrent edits: the note is read, then written;
a person's edit between the two (milliseconds apart) would be overwritten.
"""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import quote

from churn_ml.errors import CannotSucceedOnRetry
from churn_ml.settings import settings

log = logging.getLogger(__name__)

NOTE_PREFIX = "Cost:"  # the first word of recorder.run_summary's line: the line merge_note replaces in a note
NOTE_MAX_LENGTH = 1000  # Airflow 3.3.1's limit on a DAG run's note (DAGRunPatchBody, BulkDAGRunBody)
REST_API_PATH_MAX = 64  # MWAA InvokeRestApi's limit on Path (RestApiPath)
RETRIED_AIRFLOW_STATUSES = frozenset({408, 429})  # Airflow 4xx answers that a later try may not get


def merge_note(note: str | None, summary: str) -> str:
    """The run's ``note`` with ``summary`` (one line, starting with ``Cost:``) as its cost line: the first line
    of the note that starts with ``Cost:`` is replaced; without one, ``summary`` is appended on a line of its own
    (blank lines at the end dropped). Every other line is kept as it was. Merging twice is merging once."""
    if not summary.startswith(NOTE_PREFIX) or "\n" in summary or "\r" in summary:
        raise ValueError(f"a run's cost line is one line starting with {NOTE_PREFIX!r}, got {summary!r}")
    lines = (note or "").splitlines()
    for index, line in enumerate(lines):
        if line.startswith(NOTE_PREFIX):
            lines[index] = summary
            return "\n".join(lines)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join([*lines, summary])


def env_name() -> str:
    """The MWAA environment whose Airflow runs this task: ``AIRFLOW_ENV_NAME``, else CannotSucceedOnRetry."""
    name = os.environ.get("AIRFLOW_ENV_NAME", "").strip()
    if not name:
        raise CannotSucceedOnRetry(
            "AIRFLOW_ENV_NAME is not set, so the run's note cannot be set through MWAA's InvokeRestApi: MWAA sets it "
            "to the environment's name in its containers; on the local target source scripts/env.sh (it exports "
            "AIRFLOW_ENV_NAME=churn-local, the environment the control plane creates); anywhere else set it to the "
            "name of the MWAA environment whose Airflow runs these DAGs")
    return name


def note_run_total(dag_id: str, run_id: str, summary: str) -> str:
    """Put ``summary`` into the note of run ``run_id`` of ``dag_id`` (``merge_note``) through MWAA's InvokeRestApi
    on ``AIRFLOW_ENV_NAME``'s environment; returns the note. The calls and errors: the module docstring."""
    environment = env_name()
    runs_path = f"/dags/{quote(dag_id, safe='')}/dagRuns"
    if len(runs_path) > REST_API_PATH_MAX:
        raise CannotSucceedOnRetry(f"{runs_path} is longer than the {REST_API_PATH_MAX} characters MWAA's InvokeRestApi "
                                   f"takes as Path: only a DAG id of at most {REST_API_PATH_MAX - 14} characters can have "
                                   "its runs' notes set")
    from airflow.providers.amazon.aws.hooks.mwaa import MwaaHook

    hook = MwaaHook(aws_conn_id=settings.aws_conn_id)
    listed = _invoke(hook, environment, "GET", runs_path, query_params={"run_id_pattern": run_id, "limit": 100})
    found = [run for run in listed.get("dag_runs") or [] if run.get("dag_run_id") == run_id]
    if not found:
        raise CannotSucceedOnRetry(f"the Airflow REST API of {environment} lists no run {run_id!r} of {dag_id} "
                                   f"(GET {runs_path}?run_id_pattern=<run id> found {listed.get('total_entries')})")
    current = found[0].get("note") or ""
    note = merge_note(current, summary)
    if note == current:
        log.info("the note of run %s of %s already shows: %s", run_id, dag_id, summary)
        return note
    if len(note) > NOTE_MAX_LENGTH:
        raise CannotSucceedOnRetry(f"the note of run {run_id} of {dag_id} with its cost line would be {len(note)} "
                                   f"characters, over Airflow's {NOTE_MAX_LENGTH}: shorten the note in the UI, then clear "
                                   f"run_cost ({summary})")
    update = {"action": "update", "entities": [{"dag_run_id": run_id, "note": note}], "update_mask": ["note"],
              "action_on_non_existence": "fail"}
    answer = _invoke(hook, environment, "PATCH", runs_path, body={"actions": [update]}).get("update") or {}
    errors = answer.get("errors") or []
    if errors or f"{dag_id}.{run_id}" not in (answer.get("success") or []):
        statuses = {error.get("status_code") for error in errors if isinstance(error, dict)}
        message = (f"the Airflow REST API of {environment} did not set the note of run {run_id} of {dag_id} "
                   f"(PATCH {runs_path}): {errors or answer}")
        if statuses and all(isinstance(s, int) and 400 <= s < 500 and s not in RETRIED_AIRFLOW_STATUSES
                            for s in statuses):
            raise CannotSucceedOnRetry(message)
        raise RuntimeError(message)
    log.info("NOTE of run %s of %s: %s (MWAA InvokeRestApi on %s)", run_id, dag_id, summary, environment)
    return note


def _invoke(hook, environment: str, method: str, path: str, *, query_params: dict | None = None,
            body: dict | None = None) -> dict[str, Any]:
    """``RestApiResponse`` of one InvokeRestApi call; an answer a retry cannot change raises CannotSucceedOnRetry."""
    from botocore.exceptions import ClientError

    try:
        answer = hook.invoke_rest_api(env_name=environment, path=path, method=method, body=body,
                                      query_params=query_params)
    except ClientError as err:
        code = (err.response.get("Error") or {}).get("Code")
        what = f"{method} {path} through MWAA's InvokeRestApi on {environment}"
        status = err.response.get("RestApiStatusCode")
        if code == "RestApiClientException" and status not in RETRIED_AIRFLOW_STATUSES:
            raise CannotSucceedOnRetry(f"{what}: Airflow answered {status}: {err.response.get('RestApiResponse')}") from err
        if code == "AccessDeniedException":
            raise CannotSucceedOnRetry(
                f"{what}: {err}: the execution role needs airflow:InvokeRestApi on "
                f"arn:<partition>:airflow:<region>:<account>:role/{environment}/User (NoteRunCost in "
                "infra/cloudformation/churn.yaml)") from err
        raise
    document = answer.get("RestApiResponse")
    return document if isinstance(document, dict) else {}
