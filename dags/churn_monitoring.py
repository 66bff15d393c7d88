"""
### churn_monitoring — daily: drift, realized quality, a report, and retraining when the model decays

1. **wait_for_predictions** — waits for `predictions/dt=<ds>/_SUCCESS` (churn_batch_scoring of the
   same date, which needs that day's features, which wrote the labels whose window closed on `ds`).
2. **resolve_baseline** — the production model (`published/churn/latest.json`) and the baseline of
   its training data registered with it (`baseline_uri`).
3. **monitor** — Spark job `include/jobs/churn_monitoring.py` (EMR Serverless or Glue; local Spark
   locally): PSI and Jensen-Shannon distance of every feature and of the score, per source (batch
   predictions, the endpoint's data capture, the stream's predictions), against the baseline; the
   realized AUC, PR-AUC, Brier score, calibration and lift of the predictions of `ds - 30`, whose
   labels just closed. Writes `monitoring/daily/dt=<ds>/summary.json`.
4. **decide** — registers the day's results (`monitoring_daily`) in the Glue Data Catalog
   (`churn_ml.catalog`); the day is decayed when a source drifted or the realized AUC is below the floor
   (params); retraining is due after `consecutive_days` decayed days in a row (`churn_ml.decay`).
5. **write_report** — `monitoring/reports/dt=<ds>/report.html`: the decision and why, drift per
   feature, score drift and realized AUC over time with the gate's floor, and the last 7 dates' cost (by
   DAG, by model version, per 1,000 predictions) as the ledger holds it. Its location is in the task log.
   **record_costs** (from the start, beside the chain: its failure holds nothing back) — the endpoint's and
   the streaming job's last 7 UTC days priced into the cost ledger (`churn_ml.cost.recorder`, docs/cost.md).
6. **decay_detected → alert, trigger_retraining** — only when retraining is due: an SNS message to
   the alerts topic (`CHURN_ALERTS_TOPIC_ARN`) with the report's location, and a `churn_training` run
   (`retrain__<ds>`) with the reason in its conf and note. The new model still has to pass the
   quality gate. They follow `decide`, beside `write_report`, not after it: a report that fails to
   render or upload fails the run but never holds back the alert or the retraining.

**run_cost** (a teardown) logs the run's cost from the ledger.

**Reruns and backfills** replace the date's summary, report and decision; a retraining run is
triggered once per date (a rerun finds it and skips). Backfill in date order: a decision reads the
days before it (`max_active_runs=1`).
"""

from __future__ import annotations

import pendulum
from airflow.providers.amazon.aws.operators.sns import SnsPublishOperator
from airflow.sdk import Param, chain, dag, task

from churn_ml.dag_support import (
    AWS_CONN_ID,
    DEFAULT_ARGS,
    LAKE,
    MODEL_ASSET,
    MODEL_POINTER_KEY,
    MONITORING,
    MONITORING_REPORTS,
    PREDICTIONS,
    PREDICTIONS_ASSET,
    RECOMPUTE,
    SENSOR_TIMEOUT,
    USER_MACROS,
    run_cost_after,
)
from churn_ml.decay import Thresholds
from churn_ml.inputs import monitoring_job_inputs
from churn_ml.operators import LakeKeySensor, RetrainingTriggerOperator, spark_job
from churn_ml.training_requests import xcom

DEFAULTS = Thresholds()
REASON = xcom("decide", "reason")
# Where write_report puts the day's report: named by the date, so the alert does not wait for (or need) it.
REPORT = f"{LAKE}/{MONITORING_REPORTS}dt={{{{ ds }}}}/report.html"


@dag(
    dag_id="churn_monitoring",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    user_defined_macros=USER_MACROS,
    params={
        "recompute": RECOMPUTE,
        "psi_threshold": Param(DEFAULTS.psi_threshold, type="number", minimum=0,
                               description="A column drifted at this population stability index or more."),
        "js_threshold": Param(DEFAULTS.js_threshold, type="number", exclusiveMinimum=0, maximum=1,
                              description="... or at this Jensen-Shannon distance (base 2) or more."),
        "min_drifted_features": Param(DEFAULTS.min_drifted_features, type="integer", minimum=1,
                                      description="A source drifted when its score or this many features drifted."),
        "min_rows": Param(DEFAULTS.min_rows, type="integer", minimum=1,
                          description="A source with fewer scored rows that day is not judged."),
        "auc_floor": Param(DEFAULTS.auc_floor, type="number", minimum=0.5, maximum=1.0,
                           description="Realized AUC below this (the training gate's floor) is decay."),
        "consecutive_days": Param(DEFAULTS.consecutive_days, type="integer", minimum=1,
                                  description="Decayed days in a row before retraining is triggered."),
    },
    tags=["churn", "monitoring"],
    doc_md=__doc__,
)
def churn_monitoring():
    wait_for_predictions = LakeKeySensor(
        task_id="wait_for_predictions",
        bucket_key=f"{LAKE}/{PREDICTIONS}dt={{{{ ds }}}}/_SUCCESS",
        deferrable=True,
        poke_interval=300,
        timeout=SENSOR_TIMEOUT.total_seconds(),
    )

    @task(inlets=[PREDICTIONS_ASSET, MODEL_ASSET])
    def resolve_baseline() -> dict:
        """The production model's version and the baseline registered with it."""
        from churn_ml import registry
        from churn_ml.settings import settings

        pointer = registry.published_model(f"{settings.lake}/{MODEL_POINTER_KEY}", with_baseline=True)
        return {"model_package_version": pointer["model_package_version"], "baseline_uri": pointer["baseline_uri"]}

    monitor = spark_job(
        task_id="monitor",
        job="churn_monitoring",
        glue_job_name="churn-monitoring",
        job_name_prefix="churn-monitoring",
        arguments={
            "--ds": "{{ ds }}",
            "--lake": LAKE,
            "--baseline": xcom("resolve_baseline", "baseline_uri"),
            "--model-version": xcom("resolve_baseline", "model_package_version"),
        },
        inputs=monitoring_job_inputs(LAKE, xcom("resolve_baseline", "baseline_uri")),
    )

    @task
    def decide(ds: str | None = None, params: dict | None = None) -> dict:
        """Decayed today? Retraining due? Reads this day's and the previous days' summaries and decisions."""
        import logging

        from churn_ml import catalog, decay, monitoring_report
        from churn_ml.settings import settings

        catalog.register_partition("monitoring_daily", ds)  # the monitor job wrote it whole
        thresholds = decay.Thresholds.from_params(params)
        days = thresholds.consecutive_days
        summaries = monitoring_report.read_daily(f"{settings.lake}/{MONITORING}", ds, days, "summary.json")
        decisions = monitoring_report.read_daily(f"{settings.lake}/{MONITORING_REPORTS}", ds, days, "decision.json")
        decisions.pop(ds, None)  # this date's own earlier decision (a rerun) is what is being replaced
        decision = decay.decide(ds, summaries, decisions, thresholds)
        (logging.getLogger(__name__).warning if decision["retrain"] else logging.getLogger(__name__).info)(
            "DECISION for %s: %s", ds, decision["reason"])
        return decision

    @task
    def write_report(decision: dict, ds: str | None = None, params: dict | None = None) -> dict:
        """The day's report (HTML, plots embedded) and decision, beside each other; logs where they are."""
        import logging

        from churn_ml import decay, lake, monitoring_report
        from churn_ml.cost import recorder
        from churn_ml.settings import settings

        summaries = monitoring_report.read_daily(f"{settings.lake}/{MONITORING}", ds, monitoring_report.HISTORY_DAYS,
                                                 "summary.json")
        cost = monitoring_report.cost_figures(recorder.records_of_days(ds, monitoring_report.COST_DAYS), summaries)
        page = monitoring_report.render(ds, summaries, decision, decay.Thresholds.from_params(params), cost)
        prefix = f"{settings.lake}/{MONITORING_REPORTS}dt={ds}/"
        lake.write_bytes(f"{prefix}report.html", page.encode("utf-8"), content_type=monitoring_report.CONTENT_TYPE)
        lake.write_json(f"{prefix}decision.json", decision)
        logging.getLogger(__name__).info("REPORT: %s (S3 console: %s)", f"{prefix}report.html",
                                         lake.browse_url(f"{prefix}report.html"))
        return {"report": f"{prefix}report.html", "retrain": decision["retrain"]}

    @task
    def record_costs() -> dict:
        """The endpoint's and the streaming job's last 7 UTC days, priced into the cost ledger."""
        from airflow.sdk import get_current_context

        from churn_ml.cost import recorder

        return recorder.record_daily_costs(get_current_context())

    @task.short_circuit
    def decay_detected(decision: dict) -> bool:
        """Stops here (no alert, no retraining) unless retraining is due."""
        return bool(decision["retrain"])

    alert = SnsPublishOperator(
        task_id="alert",
        target_arn="{{ churn.alerts_topic_arn }}",
        subject="churn model decayed: retraining triggered for {{ ds }}",
        message=f"churn_monitoring {{{{ ds }}}}: {REASON}. Report: {REPORT}",
        aws_conn_id=AWS_CONN_ID,
    )

    trigger_retraining = RetrainingTriggerOperator(
        task_id="trigger_retraining",
        trigger_dag_id="churn_training",
        trigger_run_id="retrain__{{ ds }}",
        logical_date="{{ logical_date }}",
        conf={"triggered_by": "churn_monitoring", "monitoring_date": "{{ ds }}", "reason": REASON},
        note=f"Retraining triggered by churn_monitoring for {{{{ ds }}}}: {REASON}",
        skip_when_already_exists=True,
    )

    decision = decide()
    chain(wait_for_predictions, resolve_baseline(), monitor, decision)

    report = write_report(decision)
    costs = record_costs()  # beside the chain: its failure fails the run but holds no other task back
    decay_detected(decision) >> [alert, trigger_retraining]
    run_cost_after(report, alert, trigger_retraining, costs)


churn_monitoring()
