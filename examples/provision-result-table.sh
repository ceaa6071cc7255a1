#!/usr/bin/env bash
# Provision the DynamoDB table Celery's result backend writes to, with TTL on. Safe to re-run: an existing
# table with Celery's key schema is success, and TTL already on is left alone.
#
#   usage: provision-result-table.sh [TABLE]
#
# The backend URL comes from taskctl's usual places (--env NAME via TASKCTL_ENV, TASKCTL_RESULT_BACKEND,
# CELERY_RESULT_BACKEND, the config file), e.g.
#   CELERY_RESULT_BACKEND='dynamodb://@eu-west-1/celery_results?ttl_seconds=604800' ./provision-result-table.sh
#
# Exit codes (taskctl's): 0 ready, 4 the table exists with a schema Celery cannot use, 5 cannot reach or
# authenticate, 124 the table did not become ACTIVE in time; anything else is passed on.
set -euo pipefail

table=()
[ $# -gt 0 ] && table=("$1")

# create (or find) it, wait until ACTIVE, switch TTL on attribute `ttl`; one JSON object either way
rc=0
out=$(taskctl table create "${table[@]}" --ttl --timeout 10m -o json) || rc=$?
if [ "$rc" -ne 0 ]; then
  # taskctl already printed one line saying why on stderr; add what it means for this script
  case $rc in
    4) echo "provision: table exists with an incompatible schema; pick another name" >&2 ;;
    5) echo "provision: cannot reach DynamoDB or access denied; check credentials and endpoint" >&2 ;;
    124) echo "provision: table not ACTIVE yet; re-run this script later" >&2 ;;
  esac
  exit "$rc"
fi

echo "$out" | jq -r '"\(.table): \(if .created then "created" else "already there" end), \(.status), TTL \(.ttl.status) on \(.ttl.attribute)"'

# Celery must be able to use it as it is now (key schema, TTL attribute)
if [ "$(echo "$out" | jq -r .celery_compatible)" != "true" ]; then
  echo "provision: Celery cannot use the table: $(echo "$out" | jq -r '.problems | join(" ")')" >&2
  exit 1
fi
