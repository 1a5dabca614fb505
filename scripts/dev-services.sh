#!/usr/bin/env bash
# Makes this machine ready to run Rapport locally and in CI: Redis and a MongoDB-protocol server.
#
# - Redis: if nothing answers on REDIS_URL (default redis://127.0.0.1:6379), installs Debian's
#   redis-server when absent and starts it with AOF on and `maxmemory-policy noeviction`.
# - MongoDB: MongoDB itself cannot be installed here, so FerretDB v1 (a MongoDB wire-protocol server)
#   is built from the Go module proxy when absent and started on loopback, storing in the local
#   PostgreSQL when there is one (a role and database `rapport_ferretdb`), else in SQLite under
#   .data/ferretdb (gitignored). Users with a real MongoDB just set MONGODB_URI.
#
# Idempotent: it starts only what is not already answering, and prints what it did.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
DATA="$ROOT/.data"
mkdir -p "$DATA"

REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
MONGODB_URI=${MONGODB_URI:-mongodb://127.0.0.1:27017/rapport}
# FerretDB v1.24.2, the last v1 release, is served by the Go module proxy here (v1.24.1 was refused
# for a while; v1.24.0 is the fallback when the wanted version cannot be downloaded). Override with
# FERRETDB_VERSION.
FERRETDB_VERSION=${FERRETDB_VERSION:-v1.24.2}
FERRETDB_FALLBACK_VERSION=v1.24.0

log() { printf '[dev-services] %s\n' "$*"; }

hostport() { # scheme://[user@]host:port/... -> host port
  local rest=${1#*://}
  rest=${rest#*@}
  rest=${rest%%/*}
  rest=${rest%%\?*}
  local host=${rest%%:*} port=${rest##*:}
  [ "$port" = "$rest" ] && port=$2
  echo "$host" "$port"
}

answers() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

wait_for() { # host port name seconds
  local i
  for ((i = 0; i < $4 * 10; i++)); do
    answers "$1" "$2" && return 0
    sleep 0.1
  done
  log "$3 did not start on $1:$2 within $4 s"
  return 1
}

apt_install() {
  if [ -z "${APT_UPDATED:-}" ]; then
    apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- Chromium (whatsapp-web.js and the browser tests use Debian's, never a downloaded one) --------
if [ ! -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ]; then
  log "installing chromium (Debian)"
  apt_install chromium || log "chromium could not be installed; the WhatsApp Web channel and browser tests need it"
fi

# --- Redis ---------------------------------------------------------------------------------------
# The test suite also starts private, throwaway Redis servers, so the binary must be here either way.
if ! command -v redis-server >/dev/null; then
  log "installing redis-server (Debian)"
  apt_install redis-server
fi
read -r RHOST RPORT < <(hostport "$REDIS_URL" 6379)
if answers "$RHOST" "$RPORT"; then
  log "Redis already answers on $RHOST:$RPORT"
else
  case "$RHOST" in 127.*|localhost) ;; *) log "Redis at $RHOST:$RPORT is not local and does not answer"; exit 1 ;; esac
  mkdir -p "$DATA/redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$RPORT" --dir "$DATA/redis" \
    --appendonly yes --maxmemory-policy noeviction --save '' --logfile "$DATA/redis/redis.log"
  wait_for "$RHOST" "$RPORT" Redis 10
  log "started Redis on $RHOST:$RPORT (AOF on, noeviction; data in .data/redis)"
fi

# PostgreSQL for FerretDB: the local server (started if installed but stopped), a role and database
# of its own. Returns non-zero when PostgreSQL is not available; FerretDB then uses SQLite.
FERRETDB_PG_URL=${FERRETDB_PG_URL:-postgres://rapport_ferretdb:rapport_ferretdb@127.0.0.1:5432/rapport_ferretdb}
ensure_postgres() {
  if ! answers 127.0.0.1 5432; then
    command -v pg_ctlcluster >/dev/null || return 1
    local cluster
    cluster=$(pg_lsclusters -h 2>/dev/null | awk 'NR==1 {print $1" "$2}')
    [ -n "$cluster" ] || return 1
    # shellcheck disable=SC2086
    pg_ctlcluster $cluster start >/dev/null 2>&1 || return 1
    wait_for 127.0.0.1 5432 PostgreSQL 20 || return 1
  fi
  command -v psql >/dev/null && id postgres >/dev/null 2>&1 || return 1
  local psql=(su postgres -c)
  [ "$(id -un)" = postgres ] && psql=(bash -c)
  "${psql[@]}" "psql -qtAc \"select 1 from pg_roles where rolname = 'rapport_ferretdb'\"" 2>/dev/null | grep -q 1 ||
    "${psql[@]}" "psql -qc \"create role rapport_ferretdb login password 'rapport_ferretdb'\"" >/dev/null 2>&1 || return 1
  "${psql[@]}" "psql -qtAc \"select 1 from pg_database where datname = 'rapport_ferretdb'\"" 2>/dev/null | grep -q 1 ||
    "${psql[@]}" "psql -qc 'create database rapport_ferretdb owner rapport_ferretdb'" >/dev/null 2>&1 || return 1
  return 0
}

# --- FerretDB (MongoDB wire protocol) ------------------------------------------------------------
read -r MHOST MPORT < <(hostport "$MONGODB_URI" 27017)
if answers "$MHOST" "$MPORT"; then
  log "MongoDB-protocol server already answers on $MHOST:$MPORT"
else
  case "$MHOST" in 127.*|localhost) ;; *) log "MongoDB at $MHOST:$MPORT is not local and does not answer"; exit 1 ;; esac
  GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
  GOBIN_DIR=$("$GO" env GOPATH)/bin
  FERRETDB=${FERRETDB:-$GOBIN_DIR/ferretdb}
  # The binary's version is kept beside it, so changing FERRETDB_VERSION rebuilds it.
  if [ ! -x "$FERRETDB" ] || [ "$(cut -d' ' -f1 "$FERRETDB.version" 2>/dev/null)" != "$FERRETDB_VERSION" ]; then
    log "building FerretDB $FERRETDB_VERSION (about 1-2 minutes)"
    start=$(date +%s)
    wanted=$FERRETDB_VERSION
    # `go install pkg@version` needs the module's version list, which the proxy refuses for FerretDB;
    # downloading the exact version and building it from its own go.mod works and is equivalent.
    if ! dir=$("$GO" mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" 2>/dev/null |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') || [ -z "$dir" ]; then
      log "FerretDB $FERRETDB_VERSION cannot be downloaded; building $FERRETDB_FALLBACK_VERSION instead"
      FERRETDB_VERSION=$FERRETDB_FALLBACK_VERSION
      dir=$("$GO" mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    fi
    src=$(mktemp -d)
    cp -r "$dir/." "$src"
    chmod -R u+w "$src"
    # A release build normally gets its version from `git describe`; the module zip has no .git.
    echo "$FERRETDB_VERSION" >"$src/build/version/version.txt"
    mkdir -p "$GOBIN_DIR"
    # Build beside the target and rename over it: a running FerretDB keeps its old file.
    (cd "$src" && "$GO" build -o "$FERRETDB.new" ./cmd/ferretdb)
    mv -f "$FERRETDB.new" "$FERRETDB"
    # The file records what was asked for (and what was built), so a fallback is not rebuilt each start.
    echo "$wanted $FERRETDB_VERSION" >"$FERRETDB.version"
    rm -rf "$src"
    log "built $FERRETDB in $(($(date +%s) - start)) s"
  fi
  FERRETDB_VERSION=$(cut -d' ' -f2 "$FERRETDB.version" 2>/dev/null || echo "$FERRETDB_VERSION")
  # Storage: PostgreSQL when this machine has it (FerretDB v1's PostgreSQL handler uses indexes; its
  # SQLite handler scans whole collections, so every query slows down as data grows — measured ~10x
  # slower end to end, see README "Capacity"), else SQLite. FERRETDB_HANDLER=sqlite|postgresql forces one.
  handler=${FERRETDB_HANDLER:-auto}
  if [ "$handler" = auto ]; then
    handler=sqlite
    if ensure_postgres; then handler=postgresql; fi
  elif [ "$handler" = postgresql ]; then
    ensure_postgres || { log "FERRETDB_HANDLER=postgresql but PostgreSQL is not usable"; exit 1; }
  fi
  mkdir -p "$DATA/ferretdb"
  if [ "$handler" = postgresql ]; then
    nohup "$FERRETDB" --handler=postgresql --postgresql-url="$FERRETDB_PG_URL" \
      --listen-addr="$MHOST:$MPORT" --state-dir="$DATA/ferretdb" --debug-addr=- --telemetry=disable --log-level=warn \
      >"$DATA/ferretdb.log" 2>&1 &
    where="PostgreSQL database rapport_ferretdb on 127.0.0.1:5432"
  else
    nohup "$FERRETDB" --handler=sqlite --sqlite-url="file:$DATA/ferretdb/" \
      --listen-addr="$MHOST:$MPORT" --state-dir="$DATA/ferretdb" --debug-addr=- --telemetry=disable --log-level=warn \
      >"$DATA/ferretdb.log" 2>&1 &
    where="SQLite data in .data/ferretdb"
  fi
  wait_for "$MHOST" "$MPORT" FerretDB 20
  log "started FerretDB $FERRETDB_VERSION on $MHOST:$MPORT ($where; log .data/ferretdb.log)"
fi
