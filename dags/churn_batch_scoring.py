"""
### churn_batch_scoring — daily churn scores for every active customer

1. **wait_for_scoring_input** — waits for the day's `scoring_input/dt=<ds>/_SUCCESS`, written by
   `churn_features` for the same `ds`.
2. **resolve_model** — reads `models/churn/latest.json` (written by `churn_training`).
3. **clear_predictions** — empties `predictions/dt=<ds>/`, so a rerun replaces the partition.
4. **batch_transform** — SageMaker batch transform (CreateModel + CreateTransformJob): one record
   per line, `MultiRecord` batches up to 6 MB, `InputFilter $[1:]` drops the customer id before
   inference, `JoinSource Input` appends the score, `OutputFilter $[0,-1]` keeps
   `customer_id,score`. One `<input>.out` per input object in `predictions/dt=<ds>/`.
5. **verify_predictions** — every input object has its `.out` with as many rows as it had records;
   writes the partition's `_SUCCESS` marker and emits the predictions Asset.

**Backfill:** `airflow backfill create --dag-id churn_batch_scoring --from-date ... --to-date ...`;
each date scores its own features partition with the model that is current when it runs.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import chain, dag, task

from churn_ml.dag_support import (
    AWS_CONN_ID,
    DEFAULT_ARGS,
    LAKE,
    MODEL_ASSET,
    MODEL_POINTER_KEY,
    PREDICTIONS_ASSET,
    SCORING_INPUT_ASSET,
    SENSOR_TIMEOUT,
    USER_MACROS,
)
from churn_ml.operators import LakeKeySensor, SageMakerTransformJobOperator

SCORING_INPUT = f"{LAKE}/scoring_input/dt={{{{ ds }}}}/"
PREDICTIONS = f"{LAKE}/predictions/dt={{{{ ds }}}}/"

TRANSFORM_REQUEST = {
    "Model": {
        "ExecutionRoleArn": "{{ churn.sagemaker_role_arn }}",
        "PrimaryContainer": {
            "Image": "{{ churn.xgboost_image_uri }}",
            "ModelDataUrl": "{{ ti.xcom_pull(task_ids='resolve_model')['model_data_url'] }}",
            "Environment": {
                "SAGEMAKER_PROGRAM": "inference.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": "{{ churn.artifacts }}/sagemaker/sourcedir.tar.gz",
            },
        },
        "Tags": [{"Key": "project", "Value": "churn"}],
    },
    "Transform": {
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": 6,
        "MaxConcurrentTransforms": 2,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": SCORING_INPUT}},
            "ContentType": "text/csv",
            "SplitType": "Line",
            "CompressionType": "None",
        },
        "TransformOutput": {"S3OutputPath": PREDICTIONS, "Accept": "text/csv", "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "{{ churn.transform_instance_type }}", "InstanceCount": 1},
        "DataProcessing": {"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
        "Tags": [{"Key": "project", "Value": "churn"}],
    },
}


@dag(
    dag_id="churn_batch_scoring",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=2,
    default_args=DEFAULT_ARGS,
    user_defined_macros=USER_MACROS,
    tags=["churn", "scoring", "sagemaker"],
    doc_md=__doc__,
)
def churn_batch_scoring():
    wait_for_scoring_input = LakeKeySensor(
        task_id="wait_for_scoring_input",
        bucket_key=f"{SCORING_INPUT}_SUCCESS",
        deferrable=True,
        poke_interval=120,
        timeout=SENSOR_TIMEOUT.total_seconds(),
    )

    @task(inlets=[SCORING_INPUT_ASSET, MODEL_ASSET])
    def resolve_model() -> dict:
        """The model to score with: the latest one churn_training published."""
        from churn_ml import lake
        from churn_ml.settings import settings

        pointer = f"{settings.lake}/{MODEL_POINTER_KEY}"
        if not lake.exists(pointer):
            raise FileNotFoundError(f"no published model at {pointer}: run the churn_training DAG first")
        return lake.read_json(pointer)

    @task
    def clear_predictions(ds: str | None = None) -> int:
        """Empty the day's predictions partition so the transform's output replaces it."""
        from churn_ml import lake
        from churn_ml.settings import settings

        return lake.delete_prefix(f"{settings.lake}/predictions/dt={ds}/")

    batch_transform = SageMakerTransformJobOperator(
        task_id="batch_transform",
        job_name_prefix="churn-score",
        config=TRANSFORM_REQUEST,
        aws_conn_id=AWS_CONN_ID,
        check_interval=60,
        max_attempts=240,
    )

    @task(outlets=[PREDICTIONS_ASSET])
    def verify_predictions(ds: str | None = None, outlet_events=None) -> dict:
        """Each input object has its .out with one row per input record; then mark the partition complete."""
        from churn_ml import lake
        from churn_ml.settings import settings

        inputs = [k for k in lake.list_keys(f"{settings.lake}/scoring_input/dt={ds}/") if not k.rsplit("/", 1)[-1].startswith("_")]
        rows = 0
        for key in inputs:
            out = key.replace("/scoring_input/", "/predictions/", 1) + ".out"
            if not lake.exists(out):
                raise FileNotFoundError(f"batch transform left no output {out} for input {key}")
            expected = sum(1 for line in lake.read_text(key).splitlines() if line.strip())
            got = [line for line in lake.read_text(out).splitlines() if line.strip()]
            if len(got) != expected:
                raise ValueError(f"{out} has {len(got)} predictions for {expected} input records")
            rows += len(got)
        lake.write_json(f"{settings.lake}/predictions/dt={ds}/_SUCCESS", {"rows": rows, "objects": len(inputs)})
        outlet_events[PREDICTIONS_ASSET].extra = {"ds": ds, "rows": rows}
        return {"ds": ds, "rows": rows, "objects": len(inputs), "uri": f"{settings.lake}/predictions/dt={ds}/"}

    chain(wait_for_scoring_input, resolve_model(), clear_predictions(), batch_transform, verify_predictions())


churn_batch_scoring()
