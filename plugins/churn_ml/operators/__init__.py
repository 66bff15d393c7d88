"""The project's operators and sensor: the Amazon provider's, plus job identity and re-attach.

Organised by service as the provider is: ``emr_serverless``, ``glue``, ``sagemaker``, ``s3`` (the
lake sensor), ``dag_runs``; ``base`` holds what every job-starting operator shares (a job is
identified by its code version, its inputs and its request; a retry or an unchanged rerun reuses
the job, a change starts a new one); ``spark`` picks the Spark backend. The DAGs import from here.
"""

from __future__ import annotations

from churn_ml.operators.dag_runs import RetrainingTriggerOperator
from churn_ml.operators.emr_serverless import SparkOnEmrServerlessOperator
from churn_ml.operators.glue import GlueJobDefinitionError, SparkOnGlueOperator, StartOnlyGlueJobHook
from churn_ml.operators.s3 import LakeKeySensor
from churn_ml.operators.sagemaker import (
    BatchScoringOperator,
    ChurnTrainingOperator,
    ChurnTuningOperator,
    DeploymentError,
    EndpointDeployOperator,
    ModelNotApproved,
    SageMakerJobFailed,
)
from churn_ml.operators.spark import spark_job

__all__ = [
    "BatchScoringOperator",
    "ChurnTrainingOperator",
    "ChurnTuningOperator",
    "DeploymentError",
    "EndpointDeployOperator",
    "GlueJobDefinitionError",
    "LakeKeySensor",
    "ModelNotApproved",
    "RetrainingTriggerOperator",
    "SageMakerJobFailed",
    "SparkOnEmrServerlessOperator",
    "SparkOnGlueOperator",
    "StartOnlyGlueJobHook",
    "spark_job",
]
