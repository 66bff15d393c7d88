"""What the churn DAGs share: default args, template macros, the lake's layout, who may touch which
part of it, and the Assets linking the DAGs.

Paths are Jinja strings rendered at run time (``{{ churn.lake }}`` reads CHURN_LAKE_BUCKET when the
task runs); Asset URIs must be literal, so they read the same variable at parse time (an
environment read, nothing more).

The lake's prefixes are defined here once, and ``LAKE_ACCESS`` says which role reads, writes or
deletes under each of them for every task of every DAG (the Spark jobs and SageMaker jobs a task
starts included). The IAM policies of infra/cloudformation/churn.yaml grant exactly that, and
tests/infra/test_lake_access.py checks it both ways: every lake path in the DAGs, their requests,
the plugins and include/jobs/ must fall under a prefix the table gives the role that uses it, and
every role's S3 statements must be exactly the table's. A new prefix in code fails the test until
the table and the policy say so.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import Asset, Param

from churn_ml.cost.ledger import COSTS_PREFIX
from churn_ml.settings import settings

OWNER = "ml-platform"
# Deployed: 2 retries, 5 minutes apart and growing. The local target (scripts/env.sh) retries once
# after 5 s, so that a failure surfaces quickly (why once and not never: the comment there).
# Every job-starting DAG offers it in the trigger form (churn_ml.operators.base): a job is reused when its
# code version, inputs and request are unchanged; this starts new jobs for what a fingerprint cannot see.
RECOMPUTE = Param(
    False, type="boolean",
    description="Start new jobs even when a job with the same code version, inputs and request ran already "
    "(e.g. after a fix outside include/ and the inputs, such as a changed container image or a service-side "
    "problem that made a job's output wrong). A retry within this run still reuses the job it started.",
)

DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": int(os.environ.get("CHURN_TASK_RETRIES", "2")),
    "retry_delay": dt.timedelta(seconds=int(os.environ.get("CHURN_RETRY_DELAY_SECONDS", "300"))),
    "retry_exponential_backoff": True,
}
USER_MACROS = {"churn": settings}
SENSOR_TIMEOUT = dt.timedelta(hours=float(os.environ.get("CHURN_SENSOR_TIMEOUT_HOURS", "12")))

LAKE = "{{ churn.lake }}"
LAKE_BUCKET = settings.lake_bucket
AWS_CONN_ID = settings.aws_conn_id
ATHENA_CONN_ID = settings.athena_conn_id  # the data checks' SQL (conn_type athena: AthenaSQLHook, PyAthena)

# ------------------------------------------------------------------ the lake's layout
# Prefixes below the lake root (each ends with "/"). The Spark jobs build the same names from their
# --lake argument (include/jobs/*.py); the test finds those paths in their code.
RAW = "raw/"  # landed JSON lines, dt=D/ + _SUCCESS (the upstream export)
CLEAN = "clean/"  # typed Parquet per entity
QUARANTINE = ("errors/customers/", "errors/events/")  # bad raw records, with the reason (one per entity)
FEATURES = "features/"
SCORING_INPUT = "scoring_input/"
LABELS = "labels/"
FEATURES_RUNS = "_runs/churn_features/"  # the features job's run summaries
TRAINING_SETS = "training_sets/"
MODELS = "models/churn/"  # final training jobs' outputs (SageMaker OutputDataConfig), evaluation.json
TUNING_MODELS = "models/churn-tuning/"  # tuning trials' outputs
CHECKPOINTS = "checkpoints/churn/"  # managed spot checkpoints, per job
REGISTRY = "registry/"  # model cards of the registry's versions
# The production model: what batch scoring and deployment use. Its own prefix, which only the
# orchestration role (MWAA) writes: never below an output prefix a SageMaker job (or its role) writes.
PUBLISHED = "published/churn/"
MODEL_POINTER_KEY = f"{PUBLISHED}latest.json"
PREDICTIONS_STAGING = "_staging/predictions/"  # batch transform outputs of a run, before publish_predictions
PREDICTIONS = "predictions/"
STREAM_PREDICTIONS = "stream_predictions/"  # the Glue streaming job (plugins/churn_ml/stream_job.py)
STREAM_ERRORS = "errors/stream_events/"
STREAMING_STATE = "_streaming/churn_streaming/"  # its checkpoint and runs/<id>/progress.json
EMR_LOGS = "_logs/emr-serverless/"  # EMR Serverless job logs (monitoringConfiguration.logUri); the task prints them
# The endpoint's data capture (DataCaptureConfig.DestinationS3Uri), in SageMaker's layout:
# <endpoint>/<variant>/yyyy/mm/dd/hh/*.jsonl, one JSON record per captured request.
CAPTURE = "monitoring/capture/"
MONITORING = "monitoring/daily/"  # the monitoring job's results per date: dt=D/summary.json
MONITORING_REPORTS = "monitoring/reports/"  # the report a person opens: dt=D/report.html
# The OpenLineage events of every task and DAG run (churn_ml.lineage.transport; docs/lineage.md):
# events/date=D/<time>-<type>-<run>-....json, one event each, written by the orchestration role.
LINEAGE_EVENTS = "_lineage/"
# The cost ledger (churn_ml.cost): records/date=D/<dag>/<task>/<job>.json, one per job, written by the task that
# ran the job; a rerun of the date replaces its task's records.
COSTS = COSTS_PREFIX
# The Athena workgroup's query results (<id>.csv per query; the template's AthenaWorkGroup, which enforces it).
ATHENA_RESULTS = "_athena/"

FEATURES_ASSET = Asset(f"s3://{LAKE_BUCKET}/{FEATURES}", extra={"format": "parquet", "partitioned_by": "dt"})
SCORING_INPUT_ASSET = Asset(f"s3://{LAKE_BUCKET}/{SCORING_INPUT}", extra={"format": "csv", "partitioned_by": "dt"})
LABELS_ASSET = Asset(f"s3://{LAKE_BUCKET}/{LABELS}", extra={"format": "parquet", "partitioned_by": "dt"})
MODEL_ASSET = Asset(f"s3://{LAKE_BUCKET}/{MODEL_POINTER_KEY}", extra={"kind": "model pointer"})
PREDICTIONS_ASSET = Asset(f"s3://{LAKE_BUCKET}/{PREDICTIONS}", extra={"format": "csv", "partitioned_by": "dt"})

# ------------------------------------------------------------------ the lake's tables
# The lake's datasets as tables of the Glue Data Catalog (infra/cloudformation/churn.yaml declares the
# database, CHURN_GLUE_DATABASE, and each table with its schema and format): table -> its prefix. Every table
# is partitioned by dt (string, YYYY-MM-DD) at <prefix>dt=<day>/; churn_ml.catalog registers a partition once
# the task that swaps it in has done so. tests/infra/test_catalog_grants.py checks the template's tables against this.
TABLES = {
    "clean_customers": f"{CLEAN}customers/",
    "clean_events": f"{CLEAN}events/",
    "features": FEATURES,
    "labels": LABELS,
    "scoring_input": SCORING_INPUT,
    "predictions": PREDICTIONS,
    "stream_predictions": STREAM_PREDICTIONS,
    "monitoring_daily": MONITORING,
}

# ------------------------------------------------------------------ who touches which prefix
# The roles (infra/cloudformation/churn.yaml): the DAGs' own calls run as the MWAA execution role;
# the jobs they start run as the SageMaker role, the EMR Serverless job role or the Glue job role.
# SPARK is whichever of the last two CHURN_SPARK_BACKEND picks: both get the Spark jobs' access.
MWAA, SAGEMAKER, EMR, GLUE, SPARK = "mwaa", "sagemaker", "emr-serverless", "glue", "spark"
ROLES = (MWAA, SAGEMAKER, EMR, GLUE)
# Access: r = s3:GetObject (and HEAD), w = s3:PutObject, d = s3:DeleteObject, only where a rerun
# replaces what is there or a publish moves it. Listing (s3:ListBucket) goes with every prefix a role
# has (the policies condition it on s3:prefix; see infra/cloudformation/churn.yaml for the exception).
_FEATURES_JOB = {RAW: "r", CLEAN: "rwd", **{q: "rwd" for q in QUARANTINE}, FEATURES: "rwd", SCORING_INPUT: "rwd",
                 LABELS: "rwd", FEATURES_RUNS: "rwd"}
_TRAINING_SET_JOB = {FEATURES: "r", LABELS: "r", TRAINING_SETS: "rwd"}
_STREAMING_JOB = {FEATURES: "r", STREAM_PREDICTIONS: "rwd", STREAM_ERRORS: "rwd", STREAMING_STATE: "rwd"}
_MONITORING_JOB = {FEATURES: "r", PREDICTIONS: "r", STREAM_PREDICTIONS: "r", CAPTURE: "r", LABELS: "r",
                   REGISTRY: "r", MONITORING: "rwd"}
LAKE_ACCESS: dict[str, dict[str, dict[str, dict[str, str]]]] = {
    "churn_features": {
        "wait_for_raw_partitions": {MWAA: {RAW: "r"}},
        "build_features": {SPARK: _FEATURES_JOB, EMR: {EMR_LOGS: "w"}, MWAA: {EMR_LOGS: "r"}},
        # the run summary; then each partition it lists is checked (its _SUCCESS) before it is registered
        "report_features": {MWAA: {FEATURES_RUNS: "r", CLEAN: "r", FEATURES: "r", SCORING_INPUT: "r", LABELS: "r"}},
        "run_cost": {},  # the ledger's records (EVERY_TASK_ACCESS)
    },
    "churn_training": {
        "wait_for_labels": {MWAA: {LABELS: "r"}},
        "build_training_set": {SPARK: _TRAINING_SET_JOB, EMR: {EMR_LOGS: "w"}, MWAA: {EMR_LOGS: "r"}},
        "inspect_training_set": {MWAA: {TRAINING_SETS: "r"}},
        "resolve_champion": {},  # the registry: SageMaker's model package group on AWS
        # MWAA: the provider checks the input channels exist before it creates the job.
        "tune_hyperparameters": {MWAA: {TRAINING_SETS: "r"},
                                 SAGEMAKER: {TRAINING_SETS: "r", TUNING_MODELS: "w", CHECKPOINTS: "rwd"}},
        "train_model": {MWAA: {TRAINING_SETS: "r", MODELS: "r"},
                        SAGEMAKER: {TRAINING_SETS: "r", MODELS: "rw", CHECKPOINTS: "rwd"}},
        "quality_gate": {},
        # output.tar.gz read, evaluation.json written beside it; the card written, and on a rerun looked for
        # (a HEAD, which S3 answers 403 rather than 404 without s3:GetObject); the production pointer read.
        "register_model": {MWAA: {MODELS: "rw", REGISTRY: "rw", PUBLISHED: "r"}},
        "approved": {},
        "publish_model": {MWAA: {PUBLISHED: "rw"}},
        "deploy_model": {MWAA: {MODELS: "r"}, SAGEMAKER: {MODELS: "r", CAPTURE: "w"}},  # the endpoint captures
        "run_cost": {},
    },
    "churn_batch_scoring": {
        "wait_for_scoring_input": {MWAA: {SCORING_INPUT: "r"}},
        "resolve_model": {MWAA: {PUBLISHED: "r"}},
        "list_scoring_input": {MWAA: {SCORING_INPUT: "r", PREDICTIONS_STAGING: "w"}},
        "batch_transform": {MWAA: {PREDICTIONS_STAGING: "r"},
                            SAGEMAKER: {SCORING_INPUT: "r", PREDICTIONS_STAGING: "rw", MODELS: "r"}},
        "publish_predictions": {MWAA: {SCORING_INPUT: "r", PREDICTIONS_STAGING: "rd", PREDICTIONS: "rwd"}},
        # an Athena query, which reads the tables' files and writes its result as the caller (QUERY_ACCESS)
        "check_predictions": {MWAA: {SCORING_INPUT: "r", PREDICTIONS: "r", ATHENA_RESULTS: "rw"}},
        "run_cost": {},
    },
    "churn_streaming": {
        "ensure_endpoint": {},
        "ensure_streaming_job": {GLUE: _STREAMING_JOB},  # the Glue streaming job it starts
        "check_health": {MWAA: {STREAMING_STATE: "r", STREAM_PREDICTIONS: "r"}},  # + the partitions it registers
    },
    "churn_streaming_stop": {
        "stop_streaming_job": {},
    },
    "churn_monitoring": {
        "wait_for_predictions": {MWAA: {PREDICTIONS: "r"}},
        "resolve_baseline": {MWAA: {PUBLISHED: "r"}},
        "monitor": {SPARK: _MONITORING_JOB, EMR: {EMR_LOGS: "w"}, MWAA: {EMR_LOGS: "r"}},
        "write_report": {MWAA: {MONITORING: "r", MONITORING_REPORTS: "rwd"}},
        # the day's and earlier days' summaries, and the earlier days' decisions beside their reports
        "decide": {MWAA: {MONITORING: "r", MONITORING_REPORTS: "r"}},
        "decay_detected": {},
        "alert": {},  # SNS (the template's alerts topic), no lake access
        "trigger_retraining": {},
        "record_costs": {},  # the ledger (EVERY_TASK_ACCESS); the endpoint's deployments under _costs/endpoints/
        "run_cost": {},
    },
}
# The artifacts bucket: the code versions of include/ (code/<version>/..., churn_ml.artifacts) and the
# pointer code/CURRENT.json. The jobs read their own part of every version ("*": any version); the
# orchestration role reads the pointer and the version's objects (artifacts.current_version) and copies
# a version's objects onto themselves (artifacts.mark_used: CopyObject is s3:GetObject on the source and
# s3:PutObject on the destination; the template allows the Put only as a copy from code/). Only the
# deploy command, run by a person, uploads new code.
CODE = "code/"
ARTIFACTS_ACCESS: dict[str, dict[str, str]] = {
    MWAA: {CODE: "rw"},
    SAGEMAKER: {f"{CODE}*/sagemaker/": "r"},
    EMR: {f"{CODE}*/jobs/": "r", f"{CODE}*/lib/": "r"},
    GLUE: {f"{CODE}*/jobs/": "r", f"{CODE}*/lib/": "r"},
}

# Who changes the catalog: per task, the tables it registers partitions of (churn_ml.catalog.register_partition:
# GetTable, then CreatePartition or, for a date registered before, UpdatePartition) and the tables whose
# partitions it lists and drops once their data expired (churn_ml.catalog.drop_expired: GetPartitions,
# BatchDeletePartition; only scoring_input/ and stream_predictions/ expire, by the lake's lifecycle rules).
# Only the orchestration role (MWAA) touches the catalog: no job reads or writes it. The template grants
# exactly these actions on the catalog, the database and these tables (tests/infra/test_catalog_grants.py).
CATALOG_REGISTER = ("glue:GetTable", "glue:CreatePartition", "glue:UpdatePartition")
CATALOG_EXPIRE = ("glue:GetPartitions", "glue:BatchDeletePartition")
CATALOG_ACCESS: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "churn_features": {
        "report_features": {"clean_customers": CATALOG_REGISTER, "clean_events": CATALOG_REGISTER,
                            "features": CATALOG_REGISTER, "labels": CATALOG_REGISTER,
                            "scoring_input": CATALOG_REGISTER + CATALOG_EXPIRE},
    },
    "churn_batch_scoring": {"publish_predictions": {"predictions": CATALOG_REGISTER}},
    "churn_streaming": {"check_health": {"stream_predictions": CATALOG_REGISTER + CATALOG_EXPIRE}},
    "churn_monitoring": {"decide": {"monitoring_daily": CATALOG_REGISTER}},  # the task after the monitor job
}


# Who queries the catalog's tables with Athena (the data checks, churn_ml.checks): per task, the tables it reads.
# Athena reads as the caller: the template grants the MWAA role QUERY_CATALOG on these tables (QueryLakeCatalog),
# the runs in its workgroup (QueryLakeRun), s3:GetObject on their prefixes and the results prefix (LAKE_ACCESS).
QUERY_CATALOG = ("glue:GetDatabase", "glue:GetTable", "glue:GetPartition", "glue:GetPartitions", "glue:BatchGetPartition")
QUERY_ACCESS: dict[str, dict[str, tuple[str, ...]]] = {
    "churn_batch_scoring": {"check_predictions": ("predictions", "scoring_input")},
}

# What the orchestration role does for every task and DAG run, whatever the task: write their lineage events;
# and read them, for the lineage command run with the Airflow connection (python -m churn_ml.lineage.cli).
# And every task that starts jobs writes their ledger records (replacing an earlier execution's); the run's cost
# total (run_cost) reads them.
EVERY_TASK_ACCESS = {MWAA: {LINEAGE_EVENTS: "rw", COSTS: "rwd"}}


def role_access(table: dict | None = None) -> dict[str, dict[str, str]]:
    """Per role, every prefix it touches and how (the union over the tasks; SPARK counts for both; with
    no ``table``, LAKE_ACCESS and EVERY_TASK_ACCESS)."""
    merged: dict[str, dict[str, set[str]]] = {role: {} for role in ROLES}
    tables = [table] if table else [LAKE_ACCESS, {"*": {"*": EVERY_TASK_ACCESS}}]
    for tasks in (t for found in tables for t in found.values()):
        for roles in tasks.values():
            for role, prefixes in roles.items():
                for grantee in ((EMR, GLUE) if role == SPARK else (role,)):
                    for prefix, modes in prefixes.items():
                        merged[grantee].setdefault(prefix, set()).update(modes)
    return {role: {p: "".join(m for m in "rwd" if m in modes) for p, modes in sorted(found.items())}
            for role, found in merged.items()}


def run_cost_after(*last_tasks):
    """``run_cost``: the DAG run's total cost from its ledger records, in its task log, its XCom and the run's
    note in the Airflow UI (``churn_ml.cost.run_note``: MWAA's InvokeRestApi, on both targets).

    A teardown downstream of ``last_tasks`` (the DAG's last tasks): it runs once they are done, whatever
    their end (failed jobs were billed too), a short circuit does not skip it, and the run's state stays
    theirs. A note that cannot be set fails the task (after the total is logged), so that a retry sets it;
    what a retry cannot fix fails it at once (``fail_fast``)."""
    from airflow.sdk import task

    @task(task_id="run_cost")
    def run_cost(ds: str | None = None, run_id: str | None = None, dag=None) -> dict:
        """The run's jobs and what each cost, then the total (churn_ml.cost.recorder), also in the run's note
        (churn_ml.cost.run_note)."""
        from churn_ml.cost import recorder, run_note
        from churn_ml.errors import fail_fast

        total = recorder.log_run_total(ds, dag.dag_id, run_id)
        with fail_fast("run_cost: "):
            run_note.note_run_total(dag.dag_id, run_id, total["summary"])
            if total["unpriced"]:
                raise recorder.UnpricedJobs(total["unpriced"])
        return total

    teardown = run_cost().as_teardown()
    for last in last_tasks:
        last >> teardown
    return teardown
