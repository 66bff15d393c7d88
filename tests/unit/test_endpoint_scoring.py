"""Scoring through the endpoint (churn.scoring): scores matched to rows by position, and a request the
model rejects split until the rows it rejects are alone (the streaming job quarantines those)."""

from __future__ import annotations

import io

import pytest
from botocore.exceptions import ClientError

from churn import scoring


def model_error(status: int, message: str = "bad row") -> ClientError:
    """What SageMaker (and the local router) answer when the container returns ``status``."""
    return ClientError({"Error": {"Code": "ModelError", "Message": f"Received client error ({status})"},
                        "ResponseMetadata": {"HTTPStatusCode": 424}, "OriginalStatusCode": status,
                        "OriginalMessage": message}, "InvokeEndpoint")


class Runtime:
    """An endpoint that echoes ids the way a CSV parser may (``nan`` empty, blanks stripped) and
    rejects, with ``status``, any request holding a row whose id starts with ``bad``."""

    def __init__(self, status: int = 400) -> None:
        self.status, self.requests = status, []

    def invoke_endpoint(self, **request):
        rows = request["Body"].splitlines()
        self.requests.append(len(rows))
        if any(row.startswith("bad") for row in rows):
            raise model_error(self.status, "CSV field 2 of line 1 has the non-numeric value 'x'")
        echoed = ["" if r.split(",")[0] == "nan" else r.split(",")[0].strip() for r in rows]
        return {"Body": io.BytesIO("".join(f"{i},{float(r.split(',')[1]) / 10:.6f}\n"
                                           for i, r in zip(echoed, rows)).encode())}


def test_scores_are_matched_by_position_not_by_the_echoed_id():
    lines = ["nan,1", "E1,2", "E1,3", " E2,4"]  # an id echoed empty, one id twice, one echoed stripped
    scores, rejected = scoring.score_rows(Runtime(), "e", lines, scoring.RejectionBudget(10, "e"))
    assert scores == [0.1, 0.2, 0.3, 0.4] and rejected == {}


def test_a_rejected_request_is_split_until_the_bad_rows_are_alone():
    runtime = Runtime()
    lines = [f"E{i},{i}" for i in range(16)]
    lines[5], lines[12] = "bad5,x", "bad12,x"
    budget = scoring.RejectionBudget(10, "e")
    scores, rejected = scoring.score_rows(runtime, "e", lines, budget)
    assert sorted(rejected) == [5, 12] and "non-numeric" in rejected[5]
    assert [s for i, s in enumerate(scores) if i not in (5, 12)] == [i / 10 for i in range(16) if i not in (5, 12)]
    assert scores[5] is None and scores[12] is None and budget.count == 2
    assert len(runtime.requests) <= 2 * 2 * 4 + 1, f"{len(runtime.requests)} requests for 2 bad rows of 16"


def test_a_model_that_rejects_every_row_fails_the_batch_within_the_budget():
    runtime = Runtime()
    lines = [f"bad{i},1" for i in range(500)]
    with pytest.raises(scoring.TooManyRejections, match="rejected more than 3 rows"):
        scoring.score_rows(runtime, "e", lines, scoring.RejectionBudget(3, "e"))
    assert len(runtime.requests) < 40, "the search stopped once the budget was spent"


def test_a_container_failure_is_retried_as_transient():
    class Recovering:
        calls = 0

        def invoke_endpoint(self, **request):
            self.calls += 1
            if self.calls == 1:
                raise model_error(500, "worker died")
            return {"Body": io.BytesIO(b"a,0.500000\n")}

    runtime = Recovering()
    scores, rejected = scoring.score_rows(runtime, "e", ["a,1"], scoring.RejectionBudget(10, "e"),
                                         max_wait_seconds=60)
    assert scores == [0.5] and rejected == {} and runtime.calls == 2


@pytest.mark.parametrize("error", [
    model_error(500),  # the container failed: not about a row (retried until the wait runs out)
    ClientError({"Error": {"Code": "ValidationError", "Message": "Endpoint e not found."},
                 "ResponseMetadata": {"HTTPStatusCode": 400}}, "InvokeEndpoint"),  # a 4xx about the endpoint
])
def test_errors_not_about_the_rows_are_not_bisected(error):
    class Failing:
        calls = 0

        def invoke_endpoint(self, **_):
            self.calls += 1
            raise error

    runtime = Failing()
    with pytest.raises((ClientError, scoring.EndpointUnavailable)):
        scoring.score_rows(runtime, "e", ["a,1", "b,2"], scoring.RejectionBudget(10, "e"), max_wait_seconds=0)
    assert runtime.calls == 1, "one request, not one per half"
    assert scoring.rejection(error) is None


def test_an_answer_with_a_line_missing_fails_loudly():
    class Short:
        def invoke_endpoint(self, **_):
            return {"Body": io.BytesIO(b"a,0.1\n")}

    with pytest.raises(RuntimeError, match="returned 1 scores for 2 rows"):
        scoring.score_rows(Short(), "e", ["a,1", "b,2"], scoring.RejectionBudget(10, "e"))
