"""DAG runs through the local stack's scheduler, driven over Airflow's REST API (``/api/v2``).

``make run`` uses it to run each DAG of the batch chain for the sample's date as a real DAG run:
unpause the DAG, trigger a run for the logical date (or, when that date already has a run, clear it
so the scheduler runs it again: a rerun of the date), then wait and print each task's state as it
changes. The tests use the same client to read runs and task states.

    python scripts/airflow_runs.py run churn_features --logical-date 2026-07-02 --conf '{"history_days": 150}'
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

FINISHED = ("success", "failed")


class AirflowError(RuntimeError):
    """The API refused a request, or a run did not finish as expected; the message says which."""


class Airflow:
    """A small client of the api-server of ``scripts/stack.sh`` (every user an admin, loopback only)."""

    def __init__(self, base_url: str | None = None, timeout: float = 30.0) -> None:
        port = os.environ.get("CHURN_AIRFLOW_PORT", "8080")
        self.base_url = (base_url or f"http://127.0.0.1:{port}").rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._token: str | None = None

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            try:
                answer = self._http.get("/auth/token")
            except httpx.ConnectError as err:
                raise AirflowError(f"no Airflow api-server answers on {self.base_url}: start it with scripts/stack.sh start") from err
            answer.raise_for_status()
            self._token = answer.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def request(self, method: str, path: str, **kwargs) -> dict:
        answer = self._http.request(method, f"/api/v2{path}", headers=self._headers(), **kwargs)
        if answer.status_code >= 400:
            raise AirflowError(f"{method} /api/v2{path} answered {answer.status_code}: {answer.text[:500]}")
        return answer.json() if answer.content else {}

    # --- reads --------------------------------------------------------------------------------

    def dags(self) -> list[dict]:
        return self.request("GET", "/dags", params={"limit": 100})["dags"]

    def import_errors(self) -> list[dict]:
        return self.request("GET", "/importErrors")["import_errors"]

    def runs(self, dag_id: str) -> list[dict]:
        return self.request("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100, "order_by": "logical_date"})["dag_runs"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def run_for(self, dag_id: str, logical_date: str) -> dict | None:
        """The run of ``logical_date`` (YYYY-MM-DD, at midnight UTC), if there is one."""
        day = _midnight(logical_date)
        runs = self.request("GET", f"/dags/{dag_id}/dagRuns",
                            params={"logical_date_gte": day, "logical_date_lte": day, "limit": 10})["dag_runs"]
        found = [r for r in runs if r.get("logical_date") and _same_instant(r["logical_date"], day)]
        return found[-1] if found else None

    def wait_for_dag(self, dag_id: str, timeout: float = 300) -> None:
        """Wait until the dag-processor has parsed ``dag_id`` (a fresh stack needs a few seconds)."""
        deadline = time.monotonic() + timeout
        while not any(d["dag_id"] == dag_id for d in self.dags()):
            errors = self.import_errors()
            if errors:
                raise AirflowError(f"{dag_id} is not loaded; import errors: {errors}")
            if time.monotonic() > deadline:
                raise AirflowError(f"{dag_id} was not parsed within {timeout:.0f} s: see the dag-processor's log")
            time.sleep(2)

    def backfills(self, dag_id: str) -> list[dict]:
        return self.request("GET", "/backfills", params={"dag_id": dag_id, "limit": 100})["backfills"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        tis = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
        return {ti["task_id"]: ti["state"] for ti in tis["task_instances"]}

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")

    def event_logs(self, dag_id: str, run_id: str, task_id: str, event: str) -> list[dict]:
        """The audit log's ``event`` entries of one task instance (as *Audit Log* in the UI)."""
        params = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "event": event, "limit": 100}
        return self.request("GET", "/eventLogs", params=params)["event_logs"]

    # --- writes -------------------------------------------------------------------------------

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, logical_date: str, conf: dict | None = None) -> str:
        run = self.request(
            "POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": _midnight(logical_date), "conf": conf or {}}
        )
        return run["dag_run_id"]

    def clear_run(self, dag_id: str, run_id: str) -> None:
        """Clear every task of the run (as *Clear* on a run in the UI): the scheduler runs it again."""
        self.request("POST", f"/dags/{dag_id}/dagRuns/{run_id}/clear", json={"dry_run": False})

    # --- waiting ------------------------------------------------------------------------------

    def wait(
        self, dag_id: str, run_id: str, *, timeout: float = 3600, poll: float = 2.0,
        progress: Callable[[str], None] | None = None,
    ) -> dict:
        """Poll until the run finishes; report each task's state when it changes. Returns the run."""
        seen: dict[str, str | None] = {}
        started = time.monotonic()
        while True:
            run = self.run(dag_id, run_id)
            states = self.task_states(dag_id, run_id)
            for task_id, state in states.items():
                if progress and state != seen.get(task_id) and state not in (None, "scheduled", "queued"):
                    progress(f"    {time.monotonic() - started:6.0f}s  {task_id:<28} {state}")
            seen = states
            if run["state"] in FINISHED:
                return run
            if time.monotonic() - started > timeout:
                raise AirflowError(f"{dag_id} run {run_id} still {run['state']} after {timeout:.0f} s: {states}")
            time.sleep(poll)


def _midnight(day: str) -> str:
    return day if "T" in day else f"{day}T00:00:00+00:00"


def _same_instant(a: str, b: str) -> bool:
    from datetime import datetime

    return datetime.fromisoformat(a.replace("Z", "+00:00")) == datetime.fromisoformat(b.replace("Z", "+00:00"))


def task_log(dag_id: str, run_id: str, task_id: str) -> Path | None:
    """The newest attempt's log file of a task (the local stack writes logs under AIRFLOW_HOME/logs)."""
    folder = Path(os.environ.get("AIRFLOW__LOGGING__BASE_LOG_FOLDER", Path(os.environ["AIRFLOW_HOME"]) / "logs"))
    # attempt=N.log; a deferred attempt also has attempt=N.log.trigger.M.log (the trigger's own).
    attempts = sorted(
        (p for p in (folder / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}").glob("attempt=*.log")
         if re.fullmatch(r"attempt=\d+\.log", p.name)),
        key=lambda p: int(p.stem.split("=")[1]),
    )
    return attempts[-1] if attempts else None


def run_dag(client: Airflow, dag_id: str, logical_date: str, conf: dict, timeout: float) -> dict:
    """Run ``dag_id`` for ``logical_date`` through the scheduler and wait; raise unless it succeeded."""
    client.wait_for_dag(dag_id)
    client.unpause(dag_id)
    existing = client.run_for(dag_id, logical_date)
    if existing is None:
        run_id = client.trigger(dag_id, logical_date, conf)
        print(f"    triggered {dag_id} {run_id}", flush=True)
    else:
        run_id = existing["dag_run_id"]
        if existing["state"] not in FINISHED:
            print(f"    {dag_id} {run_id} is already {existing['state']}: waiting for it", flush=True)
        else:
            if conf and existing.get("conf") != conf:
                print(f"    note: the run keeps its conf {existing.get('conf')}, not {conf}: clearing reruns a run as it was",
                      flush=True)
            client.clear_run(dag_id, run_id)
            print(f"    {dag_id} {logical_date} has run before ({existing['state']}): cleared {run_id} to rerun it", flush=True)
    run = client.wait(dag_id, run_id, timeout=timeout, progress=lambda line: print(line, flush=True))
    if run["state"] != "success":
        states = client.task_states(dag_id, run_id)
        failed = [t for t, s in states.items() if s in ("failed", "upstream_failed")]
        lines = [f"{dag_id} run {run_id} {run['state']}: {', '.join(f'{t} {states[t]}' for t in failed)}"]
        for task_id in failed:
            path = task_log(dag_id, run_id, task_id)
            if path and states[task_id] == "failed":
                lines.append(f"--- {task_id}: {path}")
                lines.extend(path.read_text(errors="replace").splitlines()[-30:])
        raise AirflowError("\n".join(lines))
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a DAG for a logical date through the scheduler and wait for it")
    run.add_argument("dag_id")
    run.add_argument("--logical-date", required=True, help="YYYY-MM-DD")
    run.add_argument("--conf", default="{}", help="the run's conf (JSON)")
    run.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the run")
    args = parser.parse_args(argv)
    try:
        run_dag(Airflow(), args.dag_id, args.logical_date, json.loads(args.conf), args.timeout)
    except AirflowError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
