"""A job is identified by its code version, its inputs and its request: the names, and which job a try reuses."""

from __future__ import annotations

import datetime as dt
import logging
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException

from churn_ml.operators.base import Found, IdentifiedJobMixin, code_versions, recompute_token

V1, V2 = "0123456789abcdef", "fedcba9876543210"
# The identity marks the run's code version used (churn_ml.artifacts.mark_used): S3 over the test's lake.
pytestmark = pytest.mark.usefixtures("lake_s3")


class _Jobs(IdentifiedJobMixin):
    task_id = "t"
    log = logging.getLogger("test")


class _Ti:
    def __init__(self):
        self.pushed = {}

    def xcom_push(self, key, value):
        self.pushed[key] = value


def _context(params=None, clear_number=0):
    return {
        "dag": SimpleNamespace(dag_id="churn_features"), "logical_date": dt.datetime(2026, 7, 2, tzinfo=dt.UTC),
        "run_id": "scheduled__2026-07-02", "params": params or {}, "dag_run": SimpleNamespace(clear_number=clear_number),
        "ti": _Ti(),
    }


def _request(version=V1, ds="2026-07-02"):
    return {"entryPoint": f"s3://churn-artifacts/code/{version}/jobs/churn_features.py", "arguments": ["--ds", ds]}


def _inputs(digest="aaaa"):
    return {"digest": digest, "objects": 3, "bytes": 300}


def test_the_same_code_inputs_and_request_give_the_same_name_and_any_change_another():
    jobs = _Jobs()
    base = jobs.job_identity(_context(), "churn-features", _request(), inputs=_inputs())
    assert base.name == jobs.job_identity(_context(), "churn-features", _request(), inputs=_inputs()).name
    assert base.name.startswith("churn-features-20260702-") and len(base.name) <= 63
    assert base.code_version == V1
    changed = [
        jobs.job_identity(_context(), "churn-features", _request(version=V2), inputs=_inputs()),  # code
        jobs.job_identity(_context(), "churn-features", _request(), inputs=_inputs("bbbb")),  # inputs
        jobs.job_identity(_context(), "churn-features", _request(ds="2026-07-03"), inputs=_inputs()),  # request
    ]
    assert len({base.name, *(c.name for c in changed)}) == 4


def test_recompute_names_a_new_job_per_run_and_clear_but_a_retry_keeps_it():
    jobs = _Jobs()
    plain = jobs.job_identity(_context(), "p", _request()).name
    forced = jobs.job_identity(_context({"recompute": True}), "p", _request())
    assert forced.name != plain and forced.recompute == "scheduled__2026-07-02/clear-0"
    assert jobs.job_identity(_context({"recompute": True}), "p", _request()).name == forced.name  # a retry
    assert jobs.job_identity(_context({"recompute": True}, clear_number=1), "p", _request()).name != forced.name
    assert recompute_token(_context({"recompute": False})) is None


def test_the_identity_is_pushed_for_the_task_log_and_xcom():
    context = _context()
    identity = _Jobs().job_identity(context, "p", _request(), inputs=_inputs())
    assert context["ti"].pushed["job_identity"] == {
        "name": identity.name, "code_version": V1, "inputs": _inputs(), "recompute": None,
    }
    assert "code version 0123456789abcdef, inputs aaaa (3 objects, 300 bytes) and request" in identity.why()


def test_a_request_naming_two_code_versions_fails_at_once():
    request = {**_request(), "py_files": [f"s3://churn-artifacts/code/{V2}/lib/churn.zip"]}
    assert code_versions(request) == sorted([V1, V2])
    with pytest.raises(AirflowFailException, match="several code versions"):
        _Jobs().job_identity(_context(), "p", request)


@pytest.mark.parametrize(
    ("states", "usable", "expected"),
    [
        ({}, True, "job"),  # nothing yet: start it
        ({"job": "running"}, False, "job"),  # running: wait for it
        ({"job": "succeeded"}, True, "job"),  # done, outputs in place: reuse it
        ({"job": "succeeded"}, False, "job-r2"),  # done, outputs published or cleared: run again
        ({"job": "failed", "job-r2": "succeeded"}, False, "job-r3"),
        ({"job": "failed", "job-r2": "failed"}, True, "job-r3"),
    ],
)
def test_an_attempt_is_reused_only_while_it_runs_or_its_outputs_are_there(states, usable, expected, caplog):
    def lookup(name):
        return Found(states[name], states[name].upper(), {}) if name in states else None

    identity = SimpleNamespace(name="job", why=lambda: "code version x and request")
    with caplog.at_level(logging.INFO, logger="test"):
        name, found = _Jobs().find_attempt(identity, lookup, usable=lambda job: usable)
    assert name == expected
    if found is not None:
        assert f"reusing job {expected} ({found.status})" in caplog.text
    else:
        assert f"starting job {expected}" in caplog.text


def test_endless_failed_attempts_fail_without_retrying():
    identity = SimpleNamespace(name="job", why=lambda: "")
    with pytest.raises(AirflowFailException, match="attempts of job job failed"):
        _Jobs().find_attempt(identity, lambda name: Found("failed", "FAILED", {}))


def test_a_request_botocore_refuses_to_send_fails_without_retrying():
    """ParamValidationError: the request breaks the service's model (e.g. MaxNumberOfTrainingJobs 0), every try."""
    import boto3
    from botocore.exceptions import ParamValidationError

    from churn_ml.errors import fail_fast

    client = boto3.client("sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with pytest.raises(AirflowFailException, match="(?s)AWS rejected the request: .*MaxNumberOfTrainingJobs") as err:
        with fail_fast():
            client.create_hyper_parameter_tuning_job(
                HyperParameterTuningJobName="t", HyperParameterTuningJobConfig={
                    "Strategy": "Bayesian", "ResourceLimits": {"MaxNumberOfTrainingJobs": 0, "MaxParallelTrainingJobs": 1}})
    assert isinstance(err.value.__cause__, ParamValidationError)


def test_a_tuning_budget_of_no_job_fails_without_retrying():
    from churn_ml.operators import ChurnTuningOperator

    config = {"HyperParameterTuningJobConfig": {"ResourceLimits": {"MaxNumberOfTrainingJobs": 2,
                                                                   "MaxParallelTrainingJobs": 0}},
              "TrainingJobDefinition": {"StoppingCondition": {"MaxRuntimeInSeconds": 60}}}
    operator = ChurnTuningOperator(task_id="tune", job_name_prefix="t", config=config)
    with pytest.raises(AirflowFailException, match="MaxParallelTrainingJobs must be at least 1, got 0: .*tuning.max_parallel >= 1"):
        operator.execute(_context())
