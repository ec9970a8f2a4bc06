#!/usr/bin/env bash
# A local Redis Cluster for Herald's cluster tests (tests/integration/cluster.rs)
# and for trying `HERALD_REDIS_URL=redis+cluster://...` by hand: six
# redis-server processes on 127.0.0.1 ports 7100-7105 (three primaries, three
# replicas), each daemonized in cluster mode with its own directory (nodes.conf
# and log) under .herald/redis-cluster/<port> (or $HERALD_STATE_DIR), no
# snapshots and no append-only file.
#
# Usage:
#   scripts/redis-cluster.sh start   make sure the cluster runs (idempotent: a
#                                    healthy cluster on 7100 is reused; a broken
#                                    or partial one is stopped, wiped and
#                                    created again)
#   scripts/redis-cluster.sh stop    stop the six nodes and remove their dirs
#   scripts/redis-cluster.sh url     print the HERALD_REDIS_URL to use
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE_DIR=${HERALD_STATE_DIR:-$ROOT/.herald}
CLUSTER_DIR=$STATE_DIR/redis-cluster
HOST=127.0.0.1
PORTS=(7100 7101 7102 7103 7104 7105)
# How long to wait for the nodes to listen, and for the cluster to agree.
WAIT_SECONDS=60

say() { printf '[redis-cluster] %s\n' "$*"; }

# redis-cli against one node; the answer on stdout, errors hidden.
cli() { # port args...
  local port=$1
  shift
  redis-cli -h "$HOST" -p "$port" "$@" 2>/dev/null
}

# Whether a node answers PING on port $1.
node_up() { [ "$(cli "$1" PING || true)" = PONG ]; }

# Whether node $1 reports cluster_state:ok.
node_ok() { cli "$1" CLUSTER INFO | tr -d '\r' | grep -qx 'cluster_state:ok'; }

# How many primaries that serve slots node $1 knows of (CLUSTER NODES lines
# whose flags say master and that list at least one slot range).
primaries_with_slots() {
  cli "$1" CLUSTER NODES | tr -d '\r' |
    awk '$3 ~ /master/ && $3 !~ /fail/ && NF >= 9 { n++ } END { print n + 0 }'
}

# Whether the whole cluster is healthy: every node up and ok, three
# primaries with slots.
cluster_healthy() {
  local port
  for port in "${PORTS[@]}"; do
    node_up "$port" && node_ok "$port" || return 1
  done
  [ "$(primaries_with_slots "${PORTS[0]}")" -eq 3 ]
}

# Stops every node that answers (SHUTDOWN NOSAVE) and waits for its port
# to close.
stop_nodes() {
  local port i
  for port in "${PORTS[@]}"; do
    if node_up "$port"; then
      cli "$port" SHUTDOWN NOSAVE >/dev/null || true
    fi
  done
  for port in "${PORTS[@]}"; do
    for ((i = 0; i < WAIT_SECONDS * 10; i++)); do
      node_up "$port" || break
      sleep 0.1
    done
    if node_up "$port"; then
      say "node $port did not stop; stop it by hand"
      exit 1
    fi
  done
}

# Starts the six nodes from empty directories and joins them.
create_cluster() {
  local port i
  rm -rf "$CLUSTER_DIR"
  for port in "${PORTS[@]}"; do
    mkdir -p "$CLUSTER_DIR/$port"
    redis-server --daemonize yes --bind "$HOST" --port "$port" \
      --cluster-enabled yes --cluster-config-file "$CLUSTER_DIR/$port/nodes.conf" \
      --cluster-node-timeout 5000 \
      --save "" --appendonly no --dir "$CLUSTER_DIR/$port" \
      --logfile "$CLUSTER_DIR/$port/redis.log"
  done
  for port in "${PORTS[@]}"; do
    for ((i = 0; i < WAIT_SECONDS * 10; i++)); do
      node_up "$port" && break
      sleep 0.1
    done
    if ! node_up "$port"; then
      say "node $port did not start; its log ($CLUSTER_DIR/$port/redis.log):"
      tail -n 30 "$CLUSTER_DIR/$port/redis.log" >&2 || true
      exit 1
    fi
  done
  local addresses=()
  for port in "${PORTS[@]}"; do addresses+=("$HOST:$port"); done
  redis-cli --cluster create "${addresses[@]}" --cluster-replicas 1 --cluster-yes >"$CLUSTER_DIR/create.log" 2>&1 || {
    say "redis-cli --cluster create failed; its output:"
    cat "$CLUSTER_DIR/create.log" >&2
    exit 1
  }
  # Gossip takes a moment to reach every node.
  for ((i = 0; i < WAIT_SECONDS * 10; i++)); do
    cluster_healthy && return 0
    sleep 0.1
  done
  say "the cluster did not reach cluster_state:ok with 3 primaries within $WAIT_SECONDS s"
  for port in "${PORTS[@]}"; do
    say "node $port: $(cli "$port" CLUSTER INFO | tr -d '\r' | grep cluster_state || echo down)"
  done
  exit 1
}

start() {
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    say "redis-server and redis-cli are needed (Debian: redis-server, redis-tools)"
    exit 1
  fi
  if node_up "${PORTS[0]}" && node_ok "${PORTS[0]}" && cluster_healthy; then
    say "reusing the cluster on $HOST:${PORTS[0]}-${PORTS[5]}"
    return
  fi
  local port running=0
  for port in "${PORTS[@]}"; do
    node_up "$port" && running=$((running + 1))
  done
  if [ "$running" -gt 0 ]; then
    say "$running of ${#PORTS[@]} nodes run but the cluster is not healthy: recreating it"
    stop_nodes
  fi
  say "creating the cluster on $HOST:${PORTS[0]}-${PORTS[5]} (dirs and logs in $CLUSTER_DIR)"
  create_cluster
  say "cluster ready: $(url)"
}

stop() {
  stop_nodes
  rm -rf "$CLUSTER_DIR"
  say "stopped"
}

url() {
  printf 'redis+cluster://%s:%s,%s:%s,%s:%s\n' \
    "$HOST" "${PORTS[0]}" "$HOST" "${PORTS[1]}" "$HOST" "${PORTS[2]}"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) url ;;
  *)
    echo "usage: $0 start|stop|url" >&2
    exit 2
    ;;
esac
