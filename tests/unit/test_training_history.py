"""The local training runner's Describe record: every run and transition of a job name is kept,
failed and stopped ones included, in DescribeTrainingJob's own fields and status values."""

from __future__ import annotations

import json
import logging

import botocore.session
import numpy as np
import pytest

import local_aws.training as training
from local_aws.common import LocalJobError
from local_aws.training import run_training_job
from support import training_request, write_channel

LOG = logging.getLogger("test")
SUCCESS = ["Starting", "Downloading", "Training", "Uploading", "Completed"]
RUN_ENDS = {"Completed", "Failed", "Stopped", "MaxRuntimeExceeded", "MaxWaitTimeExceeded"}


def _model():
    return botocore.session.get_session().get_service_model("sagemaker")


def _describe_file(lake_root, name: str):
    return lake_root / ".control-plane/sagemaker/training-jobs" / name / "describe.json"


def _stored(lake_root, name: str) -> dict:
    return json.loads(_describe_file(lake_root, name).read_text())


def _statuses(describe: dict) -> list[str]:
    return [t["Status"] for t in describe["SecondaryStatusTransitions"]]


def _channels(lake_root) -> None:
    rng = np.random.default_rng(0)
    for channel in ("train", "validation", "holdout"):
        write_channel(lake_root, channel, rng)


def assert_sagemaker_shaped(describe: dict) -> None:
    """Field names and status values of botocore's DescribeTrainingJob output, and a history in
    which each transition ends where the next one starts."""
    model = _model()
    output = model.operation_model("DescribeTrainingJob").output_shape
    assert set(describe) <= set(output.members), set(describe) - set(output.members)
    assert describe["TrainingJobStatus"] in model.shape_for("TrainingJobStatus").enum
    secondary = model.shape_for("SecondaryStatus").enum
    assert describe["SecondaryStatus"] in secondary
    shape = model.shape_for("SecondaryStatusTransition")
    history = describe["SecondaryStatusTransitions"]
    for transition in history:
        assert set(transition) <= set(shape.members) and set(shape.required_members) <= set(transition), transition
        assert transition["Status"] in secondary, transition
        assert transition["StartTime"] <= transition["EndTime"], transition
    for before, after in zip(history, history[1:]):
        # Within a run each transition ends where the next starts; between runs there is a gap.
        if before["Status"] in RUN_ENDS:
            assert before["EndTime"] <= after["StartTime"] and after["Status"] == "Starting", (before, after)
        else:
            assert before["EndTime"] == after["StartTime"], (before, after)
    assert history[-1]["Status"] == describe["SecondaryStatus"]


def test_a_rerun_after_a_failure_appends_to_the_history_of_the_failed_run(lake_root):
    request = {**training_request(), "TrainingJobName": "flaky-inputs"}
    with pytest.raises(LocalJobError, match="has no objects"):
        run_training_job(request, LOG)  # the input channels are not there yet
    failed = _stored(lake_root, "flaky-inputs")
    assert failed["TrainingJobStatus"] == "Failed" and "has no objects" in failed["FailureReason"]
    assert _statuses(failed) == ["Starting", "Downloading", "Failed"]
    assert_sagemaker_shaped(failed)

    _channels(lake_root)
    done = run_training_job(request, LOG)
    assert done["TrainingJobStatus"] == "Completed" and "FailureReason" not in done
    assert _statuses(done) == ["Starting", "Downloading", "Failed", *SUCCESS]
    assert done["SecondaryStatusTransitions"][:3] == failed["SecondaryStatusTransitions"]
    assert done["SecondaryStatusTransitions"][2]["StatusMessage"] == failed["FailureReason"]
    assert done["CreationTime"] == failed["CreationTime"] <= done["TrainingStartTime"]
    assert_sagemaker_shaped(done)
    assert _stored(lake_root, "flaky-inputs") == done
    assert run_training_job(request, LOG) == done  # completed: re-attached, history unchanged


def test_an_algorithm_error_is_the_failed_transition_message_and_the_log_keeps_every_run(lake_root):
    _channels(lake_root)
    request = {**training_request(max_depth="99"), "TrainingJobName": "bad-then-rerun"}
    for _ in range(2):
        with pytest.raises(LocalJobError, match="max_depth must be within"):
            run_training_job(request, LOG)
    describe = _stored(lake_root, "bad-then-rerun")
    assert _statuses(describe) == ["Starting", "Downloading", "Training", "Failed"] * 2
    failures = [t for t in describe["SecondaryStatusTransitions"] if t["Status"] == "Failed"]
    assert all("max_depth must be within" in t["StatusMessage"] for t in failures)
    assert describe["SecondaryStatusTransitions"][4]["StatusMessage"].endswith("(run 2 of this job name)")
    assert_sagemaker_shaped(describe)
    log_text = (_describe_file(lake_root, "bad-then-rerun").parent / "training.log").read_text()
    assert log_text.count("max_depth must be within") >= 2, log_text  # the rerun appended, not truncated


def test_a_stopped_runner_is_recorded_and_a_killed_one_is_closed_on_rerun(lake_root, monkeypatch):
    _channels(lake_root)
    request = {**training_request(), "TrainingJobName": "stopped-then-rerun"}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(training, "stream", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run_training_job(request, LOG)
    stopped = _stored(lake_root, "stopped-then-rerun")
    assert stopped["TrainingJobStatus"] == "Stopped" and _statuses(stopped) == ["Starting", "Downloading", "Training", "Stopped"]
    assert_sagemaker_shaped(stopped)

    # What a runner killed with SIGKILL leaves behind: InProgress, its current transition still open.
    killed = {**stopped, "TrainingJobStatus": "InProgress", "SecondaryStatus": "Training"}
    killed["SecondaryStatusTransitions"] = [dict(t) for t in stopped["SecondaryStatusTransitions"][:3]]
    del killed["SecondaryStatusTransitions"][-1]["EndTime"]
    del killed["FailureReason"], killed["TrainingEndTime"]
    _describe_file(lake_root, "stopped-then-rerun").write_text(json.dumps(killed))

    done = run_training_job(request, LOG)
    assert _statuses(done) == ["Starting", "Downloading", "Training", "Stopped", *SUCCESS]
    assert "previous run ended while the job was Training" in done["SecondaryStatusTransitions"][3]["StatusMessage"]
    assert_sagemaker_shaped(done)


def test_max_runtime_exceeded_is_a_stopped_job(lake_root):
    _channels(lake_root)
    request = {**training_request(num_round="100000", early_stopping_rounds="0"), "TrainingJobName": "too-long"}
    request["StoppingCondition"] = {"MaxRuntimeInSeconds": 2}
    with pytest.raises(LocalJobError, match="MaxRuntimeExceeded"):
        run_training_job(request, LOG)
    describe = _stored(lake_root, "too-long")
    assert describe["TrainingJobStatus"] == "Stopped" and describe["SecondaryStatus"] == "MaxRuntimeExceeded"
    assert _statuses(describe) == ["Starting", "Downloading", "Training", "MaxRuntimeExceeded"]
    assert_sagemaker_shaped(describe)


def test_interruptions_are_counted_in_the_latest_run():
    """They are reported with BillableTimeInSeconds, which is the latest run's."""
    from churn_ml.registry import interruptions_of

    runs = [
        ["Starting", "Downloading", "Training", "Interrupted", "Restarting", "Training", "Failed"],
        ["Starting", "Downloading", "Training", "Interrupted", "Restarting", "Training", "Interrupted",
         "Restarting", "Training", "Uploading", "Completed"],
    ]
    history = [{"Status": s, "StartTime": "t", "EndTime": "t"} for run in runs for s in run]
    assert interruptions_of({"SecondaryStatusTransitions": history}) == 2
    assert interruptions_of({"SecondaryStatusTransitions": history[:7]}) == 1
    assert interruptions_of({}) == 0
