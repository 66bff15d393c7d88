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
   did. Locally: real server processes on 127.0.0.1 (`python -m churn_ml.local.endpoints list`).

**Backfill / retrain for a date:** trigger with a logical date; job names derive from the dag id,
the date and the request, so clearing a task re-attaches to its job instead of training twice.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, chain, dag, task

from churn_ml.dag_support import (
    AWS_CONN_ID,
    CHECKPOINTS,
    DEFAULT_ARGS,
    LABELS,
    LAKE,
    MODEL_ASSET,
    MODEL_POINTER_KEY,
    MODELS,
    SENSOR_TIMEOUT,
    TRAINING_SETS,
    TUNING_MODELS,
    USER_MACROS,
)
from churn_ml.operators import (
    LakeKeySensor,
    SageMakerEndpointDeployOperator,
    SageMakerTrainingJobOperator,
    SageMakerTuningJobOperator,
    spark_job,
)

TRAINING_SET = f"{LAKE}/{TRAINING_SETS}ds={{{{ ds }}}}"
# Fixed for every trial and the final model (trigger form: "static_hyperparameters").
STATIC_HYPERPARAMETERS = {"num_round": 600, "early_stopping_rounds": 40, "seed": 42, "checkpoint_every": 50}
# The search space; the values the final model uses come from the tuning job, never from here.
TUNING_RANGES = {
    "IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "2", "MaxValue": "8", "ScalingType": "Linear"}],
    "ContinuousParameterRanges": [
        {"Name": "eta", "MinValue": "0.01", "MaxValue": "0.3", "ScalingType": "Logarithmic"},
        {"Name": "min_child_weight", "MinValue": "1", "MaxValue": "30", "ScalingType": "Logarithmic"},
        {"Name": "subsample", "MinValue": "0.5", "MaxValue": "1.0", "ScalingType": "Linear"},
        {"Name": "colsample_bytree", "MinValue": "0.5", "MaxValue": "1.0", "ScalingType": "Linear"},
        {"Name": "reg_lambda", "MinValue": "0.1", "MaxValue": "20", "ScalingType": "Logarithmic"},
    ],
}
TUNED = [r["Name"] for kind in TUNING_RANGES.values() for r in kind]
OBJECTIVE = "validation:auc"
# What train.py prints, as SageMaker parses it into FinalMetricDataList (at most 40 definitions).
METRIC_DEFINITIONS = [
    {"Name": f"{split}:{metric}", "Regex": rf"^{split}:{metric}: ([0-9.]+)"}
    for split in ("validation", "holdout", "champion:holdout")
    for metric in ("auc", "pr_auc", "logloss", "brier", "lift_at_10")
] + [{"Name": "holdout:best_single_feature_auc", "Regex": r"^holdout:best_single_feature_auc: ([0-9.]+)"}]
BEST = "ti.xcom_pull(task_ids='tune_hyperparameters')['Tuning']['BestTrainingJob']['TunedHyperParameters']"
CHAMPION = "ti.xcom_pull(task_ids='resolve_champion')"


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


def _static(name: str) -> str:
    return f"{{{{ params.static_hyperparameters['{name}'] }}}}"


SOURCE = {
    "sagemaker_program": "train.py",
    "sagemaker_submit_directory": "{{ churn.artifacts }}/sagemaker/sourcedir.tar.gz",
    # Part of the request, so new training data means a new job (and a retry of the same data, the same job).
    "training_set_fingerprint": "{{ ti.xcom_pull(task_ids='inspect_training_set')['fingerprint'] }}",
}
ALGORITHM = {
    "TrainingImage": "{{ churn.xgboost_image_uri }}",
    "TrainingInputMode": "File",
    "MetricDefinitions": METRIC_DEFINITIONS,
}
# Managed spot: MaxWaitTimeInSeconds (>= MaxRuntimeInSeconds) bounds the wait for capacity plus the
# training; checkpoints let an interrupted job resume instead of starting over.
SPOT = {
    "EnableManagedSpotTraining": True,
    "StoppingCondition": {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200},
    "CheckpointConfig": {"S3Uri": f"{LAKE}/{CHECKPOINTS}", "LocalPath": "/opt/ml/checkpoints"},
}
RESOURCES = {"InstanceType": "{{ churn.training_instance_type }}", "InstanceCount": 1, "VolumeSizeInGB": 10}

TUNING_REQUEST = {
    "HyperParameterTuningJobConfig": {
        "Strategy": "Bayesian",
        "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": OBJECTIVE},
        "ResourceLimits": {
            "MaxNumberOfTrainingJobs": "{{ params.tuning['max_jobs'] }}",
            "MaxParallelTrainingJobs": "{{ params.tuning['max_parallel'] }}",
        },
        "ParameterRanges": TUNING_RANGES,
        "TrainingJobEarlyStoppingType": "Auto",
    },
    "TrainingJobDefinition": {
        "StaticHyperParameters": {**{k: _static(k) for k in STATIC_HYPERPARAMETERS}, **SOURCE},
        "AlgorithmSpecification": ALGORITHM,
        "RoleArn": "{{ churn.sagemaker_role_arn }}",
        "InputDataConfig": [_channel("train"), _channel("validation")],
        "OutputDataConfig": {"S3OutputPath": f"{LAKE}/{TUNING_MODELS}"},
        "ResourceConfig": RESOURCES,
        **SPOT,
    },
    "Tags": [{"Key": "project", "Value": "churn"}, {"Key": "dag_id", "Value": "churn_training"}],
}

TRAINING_REQUEST = {
    "AlgorithmSpecification": ALGORITHM,
    "HyperParameters": {
        **{k: _static(k) for k in STATIC_HYPERPARAMETERS},
        **{k: f"{{{{ {BEST}['{k}'] }}}}" for k in TUNED},
        **SOURCE,
    },
    "InputDataConfig": [_channel("train"), _channel("validation"), _channel("holdout")],
    "OutputDataConfig": {"S3OutputPath": f"{LAKE}/{MODELS}"},
    "ResourceConfig": RESOURCES,
    "RoleArn": "{{ churn.sagemaker_role_arn }}",
    **SPOT,
    "Tags": [{"Key": "project", "Value": "churn"}, {"Key": "dag_id", "Value": "churn_training"}],
}


# Deployment: the approved model behind the real-time endpoint. Two instances, so the canary is one
# of them; traffic shifts blue/green and rolls back on the endpoint's alarms (created with the
# infrastructure, named after the endpoint).
ENDPOINT_REQUEST = {
    "Model": {
        "ExecutionRoleArn": "{{ churn.sagemaker_role_arn }}",
        "PrimaryContainer": {
            "Image": "{{ churn.xgboost_image_uri }}",
            "ModelDataUrl": "{{ ti.xcom_pull(task_ids='publish_model')['model_data_url'] }}",
            "Environment": {
                "SAGEMAKER_PROGRAM": "inference.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": "{{ churn.artifacts }}/sagemaker/sourcedir.tar.gz",
            },
        },
        "Tags": [{"Key": "project", "Value": "churn"}],
    },
    "EndpointConfig": {
        "ProductionVariants": [{
            "VariantName": "primary",
            "InstanceType": "{{ churn.endpoint_instance_type }}",
            "InitialInstanceCount": "{{ churn.endpoint_instance_count }}",
        }],
        "Tags": [{"Key": "project", "Value": "churn"}],
    },
    "Endpoint": {
        "EndpointName": "{{ churn.endpoint_name }}",
        "DeploymentConfig": {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {
                    "Type": "CANARY",
                    "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
                    "WaitIntervalInSeconds": 600,
                },
                "TerminationWaitInSeconds": 600,
                "MaximumExecutionTimeoutInSeconds": 3600,
            },
            "AutoRollbackConfiguration": {
                "Alarms": [
                    {"AlarmName": "{{ churn.endpoint_name }}-invocation-errors"},
                    {"AlarmName": "{{ churn.endpoint_name }}-model-latency"},
                ]
            },
        },
    },
}
PUBLISHED = "ti.xcom_pull(task_ids='publish_model')"


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
        import logging

        from churn_ml import registry

        earlier = registry.trained_before(ds)
        champion = registry.champion_for(ds)
        warm_start = next((v["TuningJobName"] for v in reversed(earlier) if v.get("TuningJobName")), "")
        logging.getLogger(__name__).info(
            "champion: %s; warm start from: %s",
            f"v{champion['ModelPackageVersion']} ({champion['ModelDataUrl']})" if champion else "none (first model)",
            warm_start or "none",
        )
        return {
            "model_data_url": champion["ModelDataUrl"] if champion else "",
            "version": champion["ModelPackageVersion"] if champion else None,
            "warm_start": warm_start,
        }

    tune_hyperparameters = SageMakerTuningJobOperator(
        task_id="tune_hyperparameters",
        job_name_prefix="churn-hpo",
        config=TUNING_REQUEST,
        warm_start_parents=f"{{{{ {CHAMPION}['warm_start'] }}}}",
        aws_conn_id=AWS_CONN_ID,
        check_interval=60,
    )

    train_model = SageMakerTrainingJobOperator(
        task_id="train_model",
        job_name_prefix="churn-xgb",
        config=TRAINING_REQUEST,
        champion_model_uri=f"{{{{ {CHAMPION}['model_data_url'] }}}}",
        aws_conn_id=AWS_CONN_ID,
        check_interval=60,
    )

    @task
    def quality_gate(training: dict, params: dict | None = None) -> dict:
        """Approved or Rejected against the floor and the champion on the same holdout; says why."""
        import logging

        from churn_ml import registry
        from churn_ml.local.training import interruptions_of

        job = training["Training"]
        metrics = {m["MetricName"]: round(float(m["Value"]), 6) for m in job.get("FinalMetricDataList", [])}
        status, reason = registry.gate(
            metrics, floor=float(params["min_holdout_auc"]), tolerance=float(params["max_auc_drop"])
        )
        log = logging.getLogger(__name__)
        log.info("training job %s: %d spot interruption(s), %s s billable of %s s",
                 job["TrainingJobName"], interruptions_of(job), job.get("BillableTimeInSeconds"),
                 job.get("TrainingTimeInSeconds"))
        for name in sorted(k for k in metrics if k.startswith("holdout:")):
            champion = metrics.get(f"champion:{name}")
            log.info("%-32s challenger %.4f   champion %s", name, metrics[name],
                     "-" if champion is None else f"{champion:.4f}")
        if status == registry.APPROVED:
            log.info("QUALITY GATE: APPROVED. %s", reason)
        else:
            log.warning("QUALITY GATE: REJECTED. %s. The model is registered as Rejected and is not published.", reason)
        return {"status": status, "reason": reason, "metrics": metrics}

    @task
    def register_model(training: dict, decision: dict, tuning: dict, inspected: dict, ds: str | None = None,
                       params: dict | None = None) -> dict:
        """A registry version with the gate's status and reason, its model card, and whether it may be
        published: production only moves forward (see ``publication``)."""
        import io
        import json
        import logging
        import tarfile

        from churn_ml import lake, registry
        from churn_ml.settings import settings

        job = training["Training"]
        output_tar = job["ModelArtifacts"]["S3ModelArtifacts"].rsplit("/", 1)[0] + "/output.tar.gz"
        with tarfile.open(fileobj=io.BytesIO(lake.read_bytes(output_tar))) as tar:
            evaluation = json.load(tar.extractfile("evaluation.json"))
            plot = tar.extractfile("model_card.png").read() if "model_card.png" in tar.getnames() else None
        evaluation_uri = output_tar.rsplit("/", 1)[0] + "/evaluation.json"
        lake.write_json(evaluation_uri, evaluation)
        metrics = decision["metrics"]
        card = {
            "ds": ds,
            "training_set": f"{settings.lake}/{TRAINING_SETS}ds={ds}/",
            "splits": inspected["splits"],
            "hyperparameters": {k: v for k, v in job["HyperParameters"].items()
                                if not k.startswith("sagemaker_") and k != "training_set_fingerprint"},
            "features": evaluation["features"],
            "rounds": evaluation["rounds"],
            "metrics": {k: v for k, v in metrics.items() if not k.startswith("champion:")},
            "champion_metrics": {k: v for k, v in metrics.items() if k.startswith("champion:")},
            "tuning_job_name": tuning["Tuning"]["HyperParameterTuningJobName"],
            "spot": {"training_seconds": job.get("TrainingTimeInSeconds"),
                     "billable_seconds": job.get("BillableTimeInSeconds")},
        }
        publish, why = registry.publication(decision["status"], ds, bool(params["force_publish"]),
                                            f"{settings.lake}/{MODEL_POINTER_KEY}")
        card["publication"] = why
        version = registry.register(
            data_date=ds,
            tuning_job_name=card["tuning_job_name"],
            model_data_url=job["ModelArtifacts"]["S3ModelArtifacts"],
            image_uri=settings.xgboost_image_uri,
            training_job_name=job["TrainingJobName"],
            approval=decision["status"],
            reason=decision["reason"],
            metrics={k: v for k, v in metrics.items() if not k.startswith("champion:")},
            card=card,
            card_plot=plot,
            evaluation_uri=evaluation_uri,
        )
        log = logging.getLogger(__name__)
        log.info("registered %s v%d as %s; model card %s", version["ModelPackageGroupName"],
                 version["ModelPackageVersion"], version["ModelApprovalStatus"], version["CardUri"])
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

        from churn_ml import lake, registry
        from churn_ml.settings import settings

        # Decided again at the moment of writing: runs of other dates (a backfill) may have published since.
        publish, why = registry.publication(version["ModelApprovalStatus"], ds, bool(params["force_publish"]),
                                            f"{settings.lake}/{MODEL_POINTER_KEY}")
        if not publish:
            raise AirflowSkipException(why)

        record = {
            "ds": ds,
            "model_package_version": version["ModelPackageVersion"],
            "model_package_arn": version["ModelPackageArn"],
            "training_job_name": version["TrainingJobName"],
            "model_data_url": version["ModelDataUrl"],
            "evaluation_uri": version.get("EvaluationUri", ""),
            "metrics": version["Metrics"],
        }
        lake.write_json(f"{settings.lake}/{MODEL_POINTER_KEY}", record)
        outlet_events[MODEL_ASSET].extra = {
            "model_package_version": version["ModelPackageVersion"], "holdout_auc": version["Metrics"].get("holdout:auc"),
        }
        return record

    inspected = inspect_training_set()
    champion = resolve_champion()
    chain(wait_for_labels, build_training_set, inspected, champion, tune_hyperparameters, train_model)
    decision = quality_gate(train_model.output)
    version = register_model(train_model.output, decision, tune_hyperparameters.output, inspected)
    deploy_model = SageMakerEndpointDeployOperator(
        task_id="deploy_model",
        config=ENDPOINT_REQUEST,
        model_package_version=f"{{{{ {PUBLISHED}['model_package_version'] }}}}",
        expectations_uri=f"{{{{ {PUBLISHED}['evaluation_uri'] }}}}",
        aws_conn_id=AWS_CONN_ID,
        check_interval=30,
    )

    gate_open = approved(version)
    chain(gate_open, publish_model(version), deploy_model)


churn_training()
