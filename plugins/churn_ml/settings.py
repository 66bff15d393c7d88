"""Deployment settings, read from the environment each time they are asked for (nothing is cached here).

The DAG files ask for a few at parse time, so changing one of those takes a re-parse of the DAGs:
CHURN_SPARK_BACKEND (which Spark operator a task is), CHURN_LAKE_BUCKET and CHURN_ARTIFACTS_BUCKET
(the paths in the requests) and CHURN_TASK_RETRIES (dag_support's default_args). The others are
read when a task, a trigger or the control plane runs.

| variable | default | meaning |
|---|---|---|
| ML_TARGET | local | `local` or `aws`: which target this deployment is, for the tools (`local_aws.code_deploy` refuses on `aws`). The DAGs and plugins do not branch on it: the AWS connection decides where every request goes (AWS, or the local control plane) |
| CHURN_LAKE_BUCKET | churn-lake | data lake bucket |
| CHURN_ARTIFACTS_BUCKET | churn-artifacts | bucket with the code versions of include/ (`code/<version>/`: Spark scripts, the churn library, SageMaker source bundles) and `code/CURRENT.json`, the version the DAGs run (churn_ml.artifacts) |
| CHURN_GLUE_DATABASE | churn_lake | the Glue Data Catalog database of the lake's tables (the template's `LakeDatabaseName`, stack output `LakeDatabase`; churn_ml.catalog registers their partitions) |
| CHURN_SPARK_BACKEND | emr_serverless | `emr_serverless` or `glue`: which service runs the Spark jobs on AWS |
| CHURN_AWS_CONN_ID | aws_default | Airflow connection for AWS |
| CHURN_ATHENA_CONN_ID | athena_default | Airflow connection (conn_type `athena`) of the data checks' SQL: its extra names the workgroup (`work_group`) and `region_name`, and on the local target the control plane's `endpoint_url` (scripts/env.sh, `local_aws.control_plane.athena_connection`); its schema is the Glue database |
| CHURN_ATHENA_WORKGROUP | churn | the Athena workgroup of the data checks (the template's `AthenaWorkGroup`, stack output `AthenaWorkGroup`; it enforces its encrypted results location, the lake's `_athena/`) |
| CHURN_EMR_APPLICATION_ID | - | EMR Serverless application id (emr_serverless). This and the next four name the deployment's resources: required on both targets, set by infra/deploy_mwaa.py from the stack's outputs on AWS and by scripts/env.sh from `local_aws.settings` locally |
| CHURN_EMR_EXECUTION_ROLE_ARN | - | job execution role for EMR Serverless |
| CHURN_SAGEMAKER_ROLE_ARN | - | SageMaker execution role |
| CHURN_XGBOOST_IMAGE_URI | - | SageMaker XGBoost framework image for the region (e.g. `...:1.7-1`); its account must be the template's SageMakerXGBoostImage entry for the region, the only one the SageMaker role may pull from |
| CHURN_TRAINING_INSTANCE_TYPE | ml.m5.xlarge | training instance type |
| CHURN_TRANSFORM_INSTANCE_TYPE | ml.m5.large | batch transform instance type |
| CHURN_ENDPOINT_NAME | churn-xgboost | the real-time endpoint the training DAG deploys to |
| CHURN_ENDPOINT_INSTANCE_TYPE | ml.m5.large | endpoint instance type |
| CHURN_ENDPOINT_INSTANCE_COUNT | 2 | endpoint instances (blue/green canary shifts one of them first) |
| CHURN_CAPTURE_KMS_KEY_ID | - | KMS key SageMaker encrypts the endpoint's data capture with (DataCaptureConfig.KmsKeyId): on AWS the template's data key (stack output `DataKeyArn`), which infra/deploy_mwaa.py sets when this is empty or unset; an endpoint with capture and no key is refused. The local target's is the data key the control plane creates (`local_aws.settings`) |
| CHURN_KINESIS_STREAM | churn-events | the Kinesis stream of customer events |
| CHURN_STREAMING_JOB_NAME | churn-streaming | the Glue streaming job (infra/cloudformation/churn.yaml) |
| CHURN_STREAMING_TRIGGER_SECONDS | 5 | micro-batch trigger of the streaming job (0: back to back) |
| CHURN_STREAMING_ALLOWED_LATENESS_SECONDS | 3600 | the streaming job's watermark delay: events older than the newest event time seen minus this are quarantined as `late_event`; resent events are recognised within it |
| CHURN_STREAMING_SCORING | endpoint | how the streaming job scores: `endpoint` (the SageMaker endpoint by name) or `in_process` (the published model's booster in the job's driver, read when the run starts; needs xgboost in the job's Python) |
| CHURN_ALERTS_TOPIC_ARN | - | SNS topic the monitoring DAG alerts through (the template's `AlertsTopic`, stack output `AlertsTopicArn`; locally the topic the control plane creates) |
| CHURN_JOB_POLL_SECONDS | - | poll a deferred job's status at most this often (the operators' own intervals, 30-60 s, otherwise); scripts/env.sh sets 2 for the local target, whose jobs take seconds to minutes |

A missing required value fails the task with the variable's name, instead of sending a request AWS
would reject.
"""

from __future__ import annotations

import os
import re

from churn_ml.errors import CannotSucceedOnRetry


class SettingsError(CannotSucceedOnRetry, RuntimeError):
    """A setting is missing or invalid; the message names the environment variable to set."""


def _get(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or default


def target() -> str:
    value = (_get("ML_TARGET", "local") or "local").lower()
    if value not in ("local", "aws"):
        raise SettingsError(f"ML_TARGET must be 'local' or 'aws', got {value!r}")
    return value


def spark_backend() -> str:
    value = (_get("CHURN_SPARK_BACKEND", "emr_serverless") or "").lower()
    if value not in ("emr_serverless", "glue"):
        raise SettingsError(f"CHURN_SPARK_BACKEND must be 'emr_serverless' or 'glue', got {value!r}")
    return value


class _Settings:
    """Attribute access to the settings, for Jinja templates (``{{ churn.lake_bucket }}``)."""

    @property
    def target(self) -> str:
        return target()

    @property
    def lake_bucket(self) -> str:
        return _get("CHURN_LAKE_BUCKET", "churn-lake")

    @property
    def glue_database(self) -> str:
        value = _get("CHURN_GLUE_DATABASE", "churn_lake")
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,254}", value):  # the template's LakeDatabaseName pattern (Athena's rule)
            raise SettingsError(f"CHURN_GLUE_DATABASE must be a Glue database name Athena can query (lower-case letters, "
                                f"digits and '_', starting with a letter), got {value!r}; set it to the stack's "
                                "LakeDatabase output")
        return value

    @property
    def artifacts_bucket(self) -> str:
        return _get("CHURN_ARTIFACTS_BUCKET", "churn-artifacts")

    @property
    def lake(self) -> str:
        return f"s3://{self.lake_bucket}"

    @property
    def artifacts(self) -> str:
        return f"s3://{self.artifacts_bucket}"

    @property
    def code(self) -> str:
        """``s3://<artifacts bucket>/code/<version>``: the code version the DAGs use now (read when a task
        renders it, never at parse; ``churn_ml.artifacts.current_version``), so templates write
        ``{{ churn.code }}/jobs/churn_features.py``."""
        from churn_ml import artifacts  # lazily: settings is imported by every DAG file at parse time

        return artifacts.code_uri(artifacts.current_version()).rstrip("/")

    @staticmethod
    def _conn_id(name: str, default: str, what: str) -> str:
        value = _get(name, default)
        if not re.fullmatch(r"[\w.-]{1,250}", value):  # Airflow's rule for a connection id (validate_key)
            raise SettingsError(f"{name} must be an Airflow connection id (letters, digits, '_', '.', '-'; at most 250), "
                                f"got {value!r}; set it to the {what} connection's id (default {default})")
        return value

    @property
    def aws_conn_id(self) -> str:
        return self._conn_id("CHURN_AWS_CONN_ID", "aws_default", "AWS")

    @property
    def athena_conn_id(self) -> str:
        return self._conn_id("CHURN_ATHENA_CONN_ID", "athena_default", "Athena")

    @property
    def athena_workgroup(self) -> str:
        value = _get("CHURN_ATHENA_WORKGROUP", "churn")
        if not re.fullmatch(r"[a-zA-Z0-9._-]{1,128}", value):  # Athena's WorkGroupName pattern
            raise SettingsError(f"CHURN_ATHENA_WORKGROUP must be an Athena workgroup name (letters, digits, '.', '_', "
                                f"'-'; at most 128), got {value!r}; set it to the stack's AthenaWorkGroup output")
        return value

    def _required(self, name: str) -> str:
        """A setting of the deployment's resources: infra/deploy_mwaa.py sets it from the stack's outputs on
        AWS, scripts/env.sh from ``local_aws.settings`` on the local target. No default here."""
        value = _get(name)
        if value:
            return value
        raise SettingsError(
            f"{name} is not set: it names a resource of the deployment. On AWS infra/deploy_mwaa.py sets it from "
            "the stack's outputs; on the local target source scripts/env.sh (it exports the local stack's values, "
            "python local_aws/settings.py prints them)")

    @property
    def emr_application_id(self) -> str:
        return self._required("CHURN_EMR_APPLICATION_ID")

    @property
    def emr_execution_role_arn(self) -> str:
        return self._required("CHURN_EMR_EXECUTION_ROLE_ARN")

    @property
    def sagemaker_role_arn(self) -> str:
        return self._required("CHURN_SAGEMAKER_ROLE_ARN")

    @property
    def xgboost_image_uri(self) -> str:
        return self._required("CHURN_XGBOOST_IMAGE_URI")

    @property
    def training_instance_type(self) -> str:
        return _get("CHURN_TRAINING_INSTANCE_TYPE", "ml.m5.xlarge")

    @property
    def transform_instance_type(self) -> str:
        return _get("CHURN_TRANSFORM_INSTANCE_TYPE", "ml.m5.large")

    @property
    def endpoint_name(self) -> str:
        return _get("CHURN_ENDPOINT_NAME", "churn-xgboost")

    @property
    def endpoint_instance_type(self) -> str:
        return _get("CHURN_ENDPOINT_INSTANCE_TYPE", "ml.m5.large")

    @property
    def endpoint_instance_count(self) -> int:
        return int(_get("CHURN_ENDPOINT_INSTANCE_COUNT", "2"))

    @property
    def capture_kms_key_id(self) -> str:
        """Empty when unset: an endpoint request with data capture is then refused on both targets
        (``training_requests.resolve_data_capture``)."""
        return _get("CHURN_CAPTURE_KMS_KEY_ID", "") or ""

    @property
    def kinesis_stream(self) -> str:
        return _get("CHURN_KINESIS_STREAM", "churn-events")

    @property
    def streaming_job_name(self) -> str:
        return _get("CHURN_STREAMING_JOB_NAME", "churn-streaming")

    @property
    def alerts_topic_arn(self) -> str:
        return self._required("CHURN_ALERTS_TOPIC_ARN")

    @property
    def streaming_trigger_seconds(self) -> float:
        return float(_get("CHURN_STREAMING_TRIGGER_SECONDS", "5"))

    @property
    def streaming_allowed_lateness_seconds(self) -> float:
        return float(_get("CHURN_STREAMING_ALLOWED_LATENESS_SECONDS", "3600"))

    @property
    def streaming_scoring(self) -> str:
        value = _get("CHURN_STREAMING_SCORING", "endpoint")
        if value not in ("endpoint", "in_process"):
            raise SettingsError(f"CHURN_STREAMING_SCORING must be endpoint or in_process, got {value!r}")
        return value



def job_poll_seconds() -> int | None:
    value = _get("CHURN_JOB_POLL_SECONDS")
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise SettingsError(f"CHURN_JOB_POLL_SECONDS must be a whole number of seconds >= 1, got {value!r}")
    return int(value)


settings = _Settings()
