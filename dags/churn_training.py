"""
### churn_training — weekly: Bayesian tuning, final training on managed spot, quality gate, registry, deployment

1. **wait_for_labels** — waits for `labels/dt=<ds-30>/_SUCCESS`: the newest snapshot whose 30-day
   churn window has closed.
2. **build_training_set** — Spark job `include/jobs/churn_training_set.py`: features and labels of
   snapshots every `snapshot_every` days within `lookback_days`, split by time into
   train / validation / holdout (newest), CSV to `training_sets/ds=<ds>/`.
3. **inspect_training_set** — the build's manifest (rows, churn rate per split, fingerprint).
4. **resolve_champion** — the current approved model (the registry's newest Approved version) and
   the previous tuning job, for warm start.
5. **tune_hyperparameters** — SageMaker hyperparameter tuning, `Strategy: Bayesian`, objective
   `validation:auc`, on train + validation only (the holdout never influences the choice), spot
   trials with checkpoints, early stopping Auto, warm start from the previous tuning job. Locally:
   Optuna TPE over the same ranges, each trial a local training job.
6. **train_model** — the final model: the best trial's hyperparameters, managed spot with
   checkpoints (a retry or spot restart resumes them), scored on the holdout together with the
   champion. Locally, spot interruptions can be simulated (`CHURN_LOCAL_SPOT_INTERRUPTIONS`).
7. **quality_gate** — Approved only if holdout AUC >= `min_holdout_auc` and not worse than the
   champion's AUC on the same holdout by more than `max_auc_drop`; otherwise Rejected, with the reason.
8. **register_model** — a model package version with its status, metrics and model card (metrics,
   data range, hyperparameters, features, ROC + importance plot). `python -m churn_ml.registry list`.
9. **approved → publish_model** — only an Approved model moves the production pointer
   `published/churn/latest.json` (what batch scoring and deployment use; only this DAG's own role
   writes under `published/`, never a SageMaker job); a Rejected one stops here.
10. **deploy_model** — the approved version behind the real-time endpoint (`CHURN_ENDPOINT_NAME`):
   blue/green with a canary instance and auto rollback on the endpoint's alarms; the task fails
   unless the endpoint then serves the new config and scores the model's canary rows as training
   did. Locally: real server processes on 127.0.0.1 (`python -m local_aws.endpoints list`).

**Backfill / retrain for a date:** trigger with a logical date; job names derive from the dag id,
the date and the request, so clearing a task re-attaches to its job instead of training twice.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, chain, dag, task

from churn_ml.dag_support import (
    AWS_CONN_ID,
    CAPTURE,
    CHECKPOINTS,
    DEFAULT_ARGS,
    LABELS,
    LAKE,
    MODEL_ASSET,
    MODEL_POINTER_KEY,
    MODELS,
    RECOMPUTE,
    SENSOR_TIMEOUT,
    TRAINING_SETS,
    TUNING_MODELS,
    USER_MACROS,
    run_cost_after,
)
from churn_ml.inputs import training_set_job_inputs
from churn_ml.operators import (
    ChurnTrainingOperator,
    ChurnTuningOperator,
    EndpointDeployOperator,
    LakeKeySensor,
    spark_job,
)
from churn_ml.training_requests import STATIC_HYPERPARAMETERS, endpoint_request, training_request, tuning_request, xcom

TRAINING_SET = f"{LAKE}/{TRAINING_SETS}ds={{{{ ds }}}}"
FINGERPRINT = xcom("inspect_training_set", "fingerprint")
TUNING_REQUEST = tuning_request(training_set=TRAINING_SET, output_path=f"{LAKE}/{TUNING_MODELS}",
                                checkpoints=f"{LAKE}/{CHECKPOINTS}", fingerprint=FINGERPRINT, dag_id="churn_training")
TRAINING_REQUEST = training_request(training_set=TRAINING_SET, output_path=f"{LAKE}/{MODELS}",
                                    checkpoints=f"{LAKE}/{CHECKPOINTS}", fingerprint=FINGERPRINT,
                                    tuning_task_id="tune_hyperparameters", dag_id="churn_training")
# The model publish_model points production at, behind the real-time endpoint.
ENDPOINT_REQUEST = endpoint_request(model_data_url=xcom("publish_model", "model_data_url"),
                                    capture_destination=f"{LAKE}/{CAPTURE}",
                                    capture_sampling_percentage="{{ params.capture_sampling_percentage }}")


@dag(
    dag_id="churn_training",
    schedule="0 4 * * 1",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    user_defined_macros=USER_MACROS,
    params={
        "recompute": RECOMPUTE,
        "lookback_days": Param(180, type="integer", minimum=30, description="Snapshots considered for training."),
        "snapshot_every": Param(7, type="integer", minimum=1, description="Days between training snapshots."),
        "validation_snapshots": Param(3, type="integer", minimum=1),
        "holdout_snapshots": Param(3, type="integer", minimum=1),
        "static_hyperparameters": Param(STATIC_HYPERPARAMETERS, type="object",
                                        description="Hyperparameters every trial and the final model share."),
        "tuning": Param({"max_jobs": 12, "max_parallel": 2}, type="object",
                        description="Tuning budget: training jobs in all, and at once."),
        "min_holdout_auc": Param(0.70, type="number", minimum=0.5, maximum=1.0,
                                 description="Gate: absolute floor for the holdout AUC."),
        "max_auc_drop": Param(0.01, type="number", minimum=0.0, maximum=0.5,
                              description="Gate: how much worse than the champion's holdout AUC is tolerated."),
        "force_publish": Param(False, type="boolean",
                               description="Publish and deploy an approved model even though production serves one "
                                           "trained on newer data (a deliberate rollback)."),
        # 15 %: the monitoring job's min_rows (200 a day) from ~1,350 scored rows a day, and 85 % less
        # customer data stored than capturing everything (docs/monitoring.md: choosing the percentage).
        "capture_sampling_percentage": Param(15, type="integer", minimum=0, maximum=100,
                                             description="Share of the endpoint's invocations whose request and "
                                                         "response are captured to monitoring/capture/ (0: none)."),
    },
    tags=["churn", "training", "sagemaker"],
    doc_md=__doc__,
)
def churn_training():
    wait_for_labels = LakeKeySensor(
        task_id="wait_for_labels",
        bucket_key=f"{LAKE}/{LABELS}dt={{{{ macros.ds_add(ds, -30) }}}}/_SUCCESS",
        deferrable=True,
        poke_interval=300,
        timeout=SENSOR_TIMEOUT.total_seconds(),
    )

    build_training_set = spark_job(
        task_id="build_training_set",
        job="churn_training_set",
        glue_job_name="churn-training-set",
        job_name_prefix="churn-training-set",
        arguments={
            "--ds": "{{ ds }}",
            "--lake": LAKE,
            "--output": TRAINING_SET,
            "--lookback-days": "{{ params.lookback_days }}",
            "--snapshot-every": "{{ params.snapshot_every }}",
            "--validation-snapshots": "{{ params.validation_snapshots }}",
            "--holdout-snapshots": "{{ params.holdout_snapshots }}",
        },
        inputs=training_set_job_inputs(LAKE),
    )

    @task
    def inspect_training_set(ds: str | None = None) -> dict:
        """The build's manifest: split sizes and churn rates, and the fingerprint that names the jobs."""
        import logging

        from churn_ml import lake
        from churn_ml.settings import settings

        manifest = lake.read_json(f"{settings.lake}/{TRAINING_SETS}ds={ds}/_manifest.json")
        for split, stats in manifest["splits"].items():
            logging.getLogger(__name__).info(
                "%s: %d rows, churn rate %.2f%%, snapshots %s..%s", split, stats["rows"],
                100 * stats["positive_rate"], stats["snapshots"][0], stats["snapshots"][-1],
            )
        return {"fingerprint": manifest["fingerprint"], "splits": manifest["splits"]}

    @task
    def resolve_champion(ds: str | None = None) -> dict:
        """The champion (compared on the same holdout) and the tuning job to warm start from: both chosen
        among the models trained on data older than ds, so a rerun of the date asks for the same jobs."""
        from churn_ml import registry

        return registry.baseline_for(ds)

    tune_hyperparameters = ChurnTuningOperator(
        task_id="tune_hyperparameters",
        job_name_prefix="churn-hpo",
        config=TUNING_REQUEST,
        warm_start_parents=xcom("resolve_champion", "warm_start"),
        aws_conn_id=AWS_CONN_ID,
        check_interval=60,
    )

    train_model = ChurnTrainingOperator(
        task_id="train_model",
        job_name_prefix="churn-xgb",
        config=TRAINING_REQUEST,
        champion_model_uri=xcom("resolve_champion", "model_data_url"),
        aws_conn_id=AWS_CONN_ID,
        check_interval=60,
    )

    @task
    def quality_gate(training: dict, params: dict | None = None) -> dict:
        """Approved or Rejected against the floor and the champion on the same holdout; says why."""
        from churn_ml import registry

        return registry.gate_training_job(training["Training"], floor=float(params["min_holdout_auc"]),
                                          tolerance=float(params["max_auc_drop"]))

    @task
    def register_model(training: dict, decision: dict, tuning: dict, inspected: dict, ds: str | None = None,
                       run_id: str | None = None, params: dict | None = None) -> dict:
        """A registry version with the gate's status and reason, its model card, and whether it may be
        published: production only moves forward (see ``publication``)."""
        import logging

        from churn_ml import model_card, registry
        from churn_ml.cost import recorder
        from churn_ml.settings import settings

        job = training["Training"]
        model_data_url = job["ModelArtifacts"]["S3ModelArtifacts"]
        output = model_card.extract_training_output(model_data_url)
        card = model_card.build(
            job, ds=ds, training_set=f"{settings.lake}/{TRAINING_SETS}ds={ds}/", splits=inspected["splits"],
            evaluation=output.evaluation, metrics=decision["metrics"],
            tuning_job_name=tuning["Tuning"]["HyperParameterTuningJobName"], baseline=output.baseline,
            cost=recorder.training_cost(recorder.run_records(ds, "churn_training", run_id),
                                        training_task="train_model", tuning_task="tune_hyperparameters"),
        )
        publish, why = registry.publication(decision["status"], ds, bool(params["force_publish"]),
                                            f"{settings.lake}/{MODEL_POINTER_KEY}")
        card["publication"] = why
        version = registry.register(
            data_date=ds, tuning_job_name=card["tuning_job_name"], model_data_url=model_data_url,
            image_uri=settings.xgboost_image_uri, training_job_name=job["TrainingJobName"],
            approval=decision["status"], reason=decision["reason"], metrics=card["metrics"], card=card,
            card_plot=output.plot, evaluation_uri=output.evaluation_uri, baseline=output.baseline,
        )
        log = logging.getLogger(__name__)
        log.info("registered %s v%d as %s; model card %s", version["ModelPackageGroupName"],
                 version["ModelPackageVersion"], version["ModelApprovalStatus"], version["CardUri"])
        if version["BaselineUri"]:
            log.info("monitoring baseline %s", version["BaselineUri"])
        else:
            log.warning("v%d has no monitoring baseline (its training output had no baseline.json): the monitoring "
                        "job has nothing to compare its data with", version["ModelPackageVersion"])
        (log.info if publish else log.warning)("PUBLICATION: %s", why)
        return {**version, "Publish": publish, "PublishReason": why}

    @task.short_circuit
    def approved(version: dict) -> bool:
        """Stops here (publish_model and deploy_model skipped) unless the gate approved the model and
        production serves no model trained on newer data."""
        return bool(version["Publish"])

    @task(outlets=[MODEL_ASSET])
    def publish_model(version: dict, ds: str | None = None, params: dict | None = None, outlet_events=None) -> dict:
        """Point the production pointer (MODEL_POINTER_KEY: what batch scoring and deployment use) at the
        approved version."""
        from airflow.sdk.exceptions import AirflowSkipException

        from churn_ml import registry
        from churn_ml.settings import settings

        # Decided again at the moment of writing: runs of other dates (a backfill) may have published since.
        pointer = f"{settings.lake}/{MODEL_POINTER_KEY}"
        publish, why = registry.publication(version["ModelApprovalStatus"], ds, bool(params["force_publish"]), pointer)
        if not publish:
            raise AirflowSkipException(why)
        record = registry.publish(version, ds, pointer)
        outlet_events[MODEL_ASSET].extra = {
            "model_package_version": version["ModelPackageVersion"], "holdout_auc": version["Metrics"].get("holdout:auc"),
        }
        return record

    inspected = inspect_training_set()
    champion = resolve_champion()
    chain(wait_for_labels, build_training_set, inspected, champion, tune_hyperparameters, train_model)
    decision = quality_gate(train_model.output)
    version = register_model(train_model.output, decision, tune_hyperparameters.output, inspected)
    deploy_model = EndpointDeployOperator(
        task_id="deploy_model",
        config=ENDPOINT_REQUEST,
        model_package_version=xcom("publish_model", "model_package_version"),
        expectations_uri=xcom("publish_model", "evaluation_uri"),
        aws_conn_id=AWS_CONN_ID,
        check_interval=30,
    )

    gate_open = approved(version)
    chain(gate_open, publish_model(version), deploy_model)
    run_cost_after(deploy_model)


churn_training()
