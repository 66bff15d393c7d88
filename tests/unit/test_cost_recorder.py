"""The ledger written from tasks (churn_ml.cost.recorder, operators.cost): one record per job and task, a retry
that re-attached adds none, a rerun of the date replaces the task's records after writing its own, a run's total,
what a model cost for its card; and the operators' rule for a job that cannot be priced. No server: the lake is a
dict behind churn_ml.lake's functions (tests/conftest.py: memory_lake)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from test_cost import PRICES, training_job

from churn_ml import lake
from churn_ml.cost import ledger, recorder, usage
from churn_ml.model_card import render
from churn_ml.operators.cost import JobCostMixin

LAKE = "s3://churn-lake"


@pytest.fixture
def objects(memory_lake):
    return memory_lake


def context(task="train_model", dag="churn_training", run="scheduled__2026-07-01T00:00:00+00:00", clear=0,
            ds="2026-07-01"):
    return {"dag": SimpleNamespace(dag_id=dag), "task": SimpleNamespace(task_id=task), "ds": ds, "run_id": run,
            "dag_run": SimpleNamespace(clear_number=clear)}


def write(ctx, job):
    return recorder.write_record(ctx, resource=job["TrainingJobName"], usages=usage.training_job_usage(job),
                                 prices=PRICES)


def records(store):
    return sorted(store)


def test_one_record_per_job_and_a_retry_that_reattached_adds_none(objects):
    job = training_job("churn-xgb-20260701-abc", billable=300, training=900)
    first = write(context(), job)
    assert records(objects) == [f"{LAKE}/_costs/records/date=2026-07-01/churn_training/train_model/churn-xgb-20260701-abc.json"]
    assert first["usd"] == pytest.approx(300 / 3600 * PRICES.item("sagemaker.training.ml.m5.xlarge").usd)
    assert first["execution"] == "scheduled__2026-07-01T00:00:00+00:00/clear-0"
    again = write(context(), job)  # a retry of the task: same job, same run, same execution
    assert again == first and records(objects) == [next(iter(objects))]


def test_a_new_attempt_within_the_execution_keeps_the_failed_jobs_record(objects):
    write(context(), training_job("churn-xgb-20260701-abc", status="Failed", billable=120, training=120))
    write(context(), training_job("churn-xgb-20260701-abc-r2"))
    assert len(objects) == 2  # both were billed to this execution of the run
    total = recorder.log_run_total("2026-07-01", "churn_training", "scheduled__2026-07-01T00:00:00+00:00")
    assert total["jobs"] == 2 and total["usd"] == pytest.approx(sum(r["usd"] for r in objects.values()), abs=1e-6)


def test_a_rerun_of_the_date_replaces_the_tasks_records_after_writing_its_own(objects, monkeypatch):
    write(context(), training_job("churn-xgb-20260701-abc", status="Failed", billable=120, training=120))
    write(context(), training_job("churn-xgb-20260701-abc-r2"))
    write(context(task="tune_hyperparameters"), training_job("churn-hpo-trial-1"))
    order = []
    real_delete = lake.delete_objects
    monkeypatch.setattr(lake, "write_json", lambda uri, payload: (order.append(("write", uri)), objects.__setitem__(uri, payload)))
    monkeypatch.setattr(lake, "delete_objects", lambda uris: (order.append(("delete", sorted(uris))), real_delete(uris))[1])
    rerun = write(context(clear=1), training_job("churn-xgb-20260701-def"))  # the data changed: a new job
    train = [u for u in objects if "/train_model/" in u]
    assert train == [f"{LAKE}/_costs/records/date=2026-07-01/churn_training/train_model/churn-xgb-20260701-def.json"]
    assert objects[train[0]] == rerun and rerun["execution"].endswith("/clear-1")
    assert [step for step, _ in order] == ["write", "delete"] and len(order[1][1]) == 2  # written first
    assert any("/tune_hyperparameters/" in u for u in objects)  # other tasks' records are theirs to replace


def test_another_run_of_the_date_keeps_its_records_and_stays_out_of_this_runs_total(objects):
    write(context(), training_job("churn-xgb-a"))
    write(context(run="retrain__2026-07-01"), training_job("churn-xgb-b"))  # the same task, another run of the date
    assert len(objects) == 2
    total = recorder.log_run_total("2026-07-01", "churn_training", "scheduled__2026-07-01T00:00:00+00:00")
    assert total["jobs"] == 1 and list(total["by_task"]) == ["train_model"]
    assert recorder.run_summary([]) == "Cost: no job of this run wrote a ledger record"


def test_a_models_card_shows_what_training_and_tuning_cost_and_the_measured_spot_saving(objects):
    write(context(), training_job("churn-xgb-a", billable=600, training=1500))
    trials = [training_job(f"churn-hpo-{n}", billable=billable, training=trained, tuning="churn-hpo")
              for n, (billable, trained) in enumerate([(100, 100), (300, 600)])]
    recorder.write_record(context(task="tune_hyperparameters"), resource="churn-hpo",
                          usages=usage.tuning_job_usage("churn-hpo", trials), prices=PRICES)
    runs = recorder.run_records("2026-07-01", "churn_training", "scheduled__2026-07-01T00:00:00+00:00")
    cost = recorder.training_cost(runs, training_task="train_model", tuning_task="tune_hyperparameters")
    assert cost["training"]["spot_saving"] == pytest.approx(1 - 600 / 1500, abs=1e-6)
    assert cost["tuning"]["training_jobs"] == 2 and cost["tuning"]["spot_saving"] == pytest.approx(1 - 400 / 700, abs=1e-6)
    assert cost["usd"] == pytest.approx(cost["training"]["usd"] + cost["tuning"]["usd"])
    text = render({"version": 3, "status": "Approved", "reason": "ok", "training_job_name": "churn-xgb-a",
                   "model_data_url": "s3://b/m.tar.gz", "cost": cost})
    assert "## Cost" in text and "| final training |" in text and "60.0%" in text and "42.9%" in text


class Operator(JobCostMixin):
    """A job-starting operator whose job ``name`` is recorded as ``resource`` (Glue's run id -> its identity)."""

    cost_service = "sagemaker"

    def __init__(self, answer, resource=None):
        self.answer, self.resource, self.log = answer, resource, logging.getLogger("test-operator")

    def job_answer(self, name):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.resource or name, self.answer

    def job_usages(self, answer):
        return usage.training_job_usage(answer)


def test_a_job_that_cannot_be_priced_is_recorded_unpriced_and_its_run_cost_says_so(objects, caplog, monkeypatch):
    monkeypatch.setattr(recorder, "price_table", lambda: PRICES)
    Operator(training_job("churn-xgb-a")).record_job_cost(context(), "churn-xgb-a")
    no_billing = {k: v for k, v in training_job("churn-xgb-b").items() if k != "BillableTimeInSeconds"}
    Operator(no_billing, resource="churn-xgb-b-identity").record_job_cost(context(), "jr_b")  # the pipeline goes on
    unknown = training_job("churn-xgb-c", instance="ml.p5.48xlarge")
    Operator(unknown).record_job_cost(context(), "churn-xgb-c")
    # the unpriced record is named as the priced one will be: a clear that prices it replaces it
    assert any(uri.endswith("/churn-xgb-b-identity.json") for uri in objects)
    total = recorder.log_run_total("2026-07-01", "churn_training", "scheduled__2026-07-01T00:00:00+00:00")
    assert total["jobs"] == 3 and len(total["unpriced"]) == 2
    assert "BillableTimeInSeconds" in total["unpriced"][0] and "ml.p5.48xlarge" in total["unpriced"][1]
    assert total["summary"].endswith("; 2 job(s) UNPRICED (see run_cost's log)")
    assert "clear the job's task" in str(recorder.UnpricedJobs(total["unpriced"]))
    Operator(training_job("x")).record_job_cost(context(), None)  # no job started: nothing to record
    running = training_job("churn-xgb-d", status="InProgress")
    Operator(running).record_job_cost(context(), "churn-xgb-d")  # not ended: the try that finds it ended records it
    assert len(objects) == 3


def test_a_transient_error_or_a_refused_write_fails_the_task_unless_the_job_failed_first(objects, caplog, monkeypatch):
    from botocore.exceptions import ClientError

    monkeypatch.setattr(recorder, "price_table", lambda: PRICES)
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "DescribeTrainingJob")
    with pytest.raises(ClientError):  # the retry re-attaches to the job and reads it again
        Operator(throttled).record_job_cost(context(), "churn-xgb-d")
    memory_write = lake.write_json
    monkeypatch.setattr(lake, "write_json", lambda uri, payload: (_ for _ in ()).throw(PermissionError("AccessDenied")))
    with pytest.raises(PermissionError):
        Operator(training_job("churn-xgb-e")).record_job_cost(context(), "churn-xgb-e")
    with pytest.raises(RuntimeError, match="the job's own error"), caplog.at_level(logging.ERROR):
        try:
            raise RuntimeError("the job's own error")
        finally:
            Operator(training_job("churn-xgb-e")).record_job_cost(context(), "churn-xgb-e")
    assert "could not write the ledger record of churn-xgb-e" in caplog.text
    assert objects == {}
    monkeypatch.setattr(lake, "write_json", memory_write)
    with pytest.raises(RuntimeError, match="the job's own error"):
        try:
            raise RuntimeError("the job's own error")
        finally:  # the job failed and its answer could not be read: recorded unpriced, so run_cost says so
            Operator(throttled).record_job_cost(context(), "churn-xgb-f")
    assert [r["unpriced"].split(":")[0] for r in objects.values()] == ["ClientError"]


def test_the_ledger_key_of_a_record_is_the_tasks_prefix_plus_the_job():
    key = ledger.records_key("2026-07-01", "churn_training", "train_model", "churn-xgb-a")
    assert key.startswith(ledger.task_prefix("2026-07-01", "churn_training", "train_model"))


def test_the_streaming_jobs_days_are_its_runs_hours_clipped_to_each_day(objects):
    import datetime as dt

    now = dt.datetime(2026, 7, 3, 6, 0, tzinfo=dt.UTC)
    runs = [  # newest first, as GetJobRuns lists them: one running since yesterday 18:00, one that ended long ago
        {"Id": "jr_2", "JobName": "churn-stream", "JobRunState": "RUNNING", "StartedOn": now - dt.timedelta(hours=12),
         "WorkerType": "G.1X", "NumberOfWorkers": 5, "GlueVersion": "5.0"},
        {"Id": "jr_1", "JobName": "churn-stream", "JobRunState": "STOPPED", "StartedOn": now - dt.timedelta(days=9),
         "CompletedOn": now - dt.timedelta(days=8), "WorkerType": "G.1X", "NumberOfWorkers": 5, "GlueVersion": "5.0"},
    ]
    records = recorder.streaming_day_records(context(task="record_costs", dag="churn_monitoring"), runs, now, prices=PRICES)
    assert [(r["ds"], r["resource"]) for r in records] == [("2026-07-02", "churn-stream"), ("2026-07-03", "churn-stream")]
    assert [sum(line["quantity"] for line in r["lines"]) for r in records] == [pytest.approx(5 * 6), pytest.approx(5 * 6)]
    assert records[1]["until"] == now.isoformat()
    again = recorder.streaming_day_records(context(task="record_costs", dag="churn_monitoring"), runs, now, prices=PRICES)
    assert again == records and len(objects) == 2  # the next run rewrites the days, adds none


def test_the_reports_cost_figures_per_day_dag_model_version_and_1000_predictions():
    records = [
        {"ds": "2026-07-02", "dag_id": "churn_batch_scoring", "task_id": "batch_transform", "service": "sagemaker",
         "usd": 0.5, "model_version": "3"},
        {"ds": "2026-07-02", "dag_id": "churn_features", "task_id": "build_features", "service": "emr-serverless",
         "usd": 1.0, "model_version": None},
        {"ds": "2026-07-02", "dag_id": "churn_monitoring", "task_id": "record_costs", "service": "glue", "usd": 2.0,
         "model_version": None},
        {"ds": "2026-07-02", "dag_id": "churn_monitoring", "task_id": "record_costs", "service": "sagemaker",
         "usd": 4.0, "model_version": "3"},
    ]
    summaries = {"2026-07-02": {"sources": {"batch": {"rows": 5000}, "stream": {"rows": 4000}, "capture": {"rows": 10}}}}
    from churn_ml.monitoring_report import cost_figures

    figures = cost_figures(records, summaries)
    assert figures["by_day"] == {"2026-07-02": {"churn_batch_scoring": 0.5, "churn_features": 1.0, "churn_monitoring": 6.0}}
    assert figures["by_model_version"] == {"3": 4.5}
    assert figures["per_1000"]["2026-07-02"] == {"batch": pytest.approx(0.1), "stream": pytest.approx(0.5)}
    assert cost_figures(records, {})["per_1000"]["2026-07-02"] == {"batch": None, "stream": None}  # no rows: no figure
