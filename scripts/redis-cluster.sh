#!/usr/bin/env bash
# A local Redis Cluster for tests and benchmarks: 3 masters and 3 replicas from Debian's redis-server,
# on loopback only, AOF on, noeviction. Data under .data/redis-cluster/<port> (gitignored).
#
#   bash scripts/redis-cluster.sh start    # start (and create the cluster once); prints REDIS_URL
#   bash scripts/redis-cluster.sh stop     # stop every node (data kept; `start` brings it back)
#   bash scripts/redis-cluster.sh reset    # stop and delete the data
#   bash scripts/redis-cluster.sh status   # cluster state and which port is master of what
#   bash scripts/redis-cluster.sh url      # the REDIS_URL to give Rapport
#
# Ports: REDIS_CLUSTER_PORT (default 7101) … +5, bus ports +REDIS_CLUSTER_BUS_OFFSET (10000); data dir
# REDIS_CLUSTER_DIR. The first three start as masters; each has one
# replica, so killing one master's process lets its replica take over (cluster-node-timeout 2 s).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BASE=${REDIS_CLUSTER_PORT:-7101}
# Each node's cluster-bus port is its port + this (Redis's default is 10000).
BUS_OFFSET=${REDIS_CLUSTER_BUS_OFFSET:-10000}
PORTS=()
for i in 0 1 2 3 4 5; do PORTS+=($((BASE + i))); done
DATA=${REDIS_CLUSTER_DIR:-"$ROOT/.data/redis-cluster"}

log() { printf '[redis-cluster] %s\n' "$*" >&2; }

if ! command -v redis-server >/dev/null; then
  log "installing redis-server (Debian)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi

url() {
  local seeds=()
  for p in "${PORTS[@]:0:3}"; do seeds+=("redis://127.0.0.1:$p"); done
  (IFS=,; echo "${seeds[*]}")
}

answers() { redis-cli -h 127.0.0.1 -p "$1" ping >/dev/null 2>&1; }

start_node() { # port
  local port=$1 dir="$DATA/$1"
  mkdir -p "$dir"
  if answers "$port"; then return 0; fi
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --dir "$dir" \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
    --cluster-port $((port + BUS_OFFSET)) \
    --appendonly yes --maxmemory-policy noeviction --save '' \
    --logfile "$dir/redis.log" --pidfile "$dir/redis.pid"
}

wait_ok() { # seconds — until every node reports cluster_state:ok and 3 masters (a node that has not
  # heard the gossip yet still says fail, and a client or `rapport doctor` may ask that one first)
  local i p ready info
  for ((i = 0; i < $1 * 10; i++)); do
    ready=1
    for p in "${PORTS[@]}"; do
      info=$(redis-cli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null)
      if ! grep -q '^cluster_state:ok' <<<"$info" || ! grep -q '^cluster_size:3' <<<"$info"; then
        ready=0
        break
      fi
    done
    [ "$ready" = 1 ] && return 0
    sleep 0.1
  done
  return 1
}

start() {
  for p in "${PORTS[@]}"; do start_node "$p"; done
  for p in "${PORTS[@]}"; do
    for _ in $(seq 1 50); do answers "$p" && break; sleep 0.1; done
    answers "$p" || { log "node $p did not start (see $DATA/$p/redis.log)"; exit 1; }
  done
  local known
  known=$(redis-cli -h 127.0.0.1 -p "$BASE" cluster info | sed -n 's/^cluster_known_nodes:\([0-9]*\).*/\1/p')
  if [ "${known:-1}" -lt 6 ]; then
    log "creating the cluster (3 masters, 1 replica each)"
    local nodes=()
    for p in "${PORTS[@]}"; do nodes+=("127.0.0.1:$p"); done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
  fi
  wait_ok 30 || { log "cluster did not reach state ok"; exit 1; }
  log "cluster ok on 127.0.0.1:${PORTS[0]}-${PORTS[5]}"
  url
}

stop() {
  for p in "${PORTS[@]}"; do
    if answers "$p"; then redis-cli -h 127.0.0.1 -p "$p" shutdown nosave >/dev/null 2>&1 || true; fi
  done
  log "stopped"
}

status() {
  redis-cli -h 127.0.0.1 -p "$BASE" cluster info | grep -E '^cluster_(state|known_nodes|size)'
  redis-cli -h 127.0.0.1 -p "$BASE" cluster nodes | awk '{print $2, $3, $9}' | sed 's/@[0-9]*//' | sort
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  reset) stop; rm -rf "$DATA"; log "data deleted" ;;
  status) status ;;
  url) url ;;
  *) echo "usage: $0 start|stop|reset|status|url" >&2; exit 2 ;;
esac
