"""
### churn_batch_scoring — daily churn scores for every active customer

1. **wait_for_scoring_input** — waits for the day's `scoring_input/dt=<ds>/_SUCCESS`, written by
   `churn_features` for the same `ds` (reschedule mode: no worker slot is held while it waits).
2. **resolve_model** — reads the production model pointer `published/churn/latest.json` (written by
   `churn_training`'s `publish_model`).
3. **list_scoring_input** — writes the SageMaker manifest of the day's data objects, so the
   transform never sees the `_SUCCESS` marker.
4. **batch_transform** — SageMaker batch transform (CreateModel + CreateTransformJob) of the
   manifest: one record per line, `MultiRecord` batches up to 6 MB, `InputFilter $[1:]` drops the
   customer id before inference, `JoinSource Input` appends the score, `OutputFilter $[0,-1]` keeps
   `customer_id,score`. Its output goes to a staging prefix of this run
   (`_staging/predictions/dt=<ds>/<run>/`), never straight into the partition readers use.
5. **publish_predictions** — checks every input has its `.out` with one row per record, then swaps
   the outputs into `predictions/dt=<ds>/` (each object replaced in place, then the objects the new
   set lacks removed), writes `_SUCCESS` (with the model version that scored the date, which
   `churn_monitoring` reads), registers the partition in the Glue Data Catalog (`churn_ml.catalog`) and
   emits the predictions Asset.
6. **check_predictions** — an SQL check through Athena (the `athena_default` connection; on the local
   target the control plane's Athena): the day's `predictions` have exactly one row per customer of the
   day's `scoring_input`, none missing, none extra (`churn_ml.checks`).

**Reruns and backfills** replace exactly that date, and never leave it empty: a run that fails
anywhere leaves the published partition as it was. `airflow backfill create --dag-id
churn_batch_scoring --from-date ... --to-date ...` (add `--reprocess-behavior completed` to rescore
dates that ran); clearing `batch_transform` or the whole run scores again. Each date scores its own
features partition with the model that is current when it runs.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.sql.operators.sql import SQLCheckOperator
from airflow.sdk import chain, dag, task

from churn_ml.checks import PREDICTIONS_MATCH_SCORING_INPUT
from churn_ml.dag_support import (
    ATHENA_CONN_ID,
    AWS_CONN_ID,
    DEFAULT_ARGS,
    LAKE,
    MODEL_ASSET,
    MODEL_POINTER_KEY,
    PREDICTIONS,
    PREDICTIONS_ASSET,
    PREDICTIONS_STAGING,
    RECOMPUTE,
    SCORING_INPUT,
    SCORING_INPUT_ASSET,
    SENSOR_TIMEOUT,
    USER_MACROS,
    run_cost_after,
)
from churn_ml.inputs import scoring_inputs
from churn_ml.operators import BatchScoringOperator, LakeKeySensor
from churn_ml.training_requests import transform_request, xcom

INPUT_PARTITION = f"{LAKE}/{SCORING_INPUT}dt={{{{ ds }}}}/"
# Per run: a rerun never writes into the staging of another run of the same date.
STAGING = f"{LAKE}/{PREDICTIONS_STAGING}dt={{{{ ds }}}}/{{{{ run_id | replace(':', '-') | replace('+', '-') }}}}/"
MANIFEST = f"{STAGING}scoring_input.manifest"
TRANSFORM_REQUEST = transform_request(model_data_url=xcom("resolve_model", "model_data_url"), manifest=MANIFEST,
                                      output_path=f"{STAGING}out/")


@dag(
    dag_id="churn_batch_scoring",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=2,
    default_args=DEFAULT_ARGS,
    user_defined_macros=USER_MACROS,
    params={"recompute": RECOMPUTE},
    tags=["churn", "scoring", "sagemaker"],
    doc_md=__doc__,
)
def churn_batch_scoring():
    wait_for_scoring_input = LakeKeySensor(
        task_id="wait_for_scoring_input",
        bucket_key=f"{INPUT_PARTITION}_SUCCESS",
        deferrable=True,
        poke_interval=120,
        timeout=SENSOR_TIMEOUT.total_seconds(),
    )

    @task(inlets=[SCORING_INPUT_ASSET, MODEL_ASSET])
    def resolve_model() -> dict:
        """The model to score with: the latest one churn_training published."""
        from churn_ml import registry
        from churn_ml.settings import settings

        return registry.published_model(f"{settings.lake}/{MODEL_POINTER_KEY}")

    @task
    def list_scoring_input(prefix: str, manifest: str) -> dict:
        """The manifest of the day's data objects (no markers): what the transform job scores."""
        from churn_ml import transform_io

        return {"manifest": manifest, "objects": len(transform_io.write_manifest(prefix, manifest))}

    batch_transform = BatchScoringOperator(
        task_id="batch_transform",
        job_name_prefix="churn-score",
        config=TRANSFORM_REQUEST,
        inputs=scoring_inputs(INPUT_PARTITION),
        # The version scoring, for its ledger record (a pointer written before the registry had none).
        cost_model_version="{{ ti.xcom_pull(task_ids='resolve_model').get('model_package_version') or '' }}",
        aws_conn_id=AWS_CONN_ID,
        check_interval=60,
        max_attempts=240,
    )

    @task(outlets=[PREDICTIONS_ASSET])
    def publish_predictions(transform: dict, model: dict, ds: str | None = None, run_id: str | None = None,
                            ti=None, outlet_events=None) -> dict:
        """Each input has its .out with one row per input record; then swap them into the partition."""
        from churn_ml import catalog, transform_io
        from churn_ml.settings import settings

        published = transform_io.publish_predictions(
            transform["Transform"], f"{settings.lake}/{PREDICTIONS}dt={ds}/", run_id=run_id,
            model_package_version=model.get("model_package_version"),
            job_identity=ti.xcom_pull(task_ids="batch_transform", key="job_identity"),
        )
        catalog.register_partition("predictions", ds)
        outlet_events[PREDICTIONS_ASSET].extra = {"ds": ds, "rows": published["rows"]}
        return {"ds": ds, **published}

    check_predictions = SQLCheckOperator(
        task_id="check_predictions",
        conn_id=ATHENA_CONN_ID,
        sql=PREDICTIONS_MATCH_SCORING_INPUT,
    )

    model = resolve_model()
    chain(
        wait_for_scoring_input,
        model,
        list_scoring_input(INPUT_PARTITION, MANIFEST),
        batch_transform,
        publish_predictions(batch_transform.output, model),
        check_predictions,
    )
    run_cost_after(check_predictions)


churn_batch_scoring()
