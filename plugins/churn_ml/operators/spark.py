"""The Spark job of a task, on the service ``CHURN_SPARK_BACKEND`` selects."""

from __future__ import annotations

from typing import Any

from churn_ml import settings as cfg
from churn_ml.operators.emr_serverless import SparkOnEmrServerlessOperator
from churn_ml.operators.glue import SparkOnGlueOperator

# Rendered when the task runs (never at parse): the code version the DAGs use now (churn_ml.artifacts).
CODE = "{{ churn.code }}"


def spark_job(
    *, task_id: str, job: str, arguments: dict[str, str], glue_job_name: str, job_name_prefix: str,
    inputs: list[dict] | None = None, spark_conf: dict[str, str] | None = None, **kwargs: Any,
):
    """The Spark job ``include/jobs/<job>.py`` on the backend ``CHURN_SPARK_BACKEND`` selects.

    Both variants run the same script and Python library of one code version
    (``code/<version>/jobs/<job>.py``, ``code/<version>/lib/churn.zip``), with the same arguments,
    and fingerprint the same ``inputs`` (templated input specs, ``churn_ml.inputs``) into the job's
    identity; the task id and graph do not depend on the backend (or the target).
    """
    s = cfg.settings
    script = f"{CODE}/jobs/{job}.py"
    library = f"{CODE}/lib/churn.zip"
    conf = spark_conf or {}
    if cfg.spark_backend() == "glue":
        # The job (role, workers, security configuration, logging, timeout) is the template's; a run
        # sends its own arguments, and the code version's script and library, which override the
        # definition's for this run (Glue's --scriptLocation and --extra-py-files).
        script_args: dict[str, str] = {**arguments, "--scriptLocation": script, "--extra-py-files": library}
        if conf:
            script_args["--conf"] = " --conf ".join(f"{k}={v}" for k, v in conf.items())
        return SparkOnGlueOperator(
            task_id=task_id,
            job_name=glue_job_name,
            script_location=None,  # the definition's; only a run's --scriptLocation changes it (never UpdateJob)
            script_args=script_args,
            inputs=inputs,
            aws_conn_id=s.aws_conn_id,
            **kwargs,
        )
    submit = " ".join([f"--py-files {library}", *[f"--conf {k}={v}" for k, v in conf.items()]])
    return SparkOnEmrServerlessOperator(
        task_id=task_id,
        job_name_prefix=job_name_prefix,
        application_id="{{ churn.emr_application_id }}",
        execution_role_arn="{{ churn.emr_execution_role_arn }}",
        job_driver={
            "sparkSubmit": {
                "entryPoint": script,
                "entryPointArguments": [item for key, value in arguments.items() for item in (key, value)],
                "sparkSubmitParameters": submit,
            }
        },
        configuration_overrides={
            "monitoringConfiguration": {"s3MonitoringConfiguration": {"logUri": f"{s.lake}/_logs/emr-serverless/"}}
        },
        inputs=inputs,
        aws_conn_id=s.aws_conn_id,
        **kwargs,
    )
