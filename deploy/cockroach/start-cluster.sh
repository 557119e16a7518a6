#!/usr/bin/env bash
# Start a local 3-node INSECURE CockroachDB cluster for newsroom (development / staging on one
# host), initialise it, enable vector indexes and create the database. Prints the DATABASE_URL.
#
#   deploy/cockroach/start-cluster.sh            # start (idempotent: running nodes are kept)
#   deploy/cockroach/stop-cluster.sh             # stop the three nodes
#
# Environment (all optional):
#   COCKROACH            cockroach binary                       (default: cockroach on PATH)
#   COCKROACH_DIR        where the node stores/pids/logs live   (default: ./.newsroom/cockroach)
#   COCKROACH_HOST       listen address                         (default: localhost)
#   COCKROACH_SQL_PORT   first node's SQL port; nodes use +0/+1/+2 (default: 26257)
#   COCKROACH_HTTP_PORT  first node's DB Console port, +0/+1/+2 (default: 8080)
#   COCKROACH_CACHE      --cache and --max-sql-memory per node  (default: 256MiB)
#   NEWSROOM_DB          database to create                     (default: newsroom)
#
# NOT run in CI here: no cockroach binary is reachable from the build machine (it is on neither
# PyPI, npm nor Debian). The flags follow CockroachDB's "Start a local cluster" documentation.
set -euo pipefail

COCKROACH=${COCKROACH:-cockroach}
DIR=${COCKROACH_DIR:-./.newsroom/cockroach}
HOST=${COCKROACH_HOST:-localhost}
SQL_PORT=${COCKROACH_SQL_PORT:-26257}
HTTP_PORT=${COCKROACH_HTTP_PORT:-8080}
CACHE=${COCKROACH_CACHE:-256MiB}
DB=${NEWSROOM_DB:-newsroom}
MIN_MAJOR=25
MIN_MINOR=3   # vector_cosine_ops on vector indexes (v25.2 has only vector_l2_ops)

if ! command -v "$COCKROACH" >/dev/null 2>&1; then
  echo "error: '$COCKROACH' not found. Install CockroachDB >= v$MIN_MAJOR.$MIN_MINOR" \
       "(https://www.cockroachlabs.com/docs/releases/) or set COCKROACH=/path/to/cockroach." >&2
  exit 1
fi

tag=$("$COCKROACH" version --build-tag 2>/dev/null | head -n1 | tr -d '[:space:]')
if [[ $tag =~ ^v([0-9]+)\.([0-9]+) ]]; then
  major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]}
  if (( major < MIN_MAJOR || (major == MIN_MAJOR && minor < MIN_MINOR) )); then
    echo "error: CockroachDB $tag is too old: newsroom needs >= v$MIN_MAJOR.$MIN_MINOR." >&2
    exit 1
  fi
else
  echo "warning: could not read the CockroachDB version ('$tag'); continuing" >&2
fi

mkdir -p "$DIR"
join="$HOST:$SQL_PORT,$HOST:$((SQL_PORT + 1)),$HOST:$((SQL_PORT + 2))"

for i in 0 1 2; do
  node="node$((i + 1))"
  pidfile="$DIR/$node.pid"
  if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "$node already running (pid $(cat "$pidfile"))"
    continue
  fi
  # --background returns once the node is ready to accept requests (or waits for init).
  "$COCKROACH" start --insecure \
    --store="$DIR/$node" \
    --listen-addr="$HOST:$((SQL_PORT + i))" \
    --http-addr="$HOST:$((HTTP_PORT + i))" \
    --join="$join" \
    --cache="$CACHE" --max-sql-memory="$CACHE" \
    --pid-file="$pidfile" \
    --background
  echo "$node started: sql $HOST:$((SQL_PORT + i)), console http://$HOST:$((HTTP_PORT + i))"
done

# One-time initialisation of the cluster; harmless "already initialized" on a re-run.
if ! out=$("$COCKROACH" init --insecure --host="$HOST:$SQL_PORT" 2>&1); then
  if [[ $out != *"already been initialized"* && $out != *"already initialized"* ]]; then
    echo "$out" >&2
    exit 1
  fi
fi

sql() { "$COCKROACH" sql --insecure --host="$HOST:$SQL_PORT" --execute="$1"; }

# Wait for SQL to answer (a fresh cluster takes a few seconds after init).
for _ in $(seq 1 60); do
  if sql "SELECT 1" >/dev/null 2>&1; then break; fi
  sleep 1
done

# Vector indexes are behind a cluster setting (newsroom's corpus migration creates one).
sql "SET CLUSTER SETTING feature.vector_index.enabled = true"
sql "CREATE DATABASE IF NOT EXISTS $DB"

echo
echo "CockroachDB cluster ready (3 nodes, insecure). Point newsroom at it with:"
echo "  export DATABASE_URL='postgresql://root@$HOST:$SQL_PORT/$DB?sslmode=disable'"
