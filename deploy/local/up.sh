#!/usr/bin/env bash
# `make up`: the whole stack in the foreground — web (gunicorn), Celery worker and beat, and the
# LLM server — until Ctrl-C. Postgres and Redis keep running (`make down` stops them too).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
STACK=deploy/local/stack.sh
VENV="$ROOT/.venv"
WEB_PORT="${MAMS_WEB_PORT:-8000}"
mkdir -p .local/web

"$STACK" llm
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

"$VENV/bin/gunicorn" mams.wsgi:application --bind "127.0.0.1:$WEB_PORT" --workers 2 --threads 4 \
  --access-logfile - & pids+=($!)
"$VENV/bin/celery" -A mams worker -Q rounds,agents,analysis,maintenance --pool threads \
  -c "${MAMS_WORKER_CONCURRENCY:-8}" --hostname "up@%h" --loglevel INFO & pids+=($!)
"$VENV/bin/celery" -A mams beat --loglevel INFO --pidfile "$ROOT/.local/web/beat.pid" \
  --schedule "$ROOT/.local/web/beat-schedule" & pids+=($!)

echo "[mams] admin: http://127.0.0.1:$WEB_PORT/admin/ (user 'admin', password in .local/admin-password"\
" after a first \`make demo\`, or create one: .venv/bin/python manage.py createsuperuser). Ctrl-C stops."
wait -n "${pids[@]}"
