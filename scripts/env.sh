# Environment for running this repository's Airflow on the local target. Sourced by
# scripts/bootstrap.sh, scripts/run_local.sh and scripts/test.sh; source it yourself to use the
# `airflow` CLI by hand:  . scripts/env.sh && airflow dags list
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CHURN_REPO_ROOT="$ROOT"
export VIRTUAL_ENV="$ROOT/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__UNIT_TEST_MODE=False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-sqlite:///$AIRFLOW_HOME/airflow.db}"
export AIRFLOW__LOGGING__BASE_LOG_FOLDER="$AIRFLOW_HOME/logs"
export AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT=120
export ML_TARGET="${ML_TARGET:-local}"
export LAKE_ROOT="${LAKE_ROOT:-$ROOT/.lake}"
# Spark and the SageMaker-shaped subprocesses use the virtualenv's interpreter.
export PYSPARK_PYTHON="$VIRTUAL_ENV/bin/python"
export PYSPARK_DRIVER_PYTHON="$VIRTUAL_ENV/bin/python"
export PYTHONPATH="$ROOT/plugins:$ROOT/include${PYTHONPATH:+:$PYTHONPATH}"
