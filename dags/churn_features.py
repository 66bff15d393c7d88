"""
### churn_features — daily point-in-time features, labels and quarantine

For each day `ds` (a snapshot: the state at the start of that day):

1. **wait_for_raw_partitions** — waits for `raw/customers/dt=<ds-1>/_SUCCESS` and
   `raw/events/dt=<ds-1>/_SUCCESS`, the day that closed before the snapshot.
2. **build_features** — Spark job `include/jobs/churn_features.py` (EMR Serverless or Glue, by
   `CHURN_SPARK_BACKEND`; `spark-submit` on the local target): validates the new raw partition,
   writes clean Parquet to `clean/`, bad records with a reason to `errors/` (fails above
   `max_bad_fraction`), features for snapshot `ds` to `features/` and `scoring_input/`, and labels
   for the snapshot whose 30-day window just closed to `labels/`.
3. **report_features** — logs the run summary, registers every partition the job wrote (its summary lists
   them) in the Glue Data Catalog (`churn_ml.catalog`), drops the catalog's `scoring_input` partitions whose
   data expired, and emits the features / scoring-input / labels Assets.

**Inputs:** `s3://<lake>/raw/{customers,events}/dt=YYYY-MM-DD/` (JSON lines). **Outputs:** the
`dt=` partitions above; every one is replaced on rerun, never appended to.

**Days depend on each other:** the run for `ds` cleans raw `dt=ds-1` into `clean/`, and its
features read the clean partitions that earlier runs wrote. So `build_features` has
`depends_on_past`: a day's job starts only after the previous day's succeeded, whether the runs come
from the schedule, a backfill (whose runs Airflow may start in parallel) or a trigger; and the DAG
runs one date at a time.

**Backfill:** `airflow backfill create --dag-id churn_features --from-date 2026-06-01 --to-date 2026-06-30
--reprocess-behavior failed` (or *Trigger → Backfill* in the UI). Airflow asks a DAG with
`depends_on_past` for a reprocess behavior: `failed` runs the dates without a run and reruns the
failed ones; `completed` rebuilds every date in the range.
To build a long history in one Spark job instead of one run per day, trigger a single run with the
param `history_days` (e.g. 150).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, chain, dag, task

from churn_ml.dag_support import (
    DEFAULT_ARGS,
    FEATURES_ASSET,
    FEATURES_RUNS,
    LABELS_ASSET,
    LAKE,
    RAW,
    RECOMPUTE,
    SCORING_INPUT_ASSET,
    SENSOR_TIMEOUT,
    USER_MACROS,
    run_cost_after,
)
from churn_ml.inputs import features_job_inputs
from churn_ml.operators import LakeKeySensor, spark_job

PREVIOUS_DAY = "{{ macros.ds_add(ds, -1) }}"


@dag(
    dag_id="churn_features",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    user_defined_macros=USER_MACROS,
    params={
        "recompute": RECOMPUTE,
        "history_days": Param(
            0, type="integer", minimum=0, maximum=730,
            description="Also (re)build the snapshots of this many days before ds, in the same Spark job.",
        ),
        "max_bad_fraction": Param(
            0.05, type="number", minimum=0, maximum=1,
            description="Fail when a raw partition has a larger share of bad records (they are quarantined first).",
        ),
    },
    tags=["churn", "features", "spark"],
    doc_md=__doc__,
)
def churn_features():
    wait_for_raw = LakeKeySensor(
        task_id="wait_for_raw_partitions",
        bucket_key=[
            f"{LAKE}/{RAW}customers/dt={PREVIOUS_DAY}/_SUCCESS",
            f"{LAKE}/{RAW}events/dt={PREVIOUS_DAY}/_SUCCESS",
        ],
        deferrable=True,
        poke_interval=60,
        timeout=SENSOR_TIMEOUT.total_seconds(),
    )

    build_features = spark_job(
        task_id="build_features",
        job="churn_features",
        glue_job_name="churn-features",
        job_name_prefix="churn-features",
        depends_on_past=True,
        arguments={
            "--ds": "{{ ds }}",
            "--lake": LAKE,
            "--history-days": "{{ params.history_days }}",
            "--max-bad-fraction": "{{ params.max_bad_fraction }}",
        },
        inputs=features_job_inputs(LAKE),
    )

    @task(outlets=[FEATURES_ASSET, SCORING_INPUT_ASSET, LABELS_ASSET])
    def report_features(ds: str | None = None, outlet_events=None) -> dict:
        """Read the job's run summary; fail if it wrote no features; register its partitions in the catalog; tag
        the Asset events with ds."""
        import logging

        from churn_ml import catalog, lake
        from churn_ml.settings import settings

        log = logging.getLogger(__name__)
        uri = f"{settings.lake}/{FEATURES_RUNS}ds={ds}/summary.json"
        if not lake.exists(uri):
            raise FileNotFoundError(
                f"the features job finished but wrote no run summary at {uri}; it writes one last, so it did not "
                "complete its work: see the Spark job's logs (build_features) and rerun the date"
            )
        summary = lake.read_json(uri)
        if not summary["features"]["rows"]:
            raise ValueError(f"the features job wrote no feature rows for {ds}: no active customers?")
        report = {
            "ds": ds,
            "feature_rows": summary["features"]["rows"],
            "snapshots": summary["features"]["snapshots"],
            "label_rows": summary["labels"]["rows"],
            "label_positives": summary["labels"]["positives"],
            "quarantined": {e: s["quarantined"] for e, s in summary["entities"].items()},
            "validated_records": {e: s["records"] for e, s in summary["entities"].items()},
        }
        log.info("features summary: %s", report)
        report["registered"] = len(catalog.register_partitions(catalog.features_run_partitions(summary)))
        report["expired_scoring_input"] = catalog.drop_expired("scoring_input")
        for asset in (FEATURES_ASSET, SCORING_INPUT_ASSET, LABELS_ASSET):
            outlet_events[asset].extra = {"ds": ds}
        return report

    report = report_features()
    chain(wait_for_raw, build_features, report)
    run_cost_after(report)


churn_features()
