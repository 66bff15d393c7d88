#!/usr/bin/env bash
# The main job on the local target: set up (idempotent), generate the sample, run the batch chain
# churn_features -> churn_training -> churn_batch_scoring with `airflow dags test`, print a summary.
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
export CHURN_TASK_RETRIES=${CHURN_TASK_RETRIES:-0}
# The final training job runs on simulated spot capacity: interrupted (SIGTERM) at round 40, it
# resumes from its checkpoints. Set to "" to train without interruptions.
export CHURN_LOCAL_SPOT_INTERRUPTIONS=${CHURN_LOCAL_SPOT_INTERRUPTIONS-40}
LOGS="$AIRFLOW_HOME/run-logs"
mkdir -p "$LOGS"
TIMINGS="$LOGS/timings.tsv"
: > "$TIMINGS"

phase() {  # phase NAME COMMAND...: run, time, keep the full log, show the tail on failure
  local name=$1; shift
  local start=$SECONDS
  echo "==> $name"
  if ! "$@" >"$LOGS/$name.log" 2>&1; then
    echo "FAILED: $name (full log: $LOGS/$name.log)" >&2
    grep -E "ERROR|Error|error:|Traceback|FAILED|failed" "$LOGS/$name.log" | tail -25 >&2 || tail -40 "$LOGS/$name.log" >&2
    exit 1
  fi
  printf '%s\t%s\n' "$name" "$((SECONDS - start))" >> "$TIMINGS"
  echo "    done in $((SECONDS - start))s"
}

dag_test() {  # dag_test DAG_ID [CONF]: run one DagRun and fail unless it succeeded
  local dag=$1 conf=${2:-"{}"}
  airflow dags test "$dag" "$DS" -c "$conf" 2>&1 | tee "$LOGS/$dag.airflow.log"
  grep -q "DagRun Finished: dag_id=$dag, .* state=success" "$LOGS/$dag.airflow.log" || { echo "DagRun $dag $DS did not succeed" >&2; return 1; }
}

phase setup bash scripts/bootstrap.sh
phase generate_sample python -m churn.datagen --out "$LAKE_ROOT/churn-lake/raw" \
  --customers "$CUSTOMERS" --days "$DAYS" --start "$START" --seed "$SEED"
phase churn_features dag_test churn_features "{\"history_days\": $HISTORY_DAYS}"
phase churn_training dag_test churn_training
phase churn_batch_scoring dag_test churn_batch_scoring
python scripts/summarize_run.py --ds "$DS" --timings "$TIMINGS"
