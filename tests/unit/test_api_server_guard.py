"""The api-server guard (plugins/churn_ml/api_server_guard.py) on a small Starlette app, no Airflow server:
what it lets through, what it refuses and how, and that the plugin is inert without its variable."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from churn_ml import api_server_guard as guard

HOSTS = ["127.0.0.1:8080", "localhost:8080"]


@pytest.fixture()
def served():
    """A client of the guarded app, and the list of requests that reached the app."""
    reached: list[str] = []

    async def handler(request):
        reached.append(f"{request.method} {request.url.path}")
        return PlainTextResponse("ok")

    async def socket(websocket: WebSocket):
        reached.append("websocket")
        await websocket.accept()
        await websocket.send_text("ok")
        await websocket.close()

    app = Starlette(routes=[Route("/api/v2/dags/d/dagRuns", handler, methods=["GET", "POST", "OPTIONS"]),
                            Route("/", handler), WebSocketRoute("/ws", socket)])
    client = TestClient(guard.LoopbackRequestGuard(app, allowed_hosts=HOSTS), base_url="http://127.0.0.1:8080")
    with client:  # runs the app's lifespan through the guard
        yield client, reached


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost:8080", "LOCALHOST:8080"])
def test_its_own_hosts_without_origin_reach_the_app(served, host):
    client, reached = served
    answer = client.post("/api/v2/dags/d/dagRuns", headers={"host": host}, json={})
    assert answer.status_code == 200 and answer.text == "ok"
    assert reached == ["POST /api/v2/dags/d/dagRuns"]


@pytest.mark.parametrize("host", ["rebind.example:8080", "127.0.0.1:8081", "localhost", "127.0.0.1", "",
                                  "127.0.0.1:8080.rebind.example"])
def test_a_foreign_host_is_refused_before_the_app(served, host):
    client, reached = served
    answer = client.post("/api/v2/dags/d/dagRuns", headers={"host": host}, json={})
    assert answer.status_code == 403, answer.text
    assert "is not this server's" in answer.text and "127.0.0.1:8080, localhost:8080" in answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    assert "access-control-allow-origin" not in answer.headers
    assert reached == []


def test_its_own_origin_is_allowed(served):
    client, reached = served
    for host in HOSTS:
        answer = client.post("/api/v2/dags/d/dagRuns", headers={"host": host, "origin": f"http://{host}",
                                                                 "sec-fetch-site": "same-origin"})
        assert answer.status_code == 200, answer.text
    assert len(reached) == 2


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:9999", "http://localhost:8080",
                                    "https://127.0.0.1:8080", "null"])
def test_another_origin_is_refused(served, origin):
    client, reached = served
    for method in ("GET", "POST", "OPTIONS"):  # a CORS read, a form or fetch POST, a preflight
        answer = client.request(method, "/api/v2/dags/d/dagRuns", headers={"origin": origin})
        assert answer.status_code == 403, (method, answer.text)
        assert f"Origin {origin!r} is not this server's own (http://127.0.0.1:8080)" in answer.text
        assert not any(name.startswith("access-control-") for name in answer.headers)
    assert reached == []


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_a_request_the_browser_marks_as_another_sites_is_refused(served, site):
    client, reached = served
    # A no-cors fetch or an <img>/<script> carries no Origin on GET; a frame is a navigation, but not a tab's.
    for headers in ({"sec-fetch-mode": "no-cors", "sec-fetch-dest": "empty"},
                    {"sec-fetch-mode": "navigate", "sec-fetch-dest": "iframe"},
                    {"sec-fetch-mode": "no-cors", "sec-fetch-dest": "image"}):
        answer = client.get("/", headers={"sec-fetch-site": site, **headers})
        assert answer.status_code == 403 and f"Sec-Fetch-Site: {site}" in answer.text, (headers, answer.text)
    # A form POST navigates the tab, but it is not a GET.
    answer = client.post("/", headers={"sec-fetch-site": site, "sec-fetch-mode": "navigate",
                                       "sec-fetch-dest": "document"})
    assert answer.status_code == 403
    assert reached == []


def test_opening_a_page_from_a_link_elsewhere_is_allowed(served):
    client, reached = served
    answer = client.get("/", headers={"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate",
                                      "sec-fetch-dest": "document"})
    assert answer.status_code == 200
    answer = client.get("/", headers={"sec-fetch-site": "none", "sec-fetch-mode": "navigate",
                                      "sec-fetch-dest": "document"})  # typed into the address bar
    assert answer.status_code == 200
    assert reached == ["GET /", "GET /"]


def test_a_websocket_from_a_foreign_host_is_closed_unopened(served):
    client, reached = served
    with pytest.raises(WebSocketDisconnect) as closed:
        with client.websocket_connect("/ws", headers={"host": "rebind.example:8080"}):
            pass
    assert closed.value.code == 1008
    with client.websocket_connect("/ws", headers={"host": "127.0.0.1:8080"}) as socket:
        assert socket.receive_text() == "ok"
    assert reached == ["websocket"]


def test_a_repeated_host_is_judged_by_its_first_value_as_the_app_reads_it():
    import asyncio

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def status(hosts: list[bytes]) -> int:
        sent = []

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"host", h) for h in hosts]}
        await guard.LoopbackRequestGuard(app, allowed_hosts=HOSTS)(scope, None, send)
        return sent[0]["status"]

    assert asyncio.run(status([b"rebind.example:8080", b"127.0.0.1:8080"])) == 403
    assert asyncio.run(status([b"127.0.0.1:8080", b"rebind.example:8080"])) == 200


def test_the_default_http_port_may_be_left_out():
    app = guard.LoopbackRequestGuard(Starlette(routes=[Route("/", lambda r: PlainTextResponse("ok"))]),
                                     allowed_hosts=["127.0.0.1:80"])
    client = TestClient(app, base_url="http://127.0.0.1")
    assert client.get("/", headers={"host": "127.0.0.1"}).status_code == 200
    assert client.get("/", headers={"host": "127.0.0.1:80"}).status_code == 200
    assert client.get("/", headers={"host": "127.0.0.1:81"}).status_code == 403


def test_the_guard_needs_hosts():
    with pytest.raises(ValueError, match="needs the host:port names"):
        guard.LoopbackRequestGuard(Starlette(), allowed_hosts=[" "])


def test_the_plugin_registers_the_guard_only_when_the_local_stack_names_its_hosts():
    from airflow.plugins_manager import is_valid_plugin

    assert is_valid_plugin(guard.ChurnApiServerGuardPlugin)
    assert guard.root_middlewares({}) == []  # MWAA: the file ships in plugins.zip, the variable is not set
    assert guard.root_middlewares({guard.HOSTS_VARIABLE: " , "}) == []
    (entry,) = guard.root_middlewares({guard.HOSTS_VARIABLE: "127.0.0.1:8080, localhost:8080"})
    assert entry["middleware"] is guard.LoopbackRequestGuard
    assert entry["kwargs"] == {"allowed_hosts": HOSTS}
