#!/usr/bin/env bash
# The local Airflow stack, as people run Airflow: PostgreSQL and the api-server, scheduler,
# dag-processor and triggerer as separate processes (LocalExecutor).
#
#   scripts/stack.sh start    # initialise (first time) and start everything; prints the UI's URL
#   scripts/stack.sh status   # what runs, with pids; exit 1 when something is down
#   scripts/stack.sh stop     # stop every process it started, and the local services the DAGs started
#
# PostgreSQL: a cluster of this repository's own in $AIRFLOW_HOME/pg (git-ignored), reachable only
# through a Unix socket in a folder only its owner can open (no TCP port). Run as root (CI, containers),
# the server runs as the unprivileged `postgres` user, as PostgreSQL requires.
# The UI: http://127.0.0.1:$CHURN_AIRFLOW_PORT (8080), every user an admin (a local, loopback-only stack);
# the api-server refuses a foreign Host and other origins' pages (plugins/churn_ml/api_server_guard.py,
# README "What the local stack exposes").
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

PG_HOME=$AIRFLOW_HOME/pg
PGDATA=$PG_HOME/data
LOGS=$AIRFLOW_HOME/stack-logs
PIDS=$AIRFLOW_HOME/stack-pids
PROCESSES=(scheduler dag-processor triggerer api-server)
URL="http://127.0.0.1:$CHURN_AIRFLOW_PORT"

pg_bin() {  # the folder of initdb/pg_ctl/postgres: PG_BIN, PATH, or Debian's /usr/lib/postgresql/<v>/bin
  local dir
  if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
  if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v pg_ctl)")"; return
  fi
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$dir/pg_ctl" ] && { echo "$dir"; return; }
  done
  cat >&2 <<'EOF'
error: the PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found.
The local Airflow stack keeps its metadata in a PostgreSQL cluster of its own. Install the server:
  Debian/Ubuntu:  sudo apt-get install postgresql      (15 or newer)
  macOS:          brew install postgresql@15
or point PG_BIN at the folder that holds pg_ctl, e.g. PG_BIN=/usr/lib/postgresql/15/bin.
EOF
  exit 1
}

as_pg() {  # run a PostgreSQL server command as the cluster's owner (PostgreSQL refuses root)
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

alive() {  # alive NAME: its pid file names a live `airflow NAME` (not a reused pid after a reboot)
  local pid
  [ -f "$PIDS/$1.pid" ] || return 1
  pid=$(cat "$PIDS/$1.pid")
  # The api-server retitles itself "airflow api_server -- ...".
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qE "airflow ${1//-/[-_]}"
}

start_postgres() {
  local bin; bin=$(pg_bin)
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    echo "error: running as root, and PostgreSQL will not run as root: create its user (useradd --system postgres) or run as a normal user" >&2
    exit 1
  fi
  if [ ${#PG_SOCKET_DIR} -gt 90 ]; then
    echo "error: the socket folder $PG_SOCKET_DIR is too long for a Unix socket (PostgreSQL allows ~100 characters): set AIRFLOW_HOME to a shorter path" >&2
    exit 1
  fi
  mkdir -p "$PG_HOME" "$PG_SOCKET_DIR"
  chmod 700 "$PG_HOME" "$PG_SOCKET_DIR"
  if [ "$(id -u)" = 0 ]; then
    chown -R postgres: "$PG_HOME"
    if ! runuser -u postgres -- test -x "$PG_HOME"; then
      echo "error: PostgreSQL runs as the user postgres, which cannot reach $PG_HOME: a folder above it is private" >&2
      echo "       (e.g. /root is 0700). Set AIRFLOW_HOME to a folder it can reach, or clone the repository there." >&2
      exit 1
    fi
  fi
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    echo "==> initialising PostgreSQL in $PGDATA ($("$bin/postgres" --version))"
    as_pg "$bin/initdb" -D "$PGDATA" -U airflow --auth=trust -E UTF8 --locale=C.UTF-8 >"$PG_HOME/initdb.log" 2>&1 \
      || { cat "$PG_HOME/initdb.log" >&2; exit 1; }
  fi
  if ! as_pg "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    # No TCP listener at all: the socket folder (0700) is the only way in.
    as_pg "$bin/pg_ctl" -D "$PGDATA" -l "$PG_HOME/postgres.log" -w -t 60 \
      -o "-c listen_addresses='' -c unix_socket_directories='$PG_SOCKET_DIR' -c unix_socket_permissions=0700 -c max_connections=200" \
      start >/dev/null || { tail -20 "$PG_HOME/postgres.log" >&2; exit 1; }
  fi
  if ! "$bin/psql" -h "$PG_SOCKET_DIR" -U airflow -d postgres -tAc "select 1 from pg_database where datname='airflow'" | grep -q 1; then
    "$bin/createdb" -h "$PG_SOCKET_DIR" -U airflow airflow
  fi
}

migrate() {  # airflow db migrate, once per installed Airflow and cluster (stamped with the lock's hash)
  local want stamp=$PG_HOME/.migrated
  want=$(cat requirements-local.txt constraints-local.txt "$PGDATA/PG_VERSION" | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "==> migrating the Airflow metadata database"
    airflow db migrate >"$LOGS/db-migrate.log" 2>&1 || { tail -40 "$LOGS/db-migrate.log" >&2; exit 1; }
    echo "$want" > "$stamp"
  fi
}

healthy() { python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)" "$URL/api/v2/monitor/health" >/dev/null 2>&1; }

start_process() {  # start_process NAME: `airflow NAME` in its own session (so stop reaches its children)
  local name=$1 args=()
  if alive "$name"; then return; fi
  # Task and trigger logs are files the api-server reads on this machine: no log server (which would
  # listen on every interface) is needed.
  case $name in scheduler|triggerer) args=(--skip-serve-logs) ;; esac
  setsid airflow "$name" "${args[@]}" >"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$PIDS/$name.pid"
}

wait_for_api() {
  local deadline=$((SECONDS + 180))
  until healthy; do
    if ! alive api-server; then
      echo "error: the api-server exited; its log:" >&2; tail -30 "$LOGS/api-server.log" >&2; exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then echo "error: the api-server did not answer on $URL within 180 s" >&2; exit 1; fi
    sleep 1
  done
}

start() {
  mkdir -p "$LOGS" "$PIDS"
  if ! alive api-server && healthy; then
    echo "error: something else already answers on $URL: stop it or set CHURN_AIRFLOW_PORT" >&2
    exit 1
  fi
  start_postgres
  migrate
  if [ "$ML_TARGET" = local ]; then
    # The AWS APIs the tasks and triggers call, on 127.0.0.1 (local_aws/control_plane.py).
    python -m local_aws.control_plane start >"$LOGS/control-plane.log" 2>&1 \
      || { echo "error: the local control plane did not start:" >&2; tail -30 "$LOGS/control-plane.log" >&2; exit 1; }
    # The code the jobs run: include/ (CHURN_INCLUDE_DIR) deployed as the artifacts bucket's current code
    # version, as infra/deploy_mwaa.py deploys on AWS. After a change of include/: make deploy-local.
    python -m local_aws.code_deploy >"$LOGS/code-deploy.log" 2>&1 \
      || { echo "error: the local deploy of include/ failed:" >&2; tail -30 "$LOGS/code-deploy.log" >&2; exit 1; }
  fi
  for name in "${PROCESSES[@]}"; do start_process "$name"; done
  wait_for_api
  sleep 2
  for name in "${PROCESSES[@]}"; do
    if ! alive "$name"; then echo "error: airflow $name exited; its log:" >&2; tail -30 "$LOGS/$name.log" >&2; exit 1; fi
  done
  echo "==> Airflow is up: $URL  (PostgreSQL $PG_SOCKET_DIR, LocalExecutor; logs in $LOGS)"
  echo "    stop everything: scripts/stack.sh stop"
}

stop_session() {  # stop_session NAME: TERM every process of its session, KILL what is left after 30 s
  # By session, not process group: Airflow's task supervisor puts each task (and the spark-submit or
  # training process under it) in a process group of its own, but all stay in the session setsid made.
  local name=$1 pid
  [ -f "$PIDS/$name.pid" ] || return 0
  pid=$(cat "$PIDS/$name.pid")
  if alive "$name"; then
    pkill -TERM -s "$pid" 2>/dev/null || true
    for _ in $(seq 60); do pgrep -s "$pid" >/dev/null 2>&1 || break; sleep 0.5; done
    if pgrep -s "$pid" >/dev/null 2>&1; then
      echo "    $name (session $pid) did not stop within 30 s: killing what is left" >&2
      pkill -KILL -s "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$PIDS/$name.pid"
}

stop() {
  # What the DAGs started on the local target: the streaming job, the Kinesis emulator, the endpoint.
  if [ -x "$VIRTUAL_ENV/bin/python" ]; then
    python -m local_aws.glue_streaming stop >/dev/null 2>&1 || true
    python -m local_aws.endpoints delete --all >/dev/null 2>&1 || true
  fi
  for name in api-server triggerer dag-processor scheduler; do stop_session "$name"; done
  if [ -x "$VIRTUAL_ENV/bin/python" ]; then
    python -m local_aws.control_plane stop >/dev/null 2>&1 || true  # and the jobs it still runs
  fi
  if [ -f "$PGDATA/PG_VERSION" ]; then
    as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
  fi
  echo "==> stopped Airflow and PostgreSQL"
}

status() {
  local down=0 name
  if [ -f "$PGDATA/PG_VERSION" ] && as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    echo "postgres       running  (socket $PG_SOCKET_DIR)"
  else
    echo "postgres       stopped"; down=1
  fi
  for name in "${PROCESSES[@]}"; do
    if alive "$name"; then printf '%-14s running  (pid %s)\n' "$name" "$(cat "$PIDS/$name.pid")"
    else printf '%-14s stopped\n' "$name"; down=1; fi
  done
  if [ "$ML_TARGET" = local ]; then
    printf '%-14s %s\n' control-plane "$(python -m local_aws.control_plane status 2>/dev/null || echo stopped)"
  fi
  if healthy; then echo "UI             $URL"; fi
  return $down
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: scripts/stack.sh start|stop|status" >&2; exit 2 ;;
esac
