"""
### churn_training — weekly XGBoost training on SageMaker, evaluated on a time-based holdout

1. **wait_for_labels** — waits for `labels/dt=<ds-30>/_SUCCESS`: the newest snapshot whose 30-day
   churn window has closed.
2. **build_training_set** — Spark job `include/jobs/churn_training_set.py`: joins features and labels
   of snapshots every `snapshot_every` days within `lookback_days`, split by time into
   train / validation / holdout (newest), CSV to `training_sets/ds=<ds>/`.
3. **inspect_training_set** — reads the build's manifest (rows, churn rate per split, fingerprint).
4. **train_model** — SageMaker training job, script mode (`include/sagemaker/train.py` in the
   XGBoost framework container; the same script in a local `/opt/ml`-shaped sandbox on the local
   target). Metrics reach the job description through `MetricDefinitions`.
5. **record_evaluation** — checks the holdout metrics (AUC, PR-AUC, logloss) against the sanity floor
   `min_holdout_auc`, writes `evaluation.json` next to `model.tar.gz`, and points
   `models/churn/latest.json` at the new model (the model batch scoring uses).

**Backfill / retrain for a date:** trigger with a logical date; the training job name is derived
from the dag id, the date and the request, so clearing a task re-attaches to its job instead of
training twice. Changing a hyperparameter (trigger form) or the training data gives a new job.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, chain, dag, task

from churn_ml.dag_support import (
    AWS_CONN_ID,
    DEFAULT_ARGS,
    LAKE,
    MODEL_ASSET,
    MODEL_POINTER_KEY,
    SENSOR_TIMEOUT,
    USER_MACROS,
)
from churn_ml.operators import LakeKeySensor, SageMakerTrainingJobOperator, spark_job

TRAINING_SET = f"{LAKE}/training_sets/ds={{{{ ds }}}}"
HYPERPARAMETERS = {
    "num_round": 400,
    "max_depth": 4,
    "eta": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 5,
    "reg_lambda": 1.0,
    "early_stopping_rounds": 40,
    "seed": 42,
}
# What train.py prints, as SageMaker parses it into the job's FinalMetricDataList.
METRIC_DEFINITIONS = [
    {"Name": f"{split}:{metric}", "Regex": rf"^{split}:{metric}: ([0-9.]+)"}
    for split in ("validation", "holdout")
    for metric in ("auc", "pr_auc", "logloss")
] + [{"Name": "holdout:best_single_feature_auc", "Regex": r"^holdout:best_single_feature_auc: ([0-9.]+)"}]


def _channel(name: str) -> dict:
    return {
        "ChannelName": name,
        "ContentType": "text/csv",
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": f"{TRAINING_SET}/{name}/",
                "S3DataDistributionType": "FullyReplicated",
            }
        },
    }


TRAINING_REQUEST = {
    "AlgorithmSpecification": {
        "TrainingImage": "{{ churn.xgboost_image_uri }}",
        "TrainingInputMode": "File",
        "MetricDefinitions": METRIC_DEFINITIONS,
    },
    "HyperParameters": {
        **{name: f"{{{{ params.hyperparameters['{name}'] }}}}" for name in HYPERPARAMETERS},
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": "{{ churn.artifacts }}/sagemaker/sourcedir.tar.gz",
        # Part of the request, so new training data means a new job (and a retry of the same data, the same job).
        "training_set_fingerprint": "{{ ti.xcom_pull(task_ids='inspect_training_set')['fingerprint'] }}",
    },
    "InputDataConfig": [_channel("train"), _channel("validation"), _channel("holdout")],
    "OutputDataConfig": {"S3OutputPath": f"{LAKE}/models/churn/"},
    "ResourceConfig": {"InstanceType": "{{ churn.training_instance_type }}", "InstanceCount": 1, "VolumeSizeInGB": 10},
    "RoleArn": "{{ churn.sagemaker_role_arn }}",
    "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    "Tags": [{"Key": "project", "Value": "churn"}, {"Key": "dag_id", "Value": "churn_training"}],
}


@dag(
    dag_id="churn_training",
    schedule="0 4 * * 1",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    user_defined_macros=USER_MACROS,
    params={
        "lookback_days": Param(180, type="integer", minimum=30, description="Snapshots considered for training."),
        "snapshot_every": Param(7, type="integer", minimum=1, description="Days between training snapshots."),
        "validation_snapshots": Param(3, type="integer", minimum=1),
        "holdout_snapshots": Param(3, type="integer", minimum=1),
        "hyperparameters": Param(HYPERPARAMETERS, type="object", description="XGBoost hyperparameters for train.py."),
        "min_holdout_auc": Param(0.70, type="number", minimum=0.5, maximum=1.0,
                                 description="Sanity floor: a model below it is never published."),
    },
    tags=["churn", "training", "sagemaker"],
    doc_md=__doc__,
)
def churn_training():
    wait_for_labels = LakeKeySensor(
        task_id="wait_for_labels",
        bucket_key=f"{LAKE}/labels/dt={{{{ macros.ds_add(ds, -30) }}}}/_SUCCESS",
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
    )

    @task
    def inspect_training_set(ds: str | None = None) -> dict:
        """The build's manifest: split sizes and churn rates, and the fingerprint that names the job."""
        import logging

        from churn_ml import lake
        from churn_ml.settings import settings

        manifest = lake.read_json(f"{settings.lake}/training_sets/ds={ds}/_manifest.json")
        for split, stats in manifest["splits"].items():
            logging.getLogger(__name__).info(
                "%s: %d rows, churn rate %.2f%%, snapshots %s..%s", split, stats["rows"],
                100 * stats["positive_rate"], stats["snapshots"][0], stats["snapshots"][-1],
            )
        return {"fingerprint": manifest["fingerprint"], "splits": manifest["splits"]}

    train_model = SageMakerTrainingJobOperator(
        task_id="train_model",
        job_name_prefix="churn-xgb",
        config=TRAINING_REQUEST,
        aws_conn_id=AWS_CONN_ID,
        check_interval=60,
        max_attempts=180,
    )

    @task(outlets=[MODEL_ASSET])
    def record_evaluation(training: dict, params: dict | None = None, ds: str | None = None, outlet_events=None) -> dict:
        """Holdout metrics from the job description; evaluation.json next to the model; latest pointer."""
        import logging

        from churn_ml import lake
        from churn_ml.settings import settings

        job = training["Training"]
        metrics = {m["MetricName"]: round(float(m["Value"]), 6) for m in job.get("FinalMetricDataList", [])}
        if "holdout:auc" not in metrics:
            raise ValueError(
                f"training job {job['TrainingJobName']} reported no holdout:auc (metrics: {sorted(metrics)}); "
                "check that train.py got the holdout channel and that MetricDefinitions match its output"
            )
        floor = float(params["min_holdout_auc"])
        if metrics["holdout:auc"] < floor:
            raise ValueError(
                f"holdout AUC {metrics['holdout:auc']:.4f} is below the floor {floor:.2f}: the model is not "
                f"published. Inspect the training set and the job log of {job['TrainingJobName']}."
            )
        model_data_url = job["ModelArtifacts"]["S3ModelArtifacts"]
        record = {
            "ds": ds,
            "training_job_name": job["TrainingJobName"],
            "model_data_url": model_data_url,
            "hyperparameters": {k: v for k, v in job["HyperParameters"].items() if not k.startswith("sagemaker_")},
            "metrics": metrics,
        }
        lake.write_json(model_data_url.rsplit("/", 1)[0] + "/evaluation.json", record)
        lake.write_json(f"{settings.lake}/{MODEL_POINTER_KEY}", record)
        logging.getLogger(__name__).info("published model %s: %s", job["TrainingJobName"], metrics)
        outlet_events[MODEL_ASSET].extra = {"training_job_name": job["TrainingJobName"], "holdout_auc": metrics["holdout:auc"]}
        return record

    inspected = inspect_training_set()
    chain(wait_for_labels, build_training_set, inspected, train_model)
    record_evaluation(train_model.output)


churn_training()
