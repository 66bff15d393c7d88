"""The streaming job's health rules and the endpoint client's retries, without processes."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from churn import scoring
from churn_ml.stream_job import assess

NOW = dt.datetime(2026, 7, 1, 12, 0, tzinfo=dt.UTC)


def progress(updated_seconds_ago=3.0, state="RUNNING", batches=None, in_rate=50.0, out_rate=60.0):
    batches = batches if batches is not None else [
        {"batch_id": i, "committed_at": (NOW - dt.timedelta(seconds=30 - i)).isoformat(), "duration_ms": 800,
         "input": 100, "scored": 99, "quarantined": 1, "unscored": 0, "latency_ms": {"p50": 900, "p99": 1500, "max": 1600},
         "arrival_lag_ms": {"p50": 800, "max": 1400}}
        for i in range(10)
    ]
    return {
        "state": state, "updated_at": (NOW - dt.timedelta(seconds=updated_seconds_ago)).isoformat(), "trigger_seconds": 1,
        "totals": {"batches": len(batches), "input": sum(b["input"] for b in batches)},
        "last_progress": {"inputRowsPerSecond": in_rate, "processedRowsPerSecond": out_rate},
        "recent_batches": batches, "error": None,
    }


def check(p, **kw):
    return assess(p, NOW, started_on=NOW - dt.timedelta(minutes=30), endpoint_modified=NOW - dt.timedelta(hours=1), **kw)


def test_a_steady_run_is_healthy_and_reports_its_figures():
    metrics, problems = check(progress())
    assert problems == []
    assert metrics["recent_error_rate"] == 0.01 and metrics["recent_latency_p99_ms_max"] == 1500
    assert metrics["scored_since_deployment"] is True


def test_each_symptom_is_named():
    assert "no progress for 300s" in check(progress(updated_seconds_ago=300))[1][0]
    assert "reports FAILED" in check(progress(state="FAILED"))[1][0]
    slow = progress()
    slow["recent_batches"][-1]["duration_ms"] = 90_000
    problems = check(slow, max_batch_seconds=60)[1]
    assert any("took 90s" in p for p in problems)
    behind = progress()
    for b in behind["recent_batches"][-3:]:
        b["arrival_lag_ms"] = {"p50": 200_000, "max": 250_000}
    assert any("falling behind its input" in p for p in check(behind)[1])
    burst = progress(in_rate=500, out_rate=100)  # one batch's input above its processing rate: a burst
    assert check(burst)[1] == [] and check(burst)[0]["input_rows_per_second"] == 500
    bad = progress()
    for b in bad["recent_batches"]:
        b["quarantined"] = 10
    assert "(10.0%) were quarantined" in check(bad)[1][0]


def test_no_progress_is_fine_while_starting_then_a_problem():
    metrics, problems = assess(None, NOW, started_on=NOW - dt.timedelta(seconds=30), endpoint_modified=None)
    assert metrics["state"] == "STARTING" and problems == []
    _, problems = assess(None, NOW, started_on=NOW - dt.timedelta(minutes=10), endpoint_modified=None)
    assert "no progress yet" in problems[0]


def test_a_deployment_after_the_last_batch_is_reported():
    metrics, _ = assess(progress(), NOW, started_on=NOW - dt.timedelta(hours=1), endpoint_modified=NOW)
    assert metrics["scored_since_deployment"] is False


class FlakyRuntime:
    """Fails ``failures`` times with ``error``, then answers with one score per line."""

    def __init__(self, failures, error):
        self.failures, self.error, self.calls = failures, error, 0

    def invoke_endpoint(self, **request):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        lines = request["Body"].splitlines()
        return {"Body": io.BytesIO("".join(f"{row.split(',')[0]},0.500000\n" for row in lines).encode())}


def client_error(code, status, original=None):
    response = {"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    if original:
        response["OriginalStatusCode"] = original
    return ClientError(response, "InvokeEndpoint")


def test_an_unreachable_endpoint_is_waited_out_then_given_up_on_within_the_bound():
    down = FlakyRuntime(3, EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert scoring.invoke(down, "e", "a,1\n", max_wait_seconds=60, sleep=lambda s: None) == "a,0.500000\n"
    assert down.calls == 4
    gone = FlakyRuntime(10**6, client_error("ServiceUnavailable", 503))
    with pytest.raises(scoring.EndpointUnavailable, match="did not answer for 0s"):
        scoring.invoke(gone, "e", "a,1\n", max_wait_seconds=0, sleep=lambda s: None)


def test_a_bad_request_is_not_retried():
    bad = FlakyRuntime(1, client_error("ModelError", 424, original=400))
    with pytest.raises(ClientError):
        scoring.invoke(bad, "e", "a,1\n", max_wait_seconds=60, sleep=lambda s: None)
    assert bad.calls == 1
