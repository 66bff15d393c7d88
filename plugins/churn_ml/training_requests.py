"""The SageMaker requests of the churn DAGs: the ``config`` dicts their operators send.

Tuning (CreateHyperParameterTuningJob), the final training (CreateTrainingJob), the model
(CreateModel: one definition for the endpoint and for batch transform) with the endpoint
deployment (CreateEndpointConfig with its data capture / CreateEndpoint / UpdateEndpoint) and the
batch transform (CreateTransformJob).

Pure functions and constants, no Airflow, boto3 or SageMaker imports: DAG files build their requests
with them at parse time, which must stay light. The strings are Jinja templates, rendered when the
task runs (``config`` is a template field of every SageMaker operator): ``{{ churn.* }}`` is the
settings macro every churn DAG defines (``dag_support.USER_MACROS``), ``{{ params.* }}`` the
training DAG's params, and the callers pass what depends on their DAG: where the data is (lake URIs)
and the XComs of their upstream tasks (``xcom``). Each call returns new dicts: the operators fill in
names and cast integers in the dict they are given.
"""

from __future__ import annotations

from churn_ml import settings as cfg

# Fixed for every trial and the final model; the training DAG's param "static_hyperparameters"
# (its default) can override them per run.
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
SPLITS = ("train", "validation", "holdout")  # the training set's folders (include/jobs/churn_training_set.py)
# What churn_train.py prints, as SageMaker parses it into FinalMetricDataList (at most 40 definitions).
METRIC_DEFINITIONS = [
    {"Name": f"{split}:{metric}", "Regex": rf"^{split}:{metric}: ([0-9.]+)"}
    for split in ("validation", "holdout", "champion:holdout")
    for metric in ("auc", "pr_auc", "logloss", "brier", "lift_at_10")
] + [{"Name": "holdout:best_single_feature_auc", "Regex": r"^holdout:best_single_feature_auc: ([0-9.]+)"}]

ROLE_ARN = "{{ churn.sagemaker_role_arn }}"
IMAGE = "{{ churn.xgboost_image_uri }}"
# The build of include/sagemaker/ in the code version the DAGs use when the task renders (churn_ml.artifacts,
# {{ churn.code }}): churn_train.py for training, inference.py for serving.
SOURCEDIR = "{{ churn.code }}/sagemaker/sourcedir.tar.gz"
# Managed spot: MaxWaitTimeInSeconds (>= MaxRuntimeInSeconds) bounds the wait for capacity plus the
# training; checkpoints let an interrupted job resume instead of starting over.
MAX_RUNTIME_SECONDS, MAX_WAIT_SECONDS = 3600, 7200
# The endpoint's data capture: both directions, bodies of these types written as text (CSV or JSON
# encoding in the capture record), any other type as BASE64 (SageMaker's rule).
CAPTURE_OPTIONS = [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]
CAPTURE_CONTENT_TYPES = {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]}


def xcom(task_id: str, *keys: str) -> str:
    """The template of what ``task_id`` returned, or of an item in it: ``{{ ti.xcom_pull(task_ids='t')['k'] }}``."""
    return "{{ " + f"ti.xcom_pull(task_ids='{task_id}')" + "".join(f"['{k}']" for k in keys) + " }}"


def _tags(dag_id: str | None = None) -> list[dict]:
    return [{"Key": "project", "Value": "churn"}, *([{"Key": "dag_id", "Value": dag_id}] if dag_id else [])]


def channel(training_set: str, name: str) -> dict:
    """The input channel ``name``: the CSV files under ``<training_set>/<name>/``."""
    return {
        "ChannelName": name,
        "ContentType": "text/csv",
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": f"{training_set}/{name}/",
                "S3DataDistributionType": "FullyReplicated",
            }
        },
    }


def _static_hyperparameters() -> dict[str, str]:
    return {k: f"{{{{ params.static_hyperparameters['{k}'] }}}}" for k in STATIC_HYPERPARAMETERS}


def _source(fingerprint: str) -> dict[str, str]:
    return {
        "sagemaker_program": "churn_train.py",
        "sagemaker_submit_directory": SOURCEDIR,
        # Part of the request, so new training data means a new job (and a retry of the same data, the same job).
        "training_set_fingerprint": fingerprint,
    }


def _algorithm() -> dict:
    return {
        "TrainingImage": IMAGE,
        "TrainingInputMode": "File",
        "MetricDefinitions": [dict(d) for d in METRIC_DEFINITIONS],
    }


def _spot(checkpoints: str) -> dict:
    return {
        "EnableManagedSpotTraining": True,
        "StoppingCondition": {"MaxRuntimeInSeconds": MAX_RUNTIME_SECONDS, "MaxWaitTimeInSeconds": MAX_WAIT_SECONDS},
        "CheckpointConfig": {"S3Uri": checkpoints, "LocalPath": "/opt/ml/checkpoints"},
    }


def _resources() -> dict:
    return {"InstanceType": "{{ churn.training_instance_type }}", "InstanceCount": 1, "VolumeSizeInGB": 10}


def tuning_request(*, training_set: str, output_path: str, checkpoints: str, fingerprint: str, dag_id: str) -> dict:
    """CreateHyperParameterTuningJob: Bayesian search of ``TUNING_RANGES`` for the best ``OBJECTIVE``.

    Trials see the train and validation channels of ``training_set`` only (the holdout never influences
    the choice), run on managed spot with checkpoints under ``checkpoints`` and write to ``output_path``.
    The budget is the DAG param ``tuning`` (``max_jobs``, ``max_parallel``); ``fingerprint`` (a template
    of the training set's fingerprint) makes new data a new job.
    """
    return {
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": OBJECTIVE},
            "ResourceLimits": {
                "MaxNumberOfTrainingJobs": "{{ params.tuning['max_jobs'] }}",
                "MaxParallelTrainingJobs": "{{ params.tuning['max_parallel'] }}",
            },
            "ParameterRanges": {kind: [dict(r) for r in ranges] for kind, ranges in TUNING_RANGES.items()},
            "TrainingJobEarlyStoppingType": "Auto",
        },
        "TrainingJobDefinition": {
            "StaticHyperParameters": {**_static_hyperparameters(), **_source(fingerprint)},
            "AlgorithmSpecification": _algorithm(),
            "RoleArn": ROLE_ARN,
            "InputDataConfig": [channel(training_set, "train"), channel(training_set, "validation")],
            "OutputDataConfig": {"S3OutputPath": output_path},
            "ResourceConfig": _resources(),
            **_spot(checkpoints),
        },
        "Tags": _tags(dag_id),
    }


def training_request(
    *, training_set: str, output_path: str, checkpoints: str, fingerprint: str, tuning_task_id: str, dag_id: str
) -> dict:
    """CreateTrainingJob of the final model: the best trial's value of every tuned hyperparameter (from
    what the task ``tuning_task_id`` returned), on all three splits, managed spot with checkpoints.

    The holdout channel is what the gate scores; the operator adds the champion's channel at run time.
    """
    best = ("Tuning", "BestTrainingJob", "TunedHyperParameters")
    return {
        "AlgorithmSpecification": _algorithm(),
        "HyperParameters": {
            **_static_hyperparameters(),
            **{k: xcom(tuning_task_id, *best, k) for k in TUNED},
            **_source(fingerprint),
        },
        "InputDataConfig": [channel(training_set, split) for split in SPLITS],
        "OutputDataConfig": {"S3OutputPath": output_path},
        "ResourceConfig": _resources(),
        "RoleArn": ROLE_ARN,
        **_spot(checkpoints),
        "Tags": _tags(dag_id),
    }


def model_request(*, model_data_url: str) -> dict:
    """CreateModel: the XGBoost container serving ``model_data_url`` with inference.py.

    The one model definition of both the endpoint and batch transform; the operators name it after its
    content, so the same artifact is the same model.
    """
    return {
        "ExecutionRoleArn": ROLE_ARN,
        "PrimaryContainer": {
            "Image": IMAGE,
            "ModelDataUrl": model_data_url,
            "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": SOURCEDIR},
        },
        "Tags": _tags(),
    }


def data_capture_config(*, destination: str, sampling_percentage: str) -> dict:
    """DataCaptureConfig of CreateEndpointConfig: requests and responses of ``sampling_percentage`` % of
    the invocations (a template of an integer 0-100) to ``destination``, which SageMaker lays out as
    ``<destination><endpoint>/<variant>/yyyy/mm/dd/hh/*.jsonl``; KMS key ``CHURN_CAPTURE_KMS_KEY_ID``.

    The rendered values are strings: ``resolve_data_capture`` makes the request SageMaker's.
    """
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": sampling_percentage,
        "DestinationS3Uri": destination,
        "KmsKeyId": "{{ churn.capture_kms_key_id }}",
        "CaptureOptions": [dict(o) for o in CAPTURE_OPTIONS],
        "CaptureContentTypeHeader": {k: list(v) for k, v in CAPTURE_CONTENT_TYPES.items()},
    }


def resolve_data_capture(endpoint_config: dict) -> dict:
    """The rendered EndpointConfig's DataCaptureConfig as SageMaker takes it, in place (and returned).

    Templates render to text, SageMaker wants an integer percentage: cast, and checked to be 0-100.
    0 % means no capture, said as SageMaker's SDK says it (``EnableCapture: False``; the endpoint
    writes nothing). The KmsKeyId is ``CHURN_CAPTURE_KMS_KEY_ID``, which the deploy sets to the template's
    data key (the one key the SageMaker role may use; locally the key the control plane creates); left
    empty with capture on, the task fails rather than capture with a key the monitoring roles cannot
    read. With capture off an empty KmsKeyId is left out. A config without DataCaptureConfig is returned as it is.
    """
    capture = endpoint_config.get("DataCaptureConfig")
    if capture is None:
        return endpoint_config
    value = capture.get("InitialSamplingPercentage")
    try:
        percentage = int(str(value).strip())
    except ValueError:
        percentage = None
    if percentage is None or not 0 <= percentage <= 100:
        raise ValueError(
            f"DataCaptureConfig.InitialSamplingPercentage must be a whole number from 0 to 100, got {value!r}; "
            "set the churn_training param capture_sampling_percentage (0 turns capture off)"
        )
    capture["InitialSamplingPercentage"] = percentage
    capture["EnableCapture"] = bool(capture.get("EnableCapture", True)) and percentage > 0
    if not capture.get("KmsKeyId"):
        if capture["EnableCapture"]:
            raise cfg.SettingsError(
                "CHURN_CAPTURE_KMS_KEY_ID is empty: the endpoint's data capture must be encrypted with the template's "
                "data key (stack output DataKeyArn), the only key the SageMaker role may use. Deploy with "
                "infra/deploy_mwaa.py --stack <stack> (it sets it), or set the churn_training param "
                "capture_sampling_percentage to 0 to deploy without capture"
            )
        capture.pop("KmsKeyId", None)
    return endpoint_config


def endpoint_request(*, model_data_url: str, capture_destination: str | None = None,
                     capture_sampling_percentage: str = "100") -> dict:
    """The model behind the real-time endpoint ``CHURN_ENDPOINT_NAME``: Model, EndpointConfig and Endpoint.

    ``CHURN_ENDPOINT_INSTANCE_COUNT`` instances (2 by default, so the canary is one of them); an update
    shifts traffic blue/green, canary first, and rolls back on the endpoint's alarms (created with the
    infrastructure, named after the endpoint). With a ``capture_destination`` the endpoint captures
    requests and responses there (``data_capture_config``); the deploying operator applies
    ``resolve_data_capture`` after rendering.
    """
    config = {
        "ProductionVariants": [{
            "VariantName": "primary",
            "InstanceType": "{{ churn.endpoint_instance_type }}",
            "InitialInstanceCount": "{{ churn.endpoint_instance_count }}",
        }],
        "Tags": _tags(),
    }
    if capture_destination:
        config["DataCaptureConfig"] = data_capture_config(destination=capture_destination,
                                                          sampling_percentage=capture_sampling_percentage)
    return {
        "Model": model_request(model_data_url=model_data_url),
        "EndpointConfig": config,
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


def transform_request(*, model_data_url: str, manifest: str, output_path: str) -> dict:
    """Model and CreateTransformJob: score the CSV objects ``manifest`` lists into ``output_path``.

    One record per line, ``MultiRecord`` batches up to 6 MB; ``InputFilter $[1:]`` drops the customer
    id before inference, ``JoinSource Input`` appends the score and ``OutputFilter $[0,-1]`` keeps
    ``customer_id,score``.
    """
    return {
        "Model": model_request(model_data_url=model_data_url),
        "Transform": {
            "BatchStrategy": "MultiRecord",
            "MaxPayloadInMB": 6,
            "MaxConcurrentTransforms": 2,
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": manifest}},
                "ContentType": "text/csv",
                "SplitType": "Line",
                "CompressionType": "None",
            },
            "TransformOutput": {"S3OutputPath": output_path, "Accept": "text/csv", "AssembleWith": "Line"},
            "TransformResources": {"InstanceType": "{{ churn.transform_instance_type }}", "InstanceCount": 1},
            "DataProcessing": {"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
            "Tags": _tags(),
        },
    }
