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
# The metadata database: the stack's PostgreSQL (scripts/stack.sh), through its Unix socket only.
export PG_SOCKET_DIR="$AIRFLOW_HOME/pg/socket"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-postgresql+psycopg2://airflow@/airflow?host=$PG_SOCKET_DIR}"
# The processes scripts/stack.sh starts: LocalExecutor; the api-server on loopback only, which also
# serves the Execution API the task processes report to.
export CHURN_AIRFLOW_PORT="${CHURN_AIRFLOW_PORT:-8080}"
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-8}"
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT="$CHURN_AIRFLOW_PORT"
export AIRFLOW__API__WORKERS=1
export AIRFLOW__API__BASE_URL="http://127.0.0.1:$CHURN_AIRFLOW_PORT"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$CHURN_AIRFLOW_PORT/execution/"
# A loopback-only developer stack: the UI opens without a login, every user an admin. So the
# api-server answers only requests addressed to these names (not a web page's name rebound to
# 127.0.0.1) and no other origin's pages: plugins/churn_ml/api_server_guard.py.
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True
export CHURN_AIRFLOW_API_HOSTS="127.0.0.1:$CHURN_AIRFLOW_PORT,localhost:$CHURN_AIRFLOW_PORT"
# The sample's dates are history: a schedule would only add runs for today, whose sensors wait for
# data that never comes. Runs are triggered and backfilled (make run, the UI, `airflow backfill
# create`); CHURN_LOCAL_SCHEDULES=on turns the schedules on (e.g. for a sample that ends yesterday).
if [ "${CHURN_LOCAL_SCHEDULES:-off}" = on ]; then
  export AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE=True
else
  export AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE=False
fi
# Every process of the stack must sign and check the same tokens: one secret per Airflow home.
if [ ! -s "$AIRFLOW_HOME/.secrets" ]; then
  mkdir -p "$AIRFLOW_HOME"
  ( umask 077; printf 'jwt=%s\nsession=%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
      "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$AIRFLOW_HOME/.secrets" )
fi
AIRFLOW__API_AUTH__JWT_SECRET=$(sed -n 's/^jwt=//p' "$AIRFLOW_HOME/.secrets")
AIRFLOW__API__SECRET_KEY=$(sed -n 's/^session=//p' "$AIRFLOW_HOME/.secrets")
export AIRFLOW__API_AUTH__JWT_SECRET AIRFLOW__API__SECRET_KEY
export AIRFLOW__LOGGING__BASE_LOG_FOLDER="$AIRFLOW_HOME/logs"
export AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT=120
# Every task's lineage, as deployed (infra/cloudformation/churn.yaml's AirflowConfigurationOptions;
# docs/lineage.md): the OpenLineage provider asks churn_ml's extractor, and the events go into the lake's
# _lineage/ through the AWS connection. Set AIRFLOW__OPENLINEAGE__TRANSPORT yourself to send them elsewhere.
export AIRFLOW__OPENLINEAGE__NAMESPACE="${AIRFLOW__OPENLINEAGE__NAMESPACE:-churn}"
export AIRFLOW__OPENLINEAGE__EXTRACTORS=churn_ml.lineage.extractor.ChurnLineageExtractor
export AIRFLOW__OPENLINEAGE__SPARK_INJECT_PARENT_JOB_INFO=True
# A task's events are sent from a thread of the task process, given this long (the provider's default, 10 s,
# is short for a job task on a busy 2-core machine: its COMPLETE reads the job's summary and writes through
# S3). Not from a forked child (the provider's default): a fork of the multi-threaded task process can
# deadlock on a lock another thread held, and the task then waits out the whole timeout and loses the event.
export AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD=True
export AIRFLOW__OPENLINEAGE__EXECUTION_TIMEOUT="${AIRFLOW__OPENLINEAGE__EXECUTION_TIMEOUT:-30}"
if [ -z "${AIRFLOW__OPENLINEAGE__TRANSPORT:-}" ]; then
  export AIRFLOW__OPENLINEAGE__TRANSPORT="{\"type\": \"churn_ml.lineage.transport.LakeTransport\", \"uri\": \"s3://${CHURN_LAKE_BUCKET:-churn-lake}/_lineage/\", \"aws_conn_id\": \"${CHURN_AWS_CONN_ID:-aws_default}\"}"
fi
export ML_TARGET="${ML_TARGET:-local}"
# Local runs: one retry after 5 s (deployed: 2 retries, 5 min apart). A job that ends within seconds
# of its task's deferral can make Airflow 3.3.1's scheduler fail the resumed task ("finished with
# state success, but the task instance's state attribute is queued": apache/airflow#67287, #72716);
# the retry re-attaches to the finished job. The final training job runs on simulated spot capacity,
# interrupted (SIGTERM) at round 40, so it resumes from its checkpoints ("" trains without
# interruptions). Here, so that the stack's processes get them too.
export CHURN_TASK_RETRIES="${CHURN_TASK_RETRIES:-1}"
export CHURN_RETRY_DELAY_SECONDS="${CHURN_RETRY_DELAY_SECONDS:-5}"
export CHURN_LOCAL_SPOT_INTERRUPTIONS="${CHURN_LOCAL_SPOT_INTERRUPTIONS-40}"
export LAKE_ROOT="${LAKE_ROOT:-$ROOT/.lake}"
# The local target's AWS: the control plane (local_aws/control_plane.py; scripts/stack.sh starts it)
# on 127.0.0.1. The tasks' and triggers' AWS clients reach it through the AWS connection, as they
# reach AWS when deployed; the SageMaker Runtime client goes to the endpoints' router. The same
# connection as local_aws.control_plane.connection() (a test compares them).
export CHURN_LOCAL_AWS_PORT="${CHURN_LOCAL_AWS_PORT:-4566}"
# The control plane and the router take only requests signed with the lake's own key (a web page in
# a browser cannot sign): made once per lake, mode 0600, read here and by local_aws.common.credentials(),
# which makes it the same way (written aside, hard-linked into place: of two creators one wins).
if [ "$ML_TARGET" = local ]; then
  _creds="$LAKE_ROOT/.control-plane/credentials"
  if [ ! -s "$_creds" ] && [ -n "${CHURN_LOCAL_KEY_FILE:-}" ]; then  # the test suite's one key (local_aws.common)
    mkdir -p "$LAKE_ROOT/.control-plane"
    ( umask 077; cat "$CHURN_LOCAL_KEY_FILE" > "$_creds.$$.tmp" )
    ln "$_creds.$$.tmp" "$_creds" 2>/dev/null || true
    rm -f "$_creds.$$.tmp"
  elif [ ! -s "$_creds" ]; then
    mkdir -p "$LAKE_ROOT/.control-plane"
    ( umask 077; printf '[default]\naws_access_key_id = LOCAL%s\naws_secret_access_key = %s\n' \
        "$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr '[:lower:]' '[:upper:]' | cut -c1-15)" \
        "$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$_creds.$$.tmp" )
    ln "$_creds.$$.tmp" "$_creds" 2>/dev/null || true
    rm -f "$_creds.$$.tmp"
  fi
  # Airflow's tasks sign as MWAA's execution role does on AWS: with that role's key (derived from the
  # lake's, local_aws/iam.py), and the control plane checks their S3 requests against its policies.
  # No host prefix: botocore would send MWAA's InvokeRestApi to env.127.0.0.1 (config_kwargs).
  read -r _key_id _secret < <(python3 "$ROOT/local_aws/iam.py" "$_creds" churn-mwaa)
  _conn_var="AIRFLOW_CONN_$(echo "${CHURN_AWS_CONN_ID:-aws_default}" | tr '[:lower:]' '[:upper:]')"
  export "$_conn_var"="{\"conn_type\": \"aws\", \"login\": \"$_key_id\", \"password\": \"$_secret\", \"extra\": {\"region_name\": \"us-east-1\", \"endpoint_url\": \"http://127.0.0.1:$CHURN_LOCAL_AWS_PORT\", \"service_config\": {\"sagemaker-runtime\": {\"endpoint_url\": \"http://127.0.0.1:${CHURN_LOCAL_RUNTIME_PORT:-18080}\"}}, \"config_kwargs\": {\"inject_host_prefix\": false}}}"
  # The data checks' Athena connection (local_aws.control_plane.athena_connection): the control plane's Athena,
  # signed as the AWS connection, in the template's workgroup, the lake's Glue database its schema.
  _conn_var="AIRFLOW_CONN_$(echo "${CHURN_ATHENA_CONN_ID:-athena_default}" | tr '[:lower:]' '[:upper:]')"
  export "$_conn_var"="{\"conn_type\": \"athena\", \"login\": \"$_key_id\", \"password\": \"$_secret\", \"schema\": \"${CHURN_GLUE_DATABASE:-churn_lake}\", \"extra\": {\"region_name\": \"us-east-1\", \"endpoint_url\": \"http://127.0.0.1:$CHURN_LOCAL_AWS_PORT\", \"work_group\": \"${CHURN_ATHENA_WORKGROUP:-churn}\"}}"
  unset _conn_var _creds _key_id _secret
  # The local stack's resources (EMR Serverless application, roles, image, topic, data key): what
  # infra/deploy_mwaa.py sets from the stack's outputs on AWS. The plugins have no defaults of their own.
  # Also AIRFLOW_ENV_NAME (churn-local), which MWAA sets to the environment's name on AWS: the run_cost task
  # sets the run's note through that environment's InvokeRestApi, which the control plane forwards to the
  # api-server at AIRFLOW__API__BASE_URL (local_aws/mwaa.py).
  eval "$(python3 "$ROOT/local_aws/settings.py")"
  # Deferred jobs are polled every 2 s (the operators' 30-60 s suit jobs of minutes to hours on AWS).
  export CHURN_JOB_POLL_SECONDS="${CHURN_JOB_POLL_SECONDS:-2}"
fi
# Spark binds its driver (RPC, block manager) and UI to loopback only: without it, a hostname that
# resolves to 127.0.0.1 makes Spark pick the machine's network address instead. For the sessions
# started in-process from this shell; the local Spark runner (local_aws/spark.py) also
# passes spark.driver.bindAddress/host=127.0.0.1 and this variable to every spark-submit itself.
export SPARK_LOCAL_IP=127.0.0.1
# Spark and the SageMaker-shaped subprocesses use the virtualenv's interpreter.
export PYSPARK_PYTHON="$VIRTUAL_ENV/bin/python"
export PYSPARK_DRIVER_PYTHON="$VIRTUAL_ENV/bin/python"
export PYTHONPATH="$ROOT:$ROOT/plugins:$ROOT/include${PYTHONPATH:+:$PYTHONPATH}"
