"""The ledger written from tasks (churn_ml.cost.recorder, operators.cost): one record per job and task, a retry
that re-attached adds none, a rerun of the date replaces the task's records after writing its own, a run's total,
what a model cost for its card; and the operators' rule for a job that cannot be priced. No server: the lake is a
dict behind churn_ml.lake's functions."""

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
def objects(monkeypatch):
    """The lake as {uri: payload}, behind the lake functions the recorder uses."""
    store: dict[str, dict] = {}
    monkeypatch.setattr(recorder.settings.__class__, "lake", property(lambda self: LAKE))
    monkeypatch.setattr(lake, "write_json", lambda uri, payload: store.__setitem__(uri, payload))
    monkeypatch.setattr(lake, "read_json", lambda uri: store[uri])
    monkeypatch.setattr(lake, "list_keys", lambda prefix: sorted(u for u in store if u.startswith(prefix)))
    monkeypatch.setattr(lake, "delete_objects", lambda uris: len([store.pop(u) for u in uris]))
    return store


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


def test_the_records_of_another_run_of_the_date_stay_out_of_this_runs_total(objects):
    write(context(), training_job("churn-xgb-a"))
    write(context(run="manual__2026-07-01T08:00:00+00:00", task="tune_hyperparameters"), training_job("churn-hpo-b"))
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
    def __init__(self, answer):
        self.answer, self.log = answer, logging.getLogger("test-operator")

    def job_usage(self, name):
        if isinstance(self.answer, Exception):
            raise self.answer
        return name, usage.training_job_usage(self.answer), "sagemaker"


def test_a_job_that_cannot_be_priced_fails_the_task_unless_the_job_failed_first(objects, caplog, monkeypatch):
    monkeypatch.setattr(recorder, "price_table", lambda: PRICES)
    Operator(training_job("churn-xgb-a")).record_job_cost(context(), "churn-xgb-a")
    assert len(objects) == 1
    broken = Operator(ValueError("DescribeTrainingJob answer of churn-xgb-b: expected the field BillableTimeInSeconds"))
    with pytest.raises(ValueError, match="BillableTimeInSeconds"):
        broken.record_job_cost(context(), "churn-xgb-b")  # the retry re-attaches to the job and records it
    with pytest.raises(RuntimeError, match="the job's own error"), caplog.at_level(logging.ERROR):
        try:
            raise RuntimeError("the job's own error")
        finally:
            broken.record_job_cost(context(), "churn-xgb-b")
    assert "could not write the ledger record of churn-xgb-b" in caplog.text
    Operator(training_job("x")).record_job_cost(context(), None)  # no job started: nothing to record
    assert len(objects) == 1


def test_the_ledger_key_of_a_record_is_the_tasks_prefix_plus_the_job():
    key = ledger.records_key("2026-07-01", "churn_training", "train_model", "churn-xgb-a")
    assert key.startswith(ledger.task_prefix("2026-07-01", "churn_training", "train_model"))
