"""MWAA on the local target: the template's environment, whose ``InvokeRestApi`` the local stack's Airflow answers.

On AWS a task reaches its own environment's Airflow REST API through MWAA's ``InvokeRestApi`` (the Amazon
provider's ``MwaaHook.invoke_rest_api``), signed with the execution role's credentials: MWAA sends the call
to the environment's web server as the Airflow role the caller's IAM policy names, and answers with the
Airflow status and body. This module answers the same call on the control plane, so the code that sets a DAG
run's note (``churn_ml.cost.run_note.note_run_total``) runs unchanged on both targets.

moto has no MWAA, so there is no moto backend to subclass (``local_aws.moto_ext``): ``local_aws.operations``
lists MWAA among the services the control plane answers itself (``OWN``), and ``control_plane.guard`` hands a
request signed for ``airflow`` (MWAA's SigV4 signing name) to ``application`` once it passed the same checks
as every request (Host, no browser, the lake's or a role's SigV4 key, the operation emulated). Emulated:

- **GetEnvironment** of the environments the control plane created: the template's ``AWS::MWAA::Environment``
  (its Airflow version, class, workers, web server access mode; the local MWAA role as its execution role)
  under the local name ``AIRFLOW_ENV_NAME`` (``local_aws.settings``: ``churn-local``; scripts/env.sh exports
  it, as MWAA sets it in its containers), created at the control plane's start (``create_environment``).
- **InvokeRestApi**: ``Path`` (under ``/api/v2``, Airflow 3's REST API, as MWAA maps it for an Airflow 3
  environment), ``Method``, ``QueryParameters`` and ``Body`` sent to the local Airflow api-server
  (``AIRFLOW__API__BASE_URL``, else ``http://127.0.0.1:$CHURN_AIRFLOW_PORT``; scripts/env.sh sets both), with a
  token from its ``GET /auth/token`` (the local stack's simple auth manager makes every user an admin, like
  the ``Admin`` role; on AWS the role is the one the IAM policy names). The answer is MWAA's:
  ``{"RestApiStatusCode": <Airflow's status>, "RestApiResponse": <its JSON body>}`` for a 2xx/3xx; an Airflow
  4xx is ``RestApiClientException`` and a 5xx ``RestApiServerException`` (HTTP 400 as botocore's model declares
  both, with the same two members, which botocore puts into the ClientError's response).

Refused as MWAA refuses them: an environment that does not exist is ``ResourceNotFoundException`` (404); a
request that breaks the API's constraints is ``ValidationException`` (400): a ``Name`` that is not
``[a-zA-Z][0-9a-zA-Z-_]*`` of at most 80 characters, a ``Method`` other than GET, PUT, POST, PATCH, DELETE, a
``Path`` longer than **64 characters** (``RestApiPath``'s length constraint in the API reference and botocore's
model; botocore checks only minimums, so a client sends a longer one and AWS refuses it), ``Body`` or
``QueryParameters`` that are not JSON objects. And, the local target's own rule, a ``Path`` that is not a path
of the REST API: not starting with ``/``, or with a query, a fragment, a backslash, a control character, an
empty, ``.`` or ``..`` segment or an encoded slash, any of which could take the forwarded request out of
``/api/v2``. An api-server that does not answer (not started, or slower than MWAA's 10 s timeout) is
``InternalServerException`` (500), which botocore retries.

Not emulated (answered "not emulated" by ``local_aws.operations``): creating, updating, deleting, listing or
tagging environments, CreateWebLoginToken and CreateCliToken (the provider's fallback when IAM lacks
``airflow:InvokeRestApi``; the local stack's api-server needs no web login).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from typing import Any
from urllib.parse import unquote

from local_aws import settings as local_settings

log = logging.getLogger("local_aws.mwaa")

EMULATED_OPERATIONS = frozenset({"InvokeRestApi", "GetEnvironment"})
API_PREFIX = "/api/v2"  # Airflow 3's REST API: where MWAA sends an Airflow 3 environment's Path
PATH_MAX = 64  # RestApiPath's maximum length (MWAA API reference; botocore's service model)
NAME = re.compile(r"[a-zA-Z][0-9a-zA-Z\-_]*")  # EnvironmentName's pattern, at most 80 characters
NAME_MAX = 80
METHODS = ("GET", "PUT", "POST", "PATCH", "DELETE")
TIMEOUT_SECONDS = 10.0  # MWAA's InvokeRestApi timeout
BODY_METHODS = ("POST", "PUT", "PATCH")


class MwaaError(Exception):
    """An MWAA error answer: its code (botocore's shape name), HTTP status, message and modeled members."""

    def __init__(self, code: str, status: int, message: str, **members: Any) -> None:
        super().__init__(message)
        self.code, self.status, self.message, self.members = code, status, message, members

    def body(self) -> dict[str, Any]:
        return {"message": self.message, **self.members}


def validation(message: str) -> MwaaError:
    return MwaaError("ValidationException", 400, message)


# ---------------------------------------------------------------- environments


_environments: dict[str, dict[str, Any]] = {}
_lock = threading.Lock()


def environment_arn(name: str) -> str:
    return f"arn:aws:airflow:{local_settings.LOCAL_REGION}:{local_settings.LOCAL_ACCOUNT}:environment/{name}"


def create_environment(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    """The environment ``name`` (GetEnvironment's ``Environment``) with ``properties`` (the template's, as
    ``local_aws.template.mwaa_environment`` gives them), AVAILABLE at once; an existing one is left as it is."""
    check_name(name)
    with _lock:
        if name not in _environments:
            _environments[name] = {
                **properties, "Name": name, "Arn": environment_arn(name), "Status": "AVAILABLE",
                "CreatedAt": time.time(), "WebserverUrl": airflow_base_url().split("://", 1)[-1],
            }
        return dict(_environments[name])


def get_environment(name: str) -> dict[str, Any]:
    """GetEnvironment's answer, or ResourceNotFoundException."""
    check_name(name)
    with _lock:
        found = _environments.get(name)
        if found is None:
            raise MwaaError("ResourceNotFoundException", 404,
                            f"Environment {name} not found: the local target has "
                            f"{', '.join(sorted(_environments)) or 'no environment'} (the control plane creates the "
                            f"template's under AIRFLOW_ENV_NAME at its start; scripts/env.sh exports it)")
        return {"Environment": dict(found)}


def check_name(name: str) -> None:
    if not isinstance(name, str) or len(name) > NAME_MAX or not NAME.fullmatch(name):
        raise validation(f"1 validation error detected: Value {str(name)[:100]!r} at 'name' failed to satisfy "
                         f"constraint: Member must satisfy regular expression pattern: [a-zA-Z][0-9a-zA-Z-_]* and have "
                         f"length less than or equal to {NAME_MAX}")


# ---------------------------------------------------------------- InvokeRestApi


def airflow_base_url() -> str:
    """The local Airflow api-server (the control plane's environment: scripts/env.sh's AIRFLOW__API__BASE_URL)."""
    base = os.environ.get("AIRFLOW__API__BASE_URL", "").strip()
    if not base:
        base = f"http://127.0.0.1:{os.environ.get('CHURN_AIRFLOW_PORT', '').strip() or '8080'}"
    return base.rstrip("/")


def api_path(path: Any) -> str:
    """``path`` if it is a path of the REST API MWAA may send (see the module docstring), else ValidationException."""
    if not isinstance(path, str) or not path:
        raise validation("1 validation error detected: Value at 'path' failed to satisfy constraint: Member must not "
                         "be null and have length greater than or equal to 1")
    if len(path) > PATH_MAX:
        raise validation(f"1 validation error detected: Value {path[:100]!r} at 'path' failed to satisfy constraint: "
                         f"Member must have length less than or equal to {PATH_MAX} (it has {len(path)} characters: "
                         "move identifiers into QueryParameters or Body where the Airflow REST API takes them there)")
    problem = None
    if not path.startswith("/"):
        problem = "it does not start with '/'"
    elif any(ch in path for ch in "?#\\") or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in path):
        problem = "it has a query, a fragment, a backslash, a space or a control character (use QueryParameters)"
    else:
        segments = path[1:].split("/")
        decoded = [unquote(segment) for segment in segments]
        if any(segment in ("", ".", "..") for segment in decoded) and path != "/":
            problem = "it has an empty, '.' or '..' segment"
        elif any("/" in segment or "\\" in segment for segment in decoded):
            problem = "it has an encoded slash or backslash"
    if problem:
        raise validation(f"Path {path[:100]!r} is not a path of the Apache Airflow REST API: {problem}. The local "
                         f"target sends Path to the api-server under {API_PREFIX} only.")
    return path


def _query(parameters: Any) -> list[tuple[str, str]]:
    if parameters is None:
        return []
    if not isinstance(parameters, dict):
        raise validation("QueryParameters must be a JSON object (name -> value, or -> a list of values)")
    pairs: list[tuple[str, str]] = []
    for name, value in parameters.items():
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            if isinstance(item, bool):
                item = "true" if item else "false"
            elif isinstance(item, (dict, list)):
                item = json.dumps(item)
            pairs.append((str(name), str(item)))
    return pairs


class _Airflow:
    """The local api-server's REST API, with a token from its ``/auth/token`` (fetched again after a 401)."""

    def __init__(self) -> None:
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    def _token(self, client, base: str, fresh: bool = False) -> str:
        with self._lock:
            if fresh or base not in self._tokens:
                answer = client.get(f"{base}/auth/token")
                if not answer.is_success or "access_token" not in _document(answer):  # 201, from the simple auth manager
                    raise MwaaError("InternalServerException", 500,
                                    f"the local Airflow api-server at {base} gave no token on GET /auth/token "
                                    f"({answer.status_code}): the local stack runs the simple auth manager with every "
                                    "user an admin (scripts/env.sh); a stack configured otherwise cannot be invoked")
                self._tokens[base] = _document(answer)["access_token"]
            return self._tokens[base]

    def call(self, method: str, path: str, query: list[tuple[str, str]], body: Any) -> tuple[int, Any]:
        import httpx

        base = airflow_base_url()
        url = f"{base}{API_PREFIX}{path}"
        try:
            with httpx.Client(timeout=TIMEOUT_SECONDS) as client:
                for attempt in (0, 1):
                    token = self._token(client, base, fresh=attempt == 1)
                    answer = client.request(method, url, params=query, headers={
                        "Authorization": f"Bearer {token}", "Accept": "application/json"},
                        json=(body or {}) if method in BODY_METHODS else None)
                    if answer.status_code != 401:
                        break
        except httpx.TimeoutException:
            raise MwaaError("InternalServerException", 500,
                            f"the local Airflow api-server at {base} did not answer {method} {API_PREFIX}{path} within "
                            f"{TIMEOUT_SECONDS:.0f} s (MWAA's InvokeRestApi timeout)") from None
        except httpx.HTTPError as err:
            raise MwaaError("InternalServerException", 500,
                            f"no Airflow api-server answers at {base} ({type(err).__name__}: {err}): start the local "
                            "stack (scripts/stack.sh start), or set AIRFLOW__API__BASE_URL / CHURN_AIRFLOW_PORT for "
                            "the control plane") from None
        return answer.status_code, _document(answer)


def _document(answer) -> Any:
    if not answer.content:
        return {}
    try:
        return answer.json()
    except ValueError:
        return {"detail": answer.text[:2000]}


_airflow = _Airflow()


def invoke_rest_api(name: str, request: Any) -> dict[str, Any]:
    """InvokeRestApi's answer for environment ``name`` and the request's JSON body (or an ``MwaaError``)."""
    check_name(name)
    if not isinstance(request, dict):
        raise validation("the request body must be a JSON object with Path and Method")
    method = request.get("Method")
    if method not in METHODS:
        raise validation(f"1 validation error detected: Value {str(method)[:20]!r} at 'method' failed to satisfy "
                         f"constraint: Member must satisfy enum value set: [{', '.join(METHODS)}]")
    path = api_path(request.get("Path"))
    body = request.get("Body")
    if body is not None and not isinstance(body, dict):
        raise validation("Body must be a JSON object (the Apache Airflow REST API call's request body)")
    query = _query(request.get("QueryParameters"))
    get_environment(name)  # ResourceNotFoundException for an environment that does not exist
    status, document = _airflow.call(method, path, query, body)
    log.info("InvokeRestApi %s %s %s%s -> %d", name, method, API_PREFIX, path, status)
    if status >= 500:
        raise MwaaError("RestApiServerException", 400, f"the Apache Airflow REST API answered {status}",
                        RestApiStatusCode=status, RestApiResponse=document)
    if status >= 400:
        raise MwaaError("RestApiClientException", 400, f"the Apache Airflow REST API answered {status}",
                        RestApiStatusCode=status, RestApiResponse=document)
    return {"RestApiStatusCode": status, "RestApiResponse": document}


# ---------------------------------------------------------------- the WSGI application


_ROUTES = (
    ("POST", re.compile(r"^/restapi/([^/]+)/?$"), "InvokeRestApi"),
    ("GET", re.compile(r"^/environments/([^/]+)/?$"), "GetEnvironment"),
)


def application(environ, start_response):
    """The control plane's MWAA (``control_plane.guard`` calls it for requests it checked and allowed)."""
    request_id = str(uuid.uuid4())
    raw_path = (environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")).split("?", 1)[0]
    method = environ.get("REQUEST_METHOD", "GET")
    try:
        for route_method, pattern, operation in _ROUTES:
            matched = pattern.match(raw_path)
            if matched and method == route_method:
                name = unquote(matched.group(1))
                if operation == "GetEnvironment":
                    answer = get_environment(name)
                else:
                    length = int(environ.get("CONTENT_LENGTH") or 0)
                    raw = environ["wsgi.input"].read(length) if length else b""
                    try:
                        request = json.loads(raw or b"{}")
                    except ValueError:
                        raise validation("the request body is not JSON") from None
                    answer = invoke_rest_api(name, request)
                return _respond(start_response, 200, answer, request_id)
        raise MwaaError("UnknownOperationException", 400,
                        f"{method} {raw_path[:200]} is not emulated by the local target's MWAA (local_aws.mwaa)")
    except MwaaError as err:
        if err.status >= 500:
            log.warning("MWAA %s %s: %s", method, raw_path[:200], err.message)
        return _respond(start_response, err.status, err.body(), request_id, error=err.code)


def _respond(start_response, status: int, document: dict, request_id: str, error: str | None = None):
    from http import HTTPStatus

    body = json.dumps(document, default=str).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("x-amzn-RequestId", request_id)]
    if error:
        headers.append(("x-amzn-ErrorType", f"{error}:"))
    start_response(f"{status} {HTTPStatus(status).phrase}", headers)
    return [body]
