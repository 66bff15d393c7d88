"""What the churn DAGs share: default args, template macros, lake paths and the Assets linking them.

Paths are Jinja strings rendered at run time (``{{ churn.lake }}`` reads CHURN_LAKE_BUCKET when the
task runs); Asset URIs must be literal, so they read the same variable at parse time (an
environment read, nothing more).
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import Asset

from churn_ml.settings import settings

OWNER = "ml-platform"
# Deployed: 2 retries, 5 minutes apart and growing. The local run and the end-to-end tests set
# CHURN_TASK_RETRIES=0 so that a failure surfaces at once instead of after the retry delays.
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

FEATURES_ASSET = Asset(f"s3://{LAKE_BUCKET}/features/", extra={"format": "parquet", "partitioned_by": "dt"})
SCORING_INPUT_ASSET = Asset(f"s3://{LAKE_BUCKET}/scoring_input/", extra={"format": "csv", "partitioned_by": "dt"})
LABELS_ASSET = Asset(f"s3://{LAKE_BUCKET}/labels/", extra={"format": "parquet", "partitioned_by": "dt"})
MODEL_ASSET = Asset(f"s3://{LAKE_BUCKET}/models/churn/latest.json", extra={"kind": "model pointer"})
PREDICTIONS_ASSET = Asset(f"s3://{LAKE_BUCKET}/predictions/", extra={"format": "csv", "partitioned_by": "dt"})

AWS_CONN_ID = settings.aws_conn_id
MODEL_POINTER_KEY = "models/churn/latest.json"  # below the lake root: the model batch scoring uses
