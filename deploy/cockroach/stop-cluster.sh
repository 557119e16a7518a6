#!/usr/bin/env bash
# Stop the local cluster started by start-cluster.sh (SIGTERM = graceful drain and shutdown).
# Data stays in $COCKROACH_DIR; start-cluster.sh brings the same cluster back.
set -euo pipefail
DIR=${COCKROACH_DIR:-./.newsroom/cockroach}

for node in node1 node2 node3; do
  pidfile="$DIR/$node.pid"
  [[ -f $pidfile ]] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$node (pid $pid) did not stop within 60 s" >&2
      exit 1
    fi
    echo "$node stopped"
  fi
  rm -f "$pidfile"
done
