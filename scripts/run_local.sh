#!/usr/bin/env bash
# The main job on the local target: set up (idempotent), start the Airflow stack (PostgreSQL, scheduler,
# dag-processor, triggerer, api-server: scripts/stack.sh), generate the sample, run the batch chain
# churn_features -> churn_training -> churn_batch_scoring as DAG runs of the scheduler for the sample's
# date (a date that ran before is cleared and runs again), print a summary, and leave the UI up.
#
#   CHURN_CUSTOMERS=4000 CHURN_DAYS=182 CHURN_SEED=7 CHURN_DS=2026-07-02 CHURN_HISTORY_DAYS=150 scripts/run_local.sh
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

CUSTOMERS=${CHURN_CUSTOMERS:-4000}
DAYS=${CHURN_DAYS:-182}
START=${CHURN_START:-2026-01-01}
SEED=${CHURN_SEED:-7}
DS=${CHURN_DS:-$(python3 -c "import datetime as d; print(d.date.fromisoformat('$START') + d.timedelta(days=$DAYS))")}
HISTORY_DAYS=${CHURN_HISTORY_DAYS:-150}
LOGS="$AIRFLOW_HOME/run-logs"
mkdir -p "$LOGS"
TIMINGS="$LOGS/timings.tsv"
: > "$TIMINGS"

phase() {  # phase NAME COMMAND...: run and time it, keep the full log; DAG runs show their progress
  local name=$1; shift
  local start=$SECONDS
  echo "==> $name"
  if ! if [[ $name == churn_* ]]; then "$@" 2>&1 | tee "$LOGS/$name.log"; else "$@" >"$LOGS/$name.log" 2>&1; fi; then
    echo "FAILED: $name (full log: $LOGS/$name.log)" >&2
    grep -E "ERROR|Error|error:|Traceback|FAILED|failed" "$LOGS/$name.log" | tail -25 >&2 || tail -40 "$LOGS/$name.log" >&2
    exit 1
  fi
  printf '%s\t%s\n' "$name" "$((SECONDS - start))" >> "$TIMINGS"
  echo "    done in $((SECONDS - start))s"
}

dag_run() {  # dag_run DAG_ID [CONF]: one DAG run for $DS through the scheduler, its progress shown as it goes
  python scripts/airflow_runs.py run "$1" --logical-date "$DS" --conf "${2:-"{}"}"
}

phase setup bash scripts/bootstrap.sh
phase airflow_stack bash scripts/stack.sh start
phase generate_sample python -m churn.datagen --out "$LAKE_ROOT/churn-lake/raw" \
  --customers "$CUSTOMERS" --days "$DAYS" --start "$START" --seed "$SEED"
phase churn_features dag_run churn_features "{\"history_days\": $HISTORY_DAYS}"
# Capture every invocation (the default is 15 %): the sample's endpoint sees only the deployment's canary
# requests, and the monitoring run and tests/e2e look for their capture.
phase churn_training dag_run churn_training '{"capture_sampling_percentage": 100}'
phase churn_batch_scoring dag_run churn_batch_scoring
phase churn_monitoring dag_run churn_monitoring
python scripts/summarize_run.py --ds "$DS" --timings "$TIMINGS"
echo "Airflow UI       http://127.0.0.1:$CHURN_AIRFLOW_PORT  (the runs above; stop everything: scripts/stack.sh stop)"
