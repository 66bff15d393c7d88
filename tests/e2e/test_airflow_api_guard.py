"""A web page cannot drive the local stack's Airflow api-server (security review, issue 23).

The stack runs with no login (every user an admin), so the api-server refuses what a browser page of
another site can send it (plugins/churn_ml/api_server_guard.py): a foreign Host (DNS rebinding), a
foreign Origin, a request the browser marks as cross-site. Here, on a stack of its own started by
``scripts/stack.sh start`` (Airflow and PostgreSQL only, no pipeline run: about a minute; the DAGs stay
paused, so a run created stays queued): plain HTTP requests with and without those headers; a page
served from another origin, opened in headless Chromium, that tries to get a token, read the runs
and trigger one (fetch with and without a CORS preflight, form POSTs); and a page whose name
resolves to 127.0.0.1, as after DNS rebinding. No run is created by any of them, no page reads a
token; the same request a program sends (no Origin) does create the run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from e2e.stack import REPO, Airflow, stack_env
from support import chromium, free_port, serve_page

pytestmark = pytest.mark.e2e
DAG = "churn_features"
RUNS = f"/api/v2/dags/{DAG}/dagRuns"
REBOUND = "rebind.test"  # Chromium resolves it to 127.0.0.1 (--host-resolver-rules), as after DNS rebinding
ATTACKER = "attacker.test"


@pytest.fixture(scope="module")
def api():
    """scripts/stack.sh start in a folder of its own; stopped (and checked stopped) after the module."""
    work = Path(tempfile.mkdtemp(prefix="churn-e2e-api-"))
    work.chmod(0o755)  # PostgreSQL runs as the user postgres when the tests run as root
    env = stack_env(work, free_port(), free_port(), free_port())
    try:
        start = subprocess.run(["bash", "scripts/stack.sh", "start"], cwd=REPO, env=env, capture_output=True,
                               text=True, timeout=900)
        assert start.returncode == 0, f"scripts/stack.sh start failed:\n{start.stdout[-3000:]}\n{start.stderr[-3000:]}"
        port = int(env["CHURN_AIRFLOW_PORT"])
        client = Airflow(f"http://127.0.0.1:{port}")
        client.wait_for_dag(DAG)
        yield {"port": port, "base": f"http://127.0.0.1:{port}", "client": client,
               "log": work / "airflow/stack-logs/api-server.log"}
    finally:
        stop = subprocess.run(["bash", "scripts/stack.sh", "stop"], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=300)
        leftover = subprocess.run(["pgrep", "-af", str(work)], capture_output=True, text=True).stdout
        if stop.returncode == 0 and not leftover.strip():
            shutil.rmtree(work, ignore_errors=True)
        assert stop.returncode == 0, f"scripts/stack.sh stop failed:\n{stop.stdout}\n{stop.stderr}"
        assert not leftover.strip(), f"processes left behind after scripts/stack.sh stop:\n{leftover}"


@pytest.fixture(scope="module")
def browser():
    session = chromium(f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1, MAP {ATTACKER} 127.0.0.1",
                       "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable")
    yield session
    session.quit()


def _refused(answer: httpx.Response, what: str) -> None:
    assert answer.status_code == 403, f"{what}: expected 403, got {answer.status_code}: {answer.text[:300]}"
    assert "access_token" not in answer.text
    assert not [h for h in answer.headers if h.startswith("access-control-")], f"{what}: CORS headers {answer.headers}"


def _access_log(api: dict, since: int) -> list[tuple[str, str, int]]:
    """(method, path, status) of the api-server's access log lines written after byte ``since``."""
    text = api["log"].read_bytes()[since:].decode(errors="replace")
    found = []
    for line in text.splitlines():
        if "request finished" not in line:
            continue
        fields = dict(re.findall(r"(method|path|status_code)=(\S+)", line))
        if len(fields) == 3:
            found.append((fields["method"], fields["path"], int(fields["status_code"])))
    return found


def test_plain_requests_need_the_servers_own_host_and_no_foreign_origin(api):
    port, base = api["port"], api["base"]
    with httpx.Client(base_url=base, timeout=30) as http:
        for host in (f"{REBOUND}:{port}", f"{REBOUND}", f"127.0.0.1.{REBOUND}:{port}", f"127.0.0.1:{port + 1}"):
            for method, path in (("GET", "/auth/token"), ("GET", "/api/v2/monitor/health"), ("GET", "/"),
                                 ("POST", RUNS), ("GET", "/execution/health")):
                answer = http.request(method, path, headers={"Host": host}, json={"logical_date": None})
                _refused(answer, f"{method} {path} with Host {host}")
                assert f"Host {host!r} is not this server's" in answer.text
        for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
            token = http.get("/auth/token", headers={"Host": host})
            assert token.status_code == 201 and token.json()["access_token"], token.text
            assert http.get("/api/v2/monitor/health", headers={"Host": host}).status_code == 200
            assert http.get("/execution/health", headers={"Host": host}).status_code == 200  # the tasks' API
            assert "<html" in http.get("/", headers={"Host": host}).text.lower()  # the UI
        own = {"Origin": base, "Sec-Fetch-Site": "same-origin"}  # what the UI's own requests carry
        assert http.get("/auth/token", headers=own).status_code == 201
        for origin in ("http://evil.example", f"http://localhost:{port}", "null"):
            _refused(http.get("/auth/token", headers={"Origin": origin}), f"GET /auth/token from {origin}")
            _refused(http.post(RUNS, headers={"Origin": origin}, json={"logical_date": None}), f"POST from {origin}")
            preflight = http.options(RUNS, headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                                    "Access-Control-Request-Headers": "content-type"})
            _refused(preflight, f"the preflight from {origin}")
        _refused(http.get("/auth/token", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}),
                 "a cross-site no-cors GET")
    assert api["client"].runs(DAG) == []


def test_the_ui_still_works_at_both_of_its_names(api, browser):
    """The UI's own requests (same origin: Origin and Sec-Fetch-Site of its own) pass, at 127.0.0.1 and at localhost."""
    from selenium.webdriver.common.by import By

    for host in ("127.0.0.1", "localhost"):
        browser.get(f"http://{host}:{api['port']}/dags")
        deadline, text = time.monotonic() + 60, ""
        while DAG not in text and time.monotonic() < deadline:
            time.sleep(0.5)
            text = browser.find_element(By.TAG_NAME, "body").text
        assert DAG in text and "Dags" in text, f"the UI at {host} does not list {DAG}:\n{text[:1500]}"


# The attacker's page: everything a page of another origin can try without the user doing anything.
PAGE = """<!doctype html><html><body><h1>another site</h1>
<iframe name="form1"></iframe><iframe name="form2"></iframe>
<form id="urlencoded" method="post" target="form1" action="__API____RUNS__">
  <input name="logical_date" value=""><input name="dag_run_id" value="from_page_form"></form>
<form id="plain" method="post" target="form2" enctype="text/plain" action="__API____RUNS__">
  <input name='{"dag_run_id": "from_page_plain", "logical_date": null, "note": "' value='"}'></form>
<script>
const API = "__API__", RUNS = "__RUNS__";
const body = JSON.stringify({dag_run_id: "from_page_fetch", logical_date: null});
window.results = {};
async function attempt(name, request) {
  try { window.results[name] = await request(); } catch (err) { window.results[name] = "error: " + err; }
}
function submitted(form, frame) {
  return new Promise(resolve => {
    document.querySelector(`iframe[name=${frame}]`).addEventListener("load", () => resolve("loaded"), {once: true});
    document.getElementById(form).submit();
    setTimeout(() => resolve("no load within 10 s"), 10000);
  });
}
(async () => {
  await attempt("token", async () => { const r = await fetch(API + "/auth/token"); return "read " + await r.text(); });
  await attempt("token_no_cors", async () => {
    const r = await fetch(API + "/auth/token", {mode: "no-cors"});
    return `${r.type} status=${r.status} body=${JSON.stringify(await r.text())}`;
  });
  await attempt("runs", async () => { const r = await fetch(API + RUNS); return "read " + await r.text(); });
  await attempt("trigger_preflight", async () => {
    const r = await fetch(API + RUNS, {method: "POST", headers: {"Content-Type": "application/json"}, body});
    return "read " + r.status + " " + await r.text();
  });
  await attempt("trigger_no_preflight", async () => {  // a Blob without a type: no Content-Type, no preflight
    const r = await fetch(API + RUNS, {method: "POST", mode: "no-cors", body: new Blob([body])});
    return `${r.type} status=${r.status}`;
  });
  await attempt("form_urlencoded", () => submitted("urlencoded", "form1"));
  await attempt("form_plain", () => submitted("plain", "form2"));
  window.results.done = true;
})();
</script></body></html>
"""


def _results(browser, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        results = browser.execute_script("return window.results || {}")
        if results.get("done") or time.monotonic() > deadline:
            return results
        time.sleep(0.5)


@pytest.mark.parametrize("page_host", ["127.0.0.1", ATTACKER])  # same site, another port; another site
def test_a_page_of_another_origin_cannot_get_a_token_read_runs_or_trigger_one(api, browser, page_host):
    server = serve_page(PAGE.replace("__API__", api["base"]).replace("__RUNS__", RUNS))
    page_port = server.server_address[1]
    since = api["log"].stat().st_size
    try:
        browser.get(f"http://{page_host}:{page_port}/")
        results = _results(browser)
    finally:
        server.shutdown()
        server.server_close()
    assert results.get("done"), f"the page's attempts did not finish: {results}"
    print(f"\nthe page at http://{page_host}:{page_port} saw: {json.dumps(results, indent=1)}")
    # Whatever a CORS read asks, the browser gives the page nothing (no CORS headers): fetch fails.
    for name in ("token", "runs", "trigger_preflight"):
        assert results[name].startswith("error: TypeError"), f"{name}: the page read an answer: {results[name]}"
    assert results["token_no_cors"] == 'opaque status=0 body=""', results["token_no_cors"]
    assert results["trigger_no_preflight"] == "opaque status=0", results["trigger_no_preflight"]
    assert results["form_urlencoded"] == "loaded" and results["form_plain"] == "loaded", results
    # The requests did arrive, and the api-server refused each one (the preflight stopped the JSON POST).
    seen = _access_log(api, since)
    refused = {(m, p) for m, p, status in seen if status == 403}
    expected = {("GET", "/auth/token"), ("GET", RUNS), ("OPTIONS", RUNS), ("POST", RUNS)}
    assert expected <= refused, f"expected these refused (403) in the api-server's access log: {expected}; saw {seen}"
    assert not [s for s in seen if s[2] < 400], f"the api-server answered the page: {seen}"
    assert api["client"].runs(DAG) == [], "a page of another origin created a DAG run"


def test_a_page_on_a_rebound_name_gets_nothing(api, browser):
    """DNS rebinding: a page of ``rebind.test`` whose name now resolves to 127.0.0.1. The browser deems the
    api-server's answers same-origin, so only the Host check stands between the page and the API."""
    port = api["port"]
    browser.get(f"http://{REBOUND}:{port}/")
    from selenium.webdriver.common.by import By

    text = browser.find_element(By.TAG_NAME, "body").text
    assert f"Host '{REBOUND}:{port}' is not this server's" in text, text[:500]
    script = """
const done = arguments[arguments.length - 1], out = {};
(async () => {
  for (const [name, path, init] of [
      ["token", "/auth/token", {}],
      ["runs", "__RUNS__", {}],
      ["trigger", "__RUNS__", {method: "POST", headers: {"Content-Type": "application/json"},
                               body: JSON.stringify({dag_run_id: "from_rebound_page", logical_date: null})}]]) {
    try { const r = await fetch(path, init); out[name] = [r.status, await r.text()]; }
    catch (err) { out[name] = [0, "error: " + err]; }
  }
  done(out);
})();
""".replace("__RUNS__", RUNS)
    out = browser.execute_async_script(script)
    for name, (status, body) in out.items():
        assert status == 403 and "is not this server's" in body, f"{name}: {status} {body[:300]}"
        assert "access_token" not in body
    assert api["client"].runs(DAG) == [], "the rebound page created a DAG run"


def test_the_same_trigger_from_a_program_creates_the_run(api):
    """The control: the request the pages sent (the preflighted fetch's, the rebound page's), without an Origin,
    from a program on this machine and with no token (every user an admin), does create the run: the refusals
    above are the guard's, not a wrong request or a missing DAG."""
    answer = httpx.post(api["base"] + RUNS, json={"dag_run_id": "from_a_program", "logical_date": None}, timeout=30)
    assert answer.status_code == 200, answer.text
    runs = api["client"].runs(DAG)
    assert [r["dag_run_id"] for r in runs] == ["from_a_program"], runs
