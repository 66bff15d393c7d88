"""Errors no retry can fix fail a task on its first try; transient ones keep their retries (issue 24).

Each function a DAG's @task calls in plugins/churn_ml/ (registry, model_card, decay, monitoring_report,
stream_job) raises ``AirflowFailException`` with the helpful message for what cannot succeed on a retry,
and its usual, retryable error for what may. The last test runs tasks through Airflow itself.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import tarfile

import pytest
from airflow.sdk.exceptions import AirflowFailException
from botocore.exceptions import ClientError, EndpointConnectionError

from churn_ml import decay, lake, model_card, monitoring_report, registry, stream_job
from churn_ml.errors import CannotSucceedOnRetry
from churn_ml.settings import SettingsError

# The plugins read and write the lake through S3: moto's, in this process, over the test's lake folder.
pytestmark = pytest.mark.usefixtures("lake_s3")

POINTER = "s3://churn-lake/published/churn/latest.json"
OUTPUT = "s3://churn-lake/models/churn/job-a/output"
LOG = logging.getLogger("test")


def client_error(code: str, operation: str = "CreateModelPackage") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} from AWS"}}, operation)


def failed_fast(excinfo, cause: type[BaseException]) -> None:
    """The task's exception keeps the original error as its cause (the traceback shows both)."""
    assert isinstance(excinfo.value.__cause__, cause)


# ---------------------------------------------------------------- registry (churn_training)


def test_a_gate_without_the_holdout_metric_fails_the_quality_gate_at_once():
    job = {"TrainingJobName": "job-a", "FinalMetricDataList": [{"MetricName": "validation:auc", "Value": 0.8}]}
    with pytest.raises(AirflowFailException, match="no holdout:auc .* Was the holdout channel given") as excinfo:
        registry.gate_training_job(job, floor=0.7, tolerance=0.01)
    failed_fast(excinfo, registry.RegistryError)
    assert issubclass(registry.RegistryError, ValueError)  # the existing `except ValueError` still catch it


def test_a_model_that_is_not_approved_is_never_published(lake_root):
    rejected = {"ModelPackageGroupName": "churn-xgboost", "ModelPackageVersion": 3, "ModelApprovalStatus": "Rejected",
                "ApprovalDescription": "holdout AUC 0.6500 is below the floor 0.7000"}
    with pytest.raises(AirflowFailException, match=r"refusing to publish churn-xgboost v3: it is Rejected, not Approved "
                                                   r"\(holdout AUC 0.6500 is below the floor"):
        registry.publish(rejected, "2026-07-02", POINTER)
    assert not lake.exists(POINTER)


def test_no_production_model_or_one_without_a_baseline_fails_resolve_model_and_resolve_baseline_at_once(lake_root):
    with pytest.raises(AirflowFailException, match=f"no published model at {POINTER}: run the churn_training DAG first"):
        registry.published_model(POINTER)
    lake.write_json(POINTER, {"model_package_version": 2, "baseline_uri": None, "model_data_url": "s3://m"})
    assert registry.published_model(POINTER)["model_package_version"] == 2  # batch scoring needs no baseline
    with pytest.raises(AirflowFailException, match="model v2 was published without a baseline .* trigger churn_training"):
        registry.published_model(POINTER, with_baseline=True)
    assert issubclass(registry.NotPublishedError, FileNotFoundError)


def test_an_unknown_approval_status_fails_registration_at_once():
    with pytest.raises(AirflowFailException, match="approval must be Approved or Rejected .* got 'Pending'"):
        registry.register(model_data_url=f"{OUTPUT}/model.tar.gz", image_uri="x", training_job_name="job-a",
                          approval="Pending", reason="", metrics={"holdout:auc": 0.8}, card={}, card_plot=None,
                          evaluation_uri="", data_date="2026-07-02")


@pytest.mark.parametrize(("code", "fails_fast"), [
    ("ValidationException", True), ("ResourceNotFound", True),
    ("ThrottlingException", False), ("InternalFailure", False), ("ServiceUnavailable", False),
])
def test_aws_rejecting_the_request_fails_fast_and_throttling_or_a_service_error_is_retried(monkeypatch, code,
                                                                                          fails_fast):
    def answer(*_):
        raise client_error(code, "ListModelPackages")

    monkeypatch.setattr(registry, "_sagemaker", lambda: type("Hook", (), {"conn": None})())
    monkeypatch.setattr(registry, "_registered", answer)
    call = lambda: registry.register(  # noqa: E731
        model_data_url=f"{OUTPUT}/model.tar.gz", image_uri="x", training_job_name="job-a", approval="Approved",
        reason="ok", metrics={"holdout:auc": 0.8}, card={}, card_plot=None, evaluation_uri="", data_date="2026-07-02")
    if fails_fast:
        with pytest.raises(AirflowFailException, match=f"AWS rejected the request: .*{code}.*not retried"):
            call()
    else:
        with pytest.raises(ClientError, match=code):
            call()


def test_an_invalid_setting_fails_a_task_facing_function_at_once(monkeypatch):
    monkeypatch.setenv("CHURN_AWS_CONN_ID", "aws default")
    with pytest.raises(AirflowFailException, match="CHURN_AWS_CONN_ID must be an Airflow connection id") as excinfo:
        registry.publication("Approved", "2026-07-02", False, POINTER)
    failed_fast(excinfo, SettingsError)


# ---------------------------------------------------------------- model_card (register_model)


def _output_tar(files: dict[str, bytes]) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    lake.write_bytes(f"{OUTPUT}/output.tar.gz", buffer.getvalue())


@pytest.mark.parametrize(("write", "says"), [
    (lambda: None, "left no s3://churn-lake/models/churn/job-a/output/output.tar.gz beside its model"),
    (lambda: lake.write_bytes(f"{OUTPUT}/output.tar.gz", b"not a tarball"), "is not a readable training output"),
    (lambda: _output_tar({"evaluation.json": b"{not json"}), "is not a readable training output"),
    (lambda: _output_tar({"evaluation.json": json.dumps({"rounds": 3}).encode()}), "evaluation.json in .* has no features"),
], ids=["missing", "not-a-tarball", "evaluation-not-json", "evaluation-without-features"])
def test_a_missing_or_malformed_training_output_fails_register_model_at_once(lake_root, write, says):
    write()
    with pytest.raises(AirflowFailException, match=says) as excinfo:
        model_card.extract_training_output(f"{OUTPUT}/model.tar.gz")
    assert "see the training job's log" in str(excinfo.value)
    failed_fast(excinfo, model_card.TrainingOutputError)


def test_a_lake_that_cannot_be_reached_keeps_the_retries(lake_root, monkeypatch):
    def unreachable(uri):
        raise EndpointConnectionError(endpoint_url="https://churn-lake.s3.amazonaws.com")

    monkeypatch.setattr(lake, "exists", unreachable)
    with pytest.raises(EndpointConnectionError):
        model_card.extract_training_output(f"{OUTPUT}/model.tar.gz")
    with pytest.raises(EndpointConnectionError):
        monitoring_report.read_daily("s3://churn-lake/monitoring/daily/", "2026-07-02", 3, "summary.json")


# ---------------------------------------------------------------- decay and monitoring_report (churn_monitoring)


def test_invalid_thresholds_from_the_run_params_fail_the_decide_task_at_once():
    with pytest.raises(AirflowFailException, match="consecutive_days must be at least 1, got 0"):
        decay.Thresholds.from_params({"consecutive_days": 0})
    with pytest.raises(AirflowFailException, match="param psi_threshold must be a float, got 'high'"):
        decay.Thresholds.from_params({"psi_threshold": "high"})
    with pytest.raises(decay.ThresholdsError):  # constructed directly (not a task): the typed error, a ValueError
        decay.Thresholds(js_threshold=2.0)


def test_a_missing_summary_of_the_day_fails_decide_at_once_with_the_message_unquoted():
    with pytest.raises(AirflowFailException, match=r"^no monitoring summary for 2026-07-02, although the monitor "
                                                   r"task finished: .* clear monitor \(not retried") as excinfo:
        decay.decide("2026-07-02", {}, {}, decay.Thresholds())
    failed_fast(excinfo, KeyError)


def test_a_malformed_daily_file_fails_at_once_and_a_missing_one_is_a_day_not_monitored(lake_root):
    root = "s3://churn-lake/monitoring/daily/"
    lake.write_json(f"{root}dt=2026-07-01/summary.json", {"model_version": "1"})
    assert monitoring_report.read_daily(root, "2026-07-02", 3, "summary.json") == {"2026-07-01": {"model_version": "1"}}
    lake.write_bytes(f"{root}dt=2026-07-02/summary.json", b'{"model_version": ')  # cut short
    with pytest.raises(AirflowFailException, match=r"dt=2026-07-02/summary.json is not JSON .* rerun that date's "
                                                   r"churn_monitoring"):
        monitoring_report.read_daily(root, "2026-07-02", 3, "summary.json")
    lake.write_bytes(f"{root}dt=2026-07-02/summary.json", b"[1, 2]")
    with pytest.raises(AirflowFailException, match="holds a list, not a JSON object"):
        monitoring_report.read_daily(root, "2026-07-02", 3, "summary.json")


# ---------------------------------------------------------------- stream_job (churn_streaming)


@pytest.mark.parametrize(("described", "expected", "says"), [
    (None, AirflowFailException, "endpoint churn-xgboost does not exist"),
    ({"EndpointStatus": "Failed", "FailureReason": "bad image"}, AirflowFailException, "is Failed, not serving \\(bad image\\)"),
    ({"EndpointStatus": "Creating"}, stream_job.StreamingHealthError, "is Creating, not serving"),
], ids=["missing", "failed", "creating"])
def test_an_endpoint_that_is_missing_or_failed_fails_at_once_and_one_being_created_does_not(
        lake_root, monkeypatch, described, expected, says):
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    def describe(self, name):
        if described is None:
            # SageMaker's answer for an endpoint that does not exist (stream_job recognizes its message).
            raise ClientError({"Error": {"Code": "ValidationException", "Message": f"Could not find endpoint {name}."}},
                              "DescribeEndpoint")
        return described

    monkeypatch.setattr(SageMakerHook, "describe_endpoint", describe)
    with pytest.raises(expected, match=says) as excinfo:
        stream_job.ensure_endpoint(LOG)
    if expected is not AirflowFailException:
        assert not isinstance(excinfo.value, CannotSucceedOnRetry)


def test_in_process_scoring_without_a_published_model_fails_ensure_job_at_once(lake_root, monkeypatch):
    monkeypatch.setenv("CHURN_STREAMING_SCORING", "in_process")
    monkeypatch.setattr(stream_job, "latest_run", lambda: None)

    class Hook:
        conn = type("Conn", (), {"exceptions": type("E", (), {"ConcurrentRunsExceededException": KeyError})})()

        def initialize_job(self, script_arguments):
            raise AssertionError("started a run without a model to score with")

    monkeypatch.setattr(stream_job, "_glue_hook", Hook)
    with pytest.raises(AirflowFailException, match="CHURN_STREAMING_SCORING=in_process .* publish one with the "
                                                   "churn_training DAG first"):
        stream_job.ensure_job(LOG)


def test_an_unhealthy_run_is_not_failed_fast(lake_root):
    """A run that has written no progress may still catch up: StreamingHealthError, retryable."""
    started = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    with pytest.raises(stream_job.StreamingHealthError, match="has written no progress yet") as excinfo:
        stream_job.check_health({"run_id": "jr_1", "started_on": started}, {}, LOG)
    assert not isinstance(excinfo.value, CannotSucceedOnRetry)


# ---------------------------------------------------------------- through Airflow


PROBE_DAG = """
import datetime as dt

import pendulum
from airflow.sdk import dag, task


@dag(dag_id="fail_fast_probe", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     default_args={"retries": 2, "retry_delay": dt.timedelta(seconds=0)})
def fail_fast_probe():
    @task
    def invalid_setting() -> None:
        from churn_ml import registry

        registry.publication("Approved", "2026-07-02", False, "s3://churn-lake/published/churn/latest.json")

    @task
    def transient() -> None:
        raise ConnectionError("the service did not answer")

    invalid_setting()
    transient()


fail_fast_probe()
"""


def test_a_task_with_retries_fails_after_one_try_on_a_settings_error_and_a_transient_error_is_retried(
        tmp_path, monkeypatch):
    """dag.test() runs the tasks as the scheduler would, retries included (no delay here): the SettingsError
    fails its task on try 1 of 3, while a transient error uses all three. dag.test() runs the DAGs of the
    dags folder, so the probe DAG gets a folder of its own."""
    import pendulum
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.state import TaskInstanceState

    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "fail_fast_probe.py").write_text(PROBE_DAG)
    from airflow import settings as airflow_settings

    monkeypatch.setattr(airflow_settings, "DAGS_FOLDER", str(folder))  # the dags-folder bundle's path
    monkeypatch.setenv("CHURN_AWS_CONN_ID", "aws default")  # read by the task when it runs (lake.exists -> settings)
    probe = DagBag(dag_folder=str(folder)).get_dag("fail_fast_probe")
    run = probe.test(logical_date=pendulum.datetime(2026, 7, 2, tz="UTC"))
    tries = {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()}
    assert tries == {"invalid_setting": (TaskInstanceState.FAILED, 1), "transient": (TaskInstanceState.FAILED, 3)}
