#!/usr/bin/env bash
# Keeps one long-running process alive: `supervise.sh NAME -- COMMAND...` runs COMMAND in the
# foreground and starts it again whenever it exits, after a backoff of 1, 2, 4 … 30 s (back to 1 s
# once it has stayed up for a minute), logging each exit and restart. This is the local stack's
# second line behind the fix in mams/broker_fixes.py: a worker that exits for any reason (a Redis
# failover, an OOM kill, a bug) comes back, and late acks plus the sweeper give its turns back.
# systemd's Restart=always does the same in production (deploy/systemd).
#
# SIGTERM or SIGINT stop the supervisor and its child (the child gets SIGTERM: Celery's warm
# shutdown), so `kill <supervisor pid>` is the one way to stop both. MAMS_SUPERVISE_MAX_DELAY
# caps the backoff (seconds); MAMS_SUPERVISE_CHILD_PIDFILE, if set, always holds the child's pid.
set -uo pipefail

name="${1:?usage: supervise.sh NAME -- COMMAND...}"
shift
[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] || { echo "usage: supervise.sh NAME -- COMMAND..." >&2; exit 2; }

max_delay="${MAMS_SUPERVISE_MAX_DELAY:-30}"
child=""
stopping=0
say() { printf '[mams] %s supervise %s: %s\n' "$(date -u +%FT%TZ)" "$name" "$*" >&2; }

stop() {
  stopping=1
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null
    wait "$child" 2>/dev/null
  fi
  say "stopped"
  exit 0
}
trap stop TERM INT

delay=1
restarts=0
while :; do
  started=$(date +%s)
  "$@" &
  child=$!
  [ -n "${MAMS_SUPERVISE_CHILD_PIDFILE:-}" ] && echo "$child" >"$MAMS_SUPERVISE_CHILD_PIDFILE"
  [ "$restarts" -gt 0 ] && say "restarted (pid $child, restart $restarts)"
  # `wait` returns early when a signal arrives; the trap then stops the child and exits.
  wait "$child"
  rc=$?
  [ "$stopping" = 1 ] && exit 0
  ran=$(( $(date +%s) - started ))
  [ "$ran" -ge 60 ] && delay=1
  say "exited with status $rc after ${ran}s; starting it again in ${delay}s"
  sleep "$delay" &
  wait $!
  restarts=$((restarts + 1))
  delay=$(( delay * 2 > max_delay ? max_delay : delay * 2 ))
done
