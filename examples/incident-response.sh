#!/usr/bin/env bash
# Incident response on the broker side, one step per call so each can be run (and re-run) on its own:
#
#   incident-response.sh drain QUEUE FILE [TASK_GLOB]   take poisoned messages out of QUEUE into FILE (JSON lines)
#   incident-response.sh revoke-tree ROOT_ID            revoke every unfinished task below ROOT_ID
#   incident-response.sh requeue DLQ [QUEUE]            put dead-lettered messages back (to QUEUE, else their origin)
#   incident-response.sh replay FILE [QUEUE]            publish drained messages back once the fix is deployed
#
# Broker and backend come from taskctl's configuration (TASKCTL_ENV=prod, CELERY_BROKER_URL, ...).
# Every step prints one line of counts. Exit codes: 0 done, 3 queue not found, 5 unreachable, 2 bad usage.
set -euo pipefail

usage() { sed -n '3,7p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
step=$1; shift

case $step in
  drain)
    [ $# -ge 2 ] || usage
    queue=$1 file=$2 glob=${3:-}
    # FILE is appended to, never truncated; each message is acked only after its line is on disk
    args=(queue drain "$queue" --file "$file" --idle 2s --yes -o json)
    [ -n "$glob" ] && args+=(--task "$glob")
    taskctl "${args[@]}" | jq -r '"drained \(.count) messages from \(.source) to \(.destination) (\(.put_back) put back)"'
    ;;
  revoke-tree)
    [ $# -eq 1 ] || usage
    # workers online now skip or stop these tasks; REVOKED is also stored for workers that are not
    taskctl task revoke "$1" --tree --yes -o json |
      jq -r --arg root "$1" '"revoke sent for \(.revoked | length) tasks in the tree of \($root), \(.replies | length) workers replied"'
    ;;
  requeue)
    [ $# -ge 1 ] || usage
    args=(task requeue --from "$1" --yes -o json)
    [ $# -ge 2 ] && args+=(--to "$2")
    taskctl "${args[@]}" | jq -r '[.[] | .action] | "requeued \(map(select(. == "requeued")) | length), skipped \(map(select(. == "skipped")) | length)"'
    ;;
  replay)
    [ $# -ge 1 ] || usage
    args=(queue publish "$1" -o json)
    [ $# -ge 2 ] && args+=(--to "$2")
    taskctl "${args[@]}" | jq -r '"published \(.count) messages from \(.source) (\(.skipped) skipped as duplicates)"'
    ;;
  *) usage ;;
esac
