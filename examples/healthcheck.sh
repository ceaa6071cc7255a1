#!/usr/bin/env bash
# Health check for cron or a monitoring agent: silent and exit 0 when healthy; otherwise exit 1 with one
# line saying why (the first failing check), which is what cron mails and what a pager shows.
#
#   usage: healthcheck.sh [QUEUE [MAX_READY]]   (default: celery, 1000 ready messages)
#   crontab: */5 * * * *  TASKCTL_ENV=prod /opt/ops/healthcheck.sh celery 5000
#
# Uses the plain output with awk (columns NAME STATUS DETAIL HINT; no JSON tools needed) and taskctl's exit
# codes: doctor exits 1 when a check fails; 2 means the script or configuration is wrong.
set -uo pipefail

queue="${1:-celery}"
max_ready="${2:-1000}"

err=$(mktemp)
trap 'rm -f "$err"' EXIT
out=$(taskctl doctor --queue "$queue" -o plain 2>"$err")
rc=$?
if [ "$rc" -ne 0 ]; then
  # the DETAIL column of the first failing row, cut at the header's column positions
  reason=$(echo "$out" | awk 'NR == 1 { d = index($0, "DETAIL"); h = index($0, "HINT"); next }
    $2 == "fail" { s = substr($0, d, h - d); sub(/ +$/, "", s); print $1 ": " s; exit }')
  # no failing row (bad configuration, exit 2): taskctl's own one-line error
  echo "unhealthy: ${reason:-$(head -n 1 "$err")}"
  exit 1
fi

# a backlog is not a doctor failure, but it is an incident: compare the ready count with the limit
ready=$(taskctl queue stats "$queue" -o plain 2>/dev/null | awk 'NR == 2 { print $2 }')
if [ -n "$ready" ] && [ "$ready" -gt "$max_ready" ]; then
  echo "unhealthy: queue $queue has $ready ready messages (limit $max_ready)"
  exit 1
fi
exit 0
