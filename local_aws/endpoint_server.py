"""The local endpoint's HTTP processes (uvicorn + Starlette), one module, two roles.

``container``: one instance of a production variant, the SageMaker inference-container contract.
    ``GET /ping`` answers 200 once the model is loaded; ``POST /invocations`` runs the model's
    ``input_fn -> predict_fn -> output_fn`` (loaded from its ``SAGEMAKER_SUBMIT_DIRECTORY``
    bundle); an ``InferenceError`` becomes its HTTP status (400, 413, 415) with the message as body,
    anything else 500. A model that does not load makes the process exit (the deployment sees it).

``router``: the SageMaker Runtime front end for every local endpoint.
    ``POST /endpoints/{name}/invocations`` picks an instance of the endpoint's current routes by
    weight and forwards the body; the routes come from the endpoint's state file, re-read when it
    changes (the control plane replaces it atomically, so a switch is atomic and a request in
    flight finishes on the instance it started on). Errors have the Runtime's shapes
    (``x-amzn-ErrorType``: ValidationError, ModelError with OriginalStatusCode, ...), so boto3's
    ``sagemaker-runtime`` client raises its usual exceptions. ``GET /_local/metrics`` gives the
    per-variant counts the deployment's alarms read (the local CloudWatch). A route whose endpoint
    config has a ``DataCaptureConfig`` captures the sampled share of its successful invocations
    as SageMaker does (``local_aws.data_capture``; counts at ``GET /_local/capture``).

Run by the control plane (``local_aws.endpoints``):
``python -m local_aws.endpoint_server [--log-file L] container --port-file F --model-dir M --code-dir C --program inference.py``
``python -m local_aws.endpoint_server [--log-file L] router --port P --port-file F --state-dir S``

Both roles refuse, before any handler, what ``local_aws.request_guard`` refuses (``RequestGuard``):
a foreign Host, a browser's request (``Origin``, ``Sec-Fetch-*``); the router takes invocations
signed (SigV4) with the lake's key, as boto3's ``sagemaker-runtime`` client signs them, and its
``/_local/`` pages with the lake's token, which is also what it sends the containers: a container
answers ``/invocations`` only to the router and the deployment's checks. ``/ping`` needs neither.

Malformed requests never get a 5xx: the router checks the endpoint name against SageMaker's rule
(``naming.check_name``, from botocore's model) and answers ValidationError 400; bodies are read as
they stream in and capped (413) without buffering the excess; a 5xx means the model or the
service failed, which is what the deployment's alarm counts. No access log; the log rotates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import logging.handlers
import os
import random
import re
import socket
import sys
import time
from collections import defaultdict
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from churn_ml import naming
from local_aws import request_guard
from local_aws.common import Credentials, credentials, endpoint_token
from local_aws.data_capture import CaptureBuffer, CaptureSettings

log = logging.getLogger("churn_ml.endpoint")
RUNTIME_MAX_PAYLOAD = 6 * 1024 * 1024  # SageMaker Runtime's limit for InvokeEndpoint
MODEL_TIMEOUT_SECONDS = 60.0  # the Runtime gives a container 60 s to answer
INLINE_BYTES = 16 * 1024  # smaller requests are scored on the event loop


# ---------------------------------------------------------------- the container

def container_app(handlers, model, max_payload: int) -> Starlette:
    response_type = getattr(handlers, "response_type", None)

    def infer(body: bytes, content_type: str | None, accept: str | None) -> tuple[str, str]:
        data = handlers.input_fn(body, content_type)
        prediction = handlers.predict_fn(data, model)
        wanted = response_type(accept, content_type) if response_type else accept
        return handlers.output_fn(prediction, wanted)

    async def ping(_: Request) -> Response:
        return Response(status_code=200)

    async def execution_parameters(_: Request) -> Response:
        return JSONResponse({"MaxConcurrentTransforms": 2, "BatchStrategy": "MULTI_RECORD",
                             "MaxPayloadInMB": max_payload // (1024 * 1024)})

    async def invocations(request: Request) -> Response:
        try:
            body = await read_body(request, max_payload)
        except (BodyTooLarge, BadContentLength) as err:
            return PlainTextResponse(str(err), status_code=413 if isinstance(err, BodyTooLarge) else 400)
        try:
            args = (body, request.headers.get("content-type"), request.headers.get("accept"))
            # A few rows take well under a millisecond: the hop to a worker thread would cost more.
            output, media = infer(*args) if len(body) < INLINE_BYTES else await run_in_threadpool(infer, *args)
        except Exception as err:  # a bad request or a model failure must never stop the server
            status = getattr(err, "status", None)
            if not isinstance(status, int):
                log.exception("inference failed")  # the model's fault: a 5xx, which the deployment's alarm counts
                return PlainTextResponse(f"{type(err).__name__}: {err}", status_code=500)
            return PlainTextResponse(str(err), status_code=status)
        return Response(output, media_type=media)

    return Starlette(routes=[
        Route("/ping", ping, methods=["GET"]),
        Route("/execution-parameters", execution_parameters, methods=["GET"]),
        Route("/invocations", invocations, methods=["POST"]),
    ])


class BodyTooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"Request payload of {size} bytes is over the {limit // (1024 * 1024)} MB limit; "
                         "split it into smaller requests.")


class BadContentLength(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The body, read as it streams in (Content-Length or chunked). Over ``limit`` bytes (0 = none)
    the rest is read and dropped, never buffered, then BodyTooLarge: reading it all keeps the
    keep-alive connection usable for the client's next request."""
    declared = request.headers.get("content-length")
    if declared is not None and not declared.strip().isdigit():
        raise BadContentLength(f"Content-Length {declared[:40]!r} is not a number of bytes.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if not limit or size <= limit:
            chunks.append(chunk)
        elif chunks:
            chunks.clear()
    if limit and size > limit:
        raise BodyTooLarge(size, limit)
    return b"".join(chunks)


class RequestGuard:
    """ASGI middleware: ``request_guard``'s checks before the app sees a request. ``/ping`` is open
    (health checks); paths under ``/_local/``, and all of a container's (``key`` None), take the
    lake's token; the rest, the Runtime's invocations, a SigV4 signature by ``key``, checked over the
    body, which is then handed to the app as if it came from the socket."""

    def __init__(self, app, token: str, key: Credentials | None = None) -> None:
        self.app, self.token, self.key = app, token, key

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        path = scope["path"]
        try:
            request_guard.check_host_and_browser(headers, scope["server"][1])
            if path == "/ping":
                pass
            elif self.key is None or path.startswith("/_local/"):
                request_guard.check_token(headers, self.token)
            else:
                key, _ = request_guard.signing_key(headers, self.key)  # the lake's key or a role's (MWAA's tasks)
                request_guard.authorization(headers, key)  # before reading a body
                body = await read_body(Request(scope, receive), RUNTIME_MAX_PAYLOAD)
                request_guard.check_signature(scope["method"], scope.get("raw_path", path.encode()).decode("latin-1"),
                                              scope["query_string"].decode("latin-1"), headers, body, key)
                receive = _replay(body, receive)
        except request_guard.Refused as refused:
            log.warning("refused %s %s: %s", scope["method"], path[:200], refused.message)
            status, refusal_headers, content = refused.render("json")
            return await Response(content, status_code=status, headers=dict(refusal_headers))(scope, receive, send)
        except BodyTooLarge as err:
            return await _error(413, "ValidationError", str(err))(scope, receive, send)
        except BadContentLength as err:
            return await _error(400, "ValidationError", str(err))(scope, receive, send)
        await self.app(scope, receive, send)


def _replay(body: bytes, receive):
    """An ASGI ``receive`` that gives ``body`` as the request's, then waits on the connection's own."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed():
        return pending.pop() if pending else await receive()

    return replayed


def load_container(model_dir: str, code_dir: str, program: str):
    """Import the handlers from the source bundle and load the model, as the framework container does:
    the file ``program`` names inside ``code_dir``, by location (``sandbox.load_handlers``)."""
    from local_aws.sandbox import load_handlers

    handlers = load_handlers(code_dir, program)
    return handlers, handlers.model_fn(model_dir)


# ---------------------------------------------------------------- the router

class Routes:
    """Endpoint routes from ``<state-dir>/<name>.json``, re-read when the file changes; each route's
    DataCaptureConfig compiled to its ``CaptureSettings`` (``"capture"``, None when it captures nothing)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._cache: dict[str, tuple[tuple[int, int], dict]] = {}

    def get(self, name: str) -> dict | None:
        path = self.state_dir / f"{name}.json"
        try:
            stat = path.stat()
        except FileNotFoundError:
            self._cache.pop(name, None)
            return None
        except OSError:
            return None
        key = (stat.st_mtime_ns, stat.st_size)
        cached = self._cache.get(name)
        if cached is None or cached[0] != key:
            try:
                cached = (key, json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError):
                return cached[1] if cached else None
            for route in cached[1].get("routes", []):
                route["capture"] = _capture_settings(name, route)
            self._cache[name] = cached
        return cached[1]


def _capture_settings(name: str, route: dict) -> CaptureSettings | None:
    """The route's capture; a config the router cannot use (the control plane checks them) captures nothing,
    and the endpoint keeps serving."""
    try:
        return CaptureSettings.of(route.get("DataCaptureConfig"))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        log.error("endpoint %s, %s: DataCaptureConfig unusable (%s: %s); not capturing", name,
                  route.get("EndpointConfigName"), type(err).__name__, err)
        return None


def _error(status: int, kind: str, message: str, **extra) -> JSONResponse:
    return JSONResponse({"message": message, **extra}, status_code=status, headers={"x-amzn-ErrorType": f"{kind}:"})


def router_app(state_dir: Path, account: str, token: str) -> Starlette:
    """The Runtime's routes; ``token`` is sent to the containers (they refuse a request without it)."""
    import httpx

    routes = Routes(state_dir)
    captures = CaptureBuffer()
    metrics: dict = defaultdict(lambda: defaultdict(lambda: {
        "Invocations": 0, "Invocation4XXErrors": 0, "Invocation5XXErrors": 0, "ModelLatencyMsSum": 0.0,
    }))
    client = httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]),
        timeout=httpx.Timeout(MODEL_TIMEOUT_SECONDS, connect=5.0),
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
    )

    async def ping(_: Request) -> Response:
        return JSONResponse({"status": "ok", "pid": os.getpid(), "state_dir": str(state_dir)})

    async def local_metrics(_: Request) -> Response:
        return JSONResponse({name: dict(variants) for name, variants in metrics.items()})

    async def local_capture(_: Request) -> Response:
        return JSONResponse(captures.stats)

    async def invoke(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            body = await read_body(request, RUNTIME_MAX_PAYLOAD)
            naming.check_name(name)  # SageMaker's own rule, before the name comes near a file path
        except BodyTooLarge as err:
            return _error(413, "ValidationError", str(err))
        except (BadContentLength, ValueError) as err:
            return _error(400, "ValidationError", str(err))
        state = routes.get(name)
        live = [r for r in (state or {}).get("routes", []) if r.get("weight", 0) > 0]
        if state is None or not live:
            return _error(400, "ValidationError", f"Endpoint {name} of account {account} not found.")
        route = random.choices(live, weights=[r["weight"] for r in live])[0]
        url = random.choice(route["urls"])
        counts = metrics[name][route["EndpointConfigName"]]  # blue and green may share a VariantName
        counts["Invocations"] += 1
        # Stripped: h11 refuses to send a value with outer whitespace, which uvicorn accepted.
        headers = {k: v.strip() for k, v in request.headers.items() if k.lower() in ("content-type", "accept")}
        forwarded = {**headers, request_guard.TOKEN_HEADER: token}
        started = time.perf_counter()
        try:
            answer = await client.post(f"{url}/invocations", content=body, headers=forwarded)
        except httpx.HTTPError as err:
            counts["Invocation5XXErrors"] += 1
            return _error(500, "InternalFailure", f"variant {route['VariantName']} did not answer ({type(err).__name__}: {err})")
        counts["ModelLatencyMsSum"] += (time.perf_counter() - started) * 1000
        variant_header = {"x-Amzn-Invoked-Production-Variant": route["VariantName"]}
        if answer.status_code == 200:
            capture = route.get("capture")
            if capture is not None and capture.sampled():
                captures.add(capture, name, route["VariantName"], (body, headers.get("content-type")),
                             (answer.content, answer.headers.get("content-type")))
            return Response(answer.content, media_type=answer.headers.get("content-type"), headers=variant_header)
        family = "client" if answer.status_code < 500 else "server"
        counts["Invocation4XXErrors" if family == "client" else "Invocation5XXErrors"] += 1
        text = answer.text[:1024]
        return _error(
            424, "ModelError",
            f'Received {family} error ({answer.status_code}) from primary with message "{text}".',
            OriginalStatusCode=answer.status_code, OriginalMessage=text,
        )

    async def unknown(request: Request, _exc: Exception) -> Response:
        """No route: Starlette's 404 and 405, in the Runtime's shape (a name with a line break ends here too)."""
        with contextlib.suppress(BodyTooLarge, BadContentLength):
            await read_body(request, RUNTIME_MAX_PAYLOAD)  # drained: the connection stays usable
        invocation = re.fullmatch(r"/endpoints/(.*)/invocations", request.scope["path"], re.DOTALL)
        if invocation and request.method == "POST":
            try:
                naming.check_name(invocation.group(1))
            except ValueError as err:
                return _error(400, "ValidationError", str(err))
        return _error(404, "UnknownOperationException",
                      f"{request.method} {request.url.path[:200]!r} is not an operation of the SageMaker Runtime; "
                      "call POST /endpoints/<EndpointName>/invocations")

    async def failure(request: Request, err: Exception) -> Response:
        log.error("request %s %s failed: %s: %s", request.method, request.url.path[:200], type(err).__name__, err)
        return _error(500, "InternalFailure", f"the local SageMaker Runtime failed: {type(err).__name__}")

    return Starlette(
        routes=[
            Route("/ping", ping, methods=["GET"]),
            Route("/_local/metrics", local_metrics, methods=["GET"]),
            Route("/_local/capture", local_capture, methods=["GET"]),
            Route("/endpoints/{name:path}/invocations", invoke, methods=["POST"]),
        ],
        exception_handlers={404: unknown, 405: unknown, Exception: failure},
        lifespan=_lifespan(client, captures),
    )


def _lifespan(client, captures: CaptureBuffer):
    """The capture writer runs beside the server; at shutdown (after the requests in flight) it writes
    what it still holds, then the forwarding client closes."""
    @contextlib.asynccontextmanager
    async def lifespan(_app):
        writer = asyncio.create_task(captures.run())
        try:
            yield
        finally:
            await captures.close(writer)
            await client.aclose()

    return lifespan


# ---------------------------------------------------------------- process entry point

def _serve(app, port: int, port_file: Path, host: str = "127.0.0.1") -> None:
    """Bind host:port (127.0.0.1; 0 = any free port), publish the port, serve until SIGTERM (graceful)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: without it a response written as headers + body waits for
    # the client's delayed ACK (~40 ms per request on loopback).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        raise SystemExit(f"cannot listen on {host}:{port}: {err}; choose another port") from err
    bound = sock.getsockname()[1]
    # No access log (a line per request); uvicorn's own messages go to the rotating log (log_config=None).
    config = uvicorn.Config(app, log_level="warning", access_log=False, log_config=None, timeout_graceful_shutdown=30,
                            backlog=2048, timeout_keep_alive=30)
    server = uvicorn.Server(config)
    tmp = port_file.with_name(f".{port_file.name}.tmp")
    tmp.write_text(json.dumps({"port": bound, "pid": os.getpid()}))
    tmp.replace(port_file)
    log.info("listening on http://%s:%d (pid %d)", host, bound, os.getpid())
    asyncio.run(server.serve(sockets=[sock]))


LOG_BYTES, LOG_BACKUPS = 5 * 1024 * 1024, 2  # a server's log never passes 15 MB


def _logging(log_file: Path | None) -> None:
    handler = (logging.handlers.RotatingFileHandler(log_file, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS)
               if log_file else logging.StreamHandler(sys.stdout))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=[handler])
    logging.getLogger("httpx").setLevel(logging.WARNING)  # it logs every forwarded request at INFO


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="local_aws.endpoint_server")
    parser.add_argument("--log-file", type=Path, help="rotating log (5 MB x 3); stdout when not given")
    sub = parser.add_subparsers(dest="role", required=True)
    container = sub.add_parser("container")
    container.add_argument("--model-dir", required=True)
    container.add_argument("--code-dir", required=True)
    container.add_argument("--program", required=True)
    container.add_argument("--port-file", required=True, type=Path)
    router = sub.add_parser("router")
    router.add_argument("--port", type=int, required=True)
    router.add_argument("--state-dir", required=True, type=Path)
    router.add_argument("--port-file", required=True, type=Path)
    router.add_argument("--account", default="000000000000")
    router.add_argument("--host", default="127.0.0.1", help="the address to listen on (containers: see docker-compose.yaml)")
    args = parser.parse_args(argv)
    _logging(args.log_file)
    token = endpoint_token()  # the lake's (LAKE_ROOT), as the control plane that starts these has it
    if args.role == "container":
        handlers, model = load_container(args.model_dir, args.code_dir, args.program)
        mb = int(os.environ.get("SAGEMAKER_MAX_PAYLOAD_IN_MB", "6"))
        log.info("model loaded from %s", args.model_dir)
        _serve(RequestGuard(container_app(handlers, model, mb * 1024 * 1024), token), 0, args.port_file)
    else:
        _serve(RequestGuard(router_app(args.state_dir, args.account, token), token, credentials()), args.port,
               args.port_file, args.host)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
