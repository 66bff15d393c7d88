"""The local stack's Airflow api-server refuses what a web page of another origin can send it (issue 23).

scripts/stack.sh runs the api-server on 127.0.0.1 with no login (SimpleAuthManager, every user an
admin), and a web page open in the developer's browser can reach 127.0.0.1 as well: by DNS
rebinding (a name of the page's own that then resolves to 127.0.0.1, so the browser deems the
api-server's answers same-origin and lets the page read them and send it anything: get a token,
read logs, trigger runs) and by cross-origin requests, which reach the handlers whether or not the
page may read the answer (form POSTs and ``fetch`` in no-cors mode need no CORS preflight). This
ASGI middleware, on the api-server's root app (the UI, ``/api/v2``, ``/auth`` and the tasks'
Execution API under ``/execution``), answers 403 before any route handler runs (Airflow's own
middlewares wrap it: its access log records the refusals) to:

- a ``Host`` that is not one of ``CHURN_AIRFLOW_API_HOSTS`` (scripts/env.sh sets
  ``127.0.0.1:<port>,localhost:<port>``): DNS rebinding sends the page's own name;
- an ``Origin`` other than the request's own (``http://<Host>``): every CORS request and every
  cross-origin POST carries one; the UI's own requests carry its own;
- a request the browser marks as another origin's (``Sec-Fetch-Site: cross-site`` or ``same-site``),
  unless it opens a page in a tab (a GET navigation of a document, e.g. a link to a run): this
  covers the cross-origin GETs that carry no Origin (``fetch`` in no-cors mode, images, scripts, frames).

It adds no CORS headers (Airflow adds them only when ``[api] access_control_allow_origins`` is
set, which scripts/env.sh does not), so no page of another origin can read an answer either.
Programs (the task processes, scripts/airflow_runs.py, curl) send neither Origin nor Sec-Fetch-*.

Inert unless ``CHURN_AIRFLOW_API_HOSTS`` is set: on MWAA, where this file ships in plugins.zip, the
plugin registers no middleware. Imports nothing beyond Airflow's plugin base class.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from airflow.plugins_manager import AirflowPlugin

HOSTS_VARIABLE = "CHURN_AIRFLOW_API_HOSTS"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _host_key(host: str) -> str:
    """Lower case, without the default port (a browser omits ``:80``)."""
    host = host.strip().lower()
    return host.removesuffix(":80")


class LoopbackRequestGuard:
    """ASGI middleware: 403 to a foreign Host, a foreign Origin, or a browser request from another origin."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str]) -> None:
        hosts = list(allowed_hosts)
        self.app = app
        self.allowed = frozenset(_host_key(h) for h in hosts if h.strip())
        if not self.allowed:
            raise ValueError(f"LoopbackRequestGuard needs the host:port names the server answers to "
                             f"(e.g. 127.0.0.1:8080,localhost:8080); got {hosts!r}")

    def refusal(self, method: str, headers: dict[str, str]) -> str | None:
        """Why the request is refused, or None. ``headers``: lower-case names."""
        host = headers.get("host", "")
        if _host_key(host) not in self.allowed:
            return (f"Host {host[:100]!r} is not this server's: the local stack's Airflow answers only to "
                    f"{', '.join(sorted(self.allowed))} (another name that points at 127.0.0.1 is how a web "
                    f"page reaches a local server: DNS rebinding). Open the UI or call the API at one of those "
                    f"({HOSTS_VARIABLE}, set by scripts/env.sh).")
        origin = headers.get("origin")
        if origin is not None and origin.lower() != f"http://{host.lower()}":
            return (f"Origin {origin[:100]!r} is not this server's own (http://{host}): the local stack's Airflow "
                    f"has no login, so it answers no page of another origin. Open the UI at http://{host}/ "
                    f"or call the API from a program (no Origin header).")
        site = headers.get("sec-fetch-site", "none")
        if site not in ("same-origin", "none"):
            navigation = (method in ("GET", "HEAD") and headers.get("sec-fetch-mode") == "navigate"
                          and headers.get("sec-fetch-dest") == "document")
            if not navigation:
                return (f"the browser marks this request as sent by a page of another origin (Sec-Fetch-Site: {site[:40]}): "
                        f"the local stack's Airflow has no login, so only its own pages may call it. "
                        f"Open the UI at http://{host}/.")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        for name, value in scope.get("headers", []):  # the first of repeated headers, as Starlette reads them
            headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        reason = self.refusal(scope.get("method", "GET"), headers)
        if reason is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": reason[:120]})
        else:
            body = f"403 Forbidden: {reason}\n".encode()
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                    (b"content-length", str(len(body)).encode()),
                                    (b"x-content-type-options", b"nosniff")]})
            await send({"type": "http.response.body", "body": body})


def root_middlewares(environ: Mapping[str, str] = os.environ) -> list[dict[str, Any]]:
    """The plugin's ``fastapi_root_middlewares``: the guard when ``CHURN_AIRFLOW_API_HOSTS`` names hosts, else none."""
    hosts = [h.strip() for h in environ.get(HOSTS_VARIABLE, "").split(",") if h.strip()]
    if not hosts:
        return []
    return [{"middleware": LoopbackRequestGuard, "kwargs": {"allowed_hosts": hosts},
             "name": "churn loopback request guard"}]


class ChurnApiServerGuardPlugin(AirflowPlugin):
    """Registers :class:`LoopbackRequestGuard` on the api-server when the local stack asks for it."""

    name = "churn_api_server_guard"
    fastapi_root_middlewares = root_middlewares()
