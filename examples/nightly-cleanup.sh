#!/usr/bin/env bash
# Nightly clean-up: forget (delete) FAILURE results older than N days, so failures do not pile up where TTL
# is off or long. Successes and anything newer stay. Prints one summary line; cron mails it.
#
#   usage: nightly-cleanup.sh [DAYS]        (default 7; TASKCTL_ENV / CELERY_RESULT_BACKEND pick the store)
#   crontab: 15 3 * * *  /opt/ops/nightly-cleanup.sh 14
#
# Exit codes: 0 done (also when nothing matched), 5 store unreachable, others as taskctl's.
set -euo pipefail

days="${1:-7}"
case $days in ''|*[!0-9]*) echo "usage: $0 [DAYS]" >&2; exit 2 ;; esac

# what would go, first: a script that deletes should be able to say how much before it does
would=$(taskctl result forget --state FAILURE --older-than "${days}d" --dry-run -o json | jq '.forgotten | length')
if [ "$would" -eq 0 ]; then
  echo "nightly-cleanup: no FAILURE results older than ${days}d"
  exit 0
fi

# destructive commands need --yes when not on a terminal (cron never is)
done_json=$(taskctl result forget --state FAILURE --older-than "${days}d" --yes -o json)
echo "$done_json" | jq -r --arg d "$days" '"nightly-cleanup: forgot \(.forgotten | length) FAILURE results older than \($d)d"'
