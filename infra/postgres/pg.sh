#!/usr/bin/env bash
# Throwaway PostgreSQL cluster for the integration tests (TCP 127.0.0.1 only, trust auth, fsync off).
#
#   pg.sh up      install the server from Debian packages if missing (root only), create the cluster
#                 if needed, start it, wait for pg_isready, ensure role + databases (idempotent)
#   pg.sh down    stop it (fast shutdown)
#   pg.sh status  exit 0 if it accepts connections
#   pg.sh url     print postgresql+asyncpg://aftersales:aftersales@127.0.0.1:<port>/
#
# Role aftersales/aftersales (superuser, test only); databases case_api, logistics_watcher,
# payout_worker and the same with a _test suffix.
# Environment: PG_PORT (15432); PG_DATA_DIR: as root the cluster must belong to the `postgres` OS
# user, so it defaults to /tmp/aftersales-pg-<hash of the repo path>/data (a clone under /root
# would not be reachable for that user); otherwise <repo>/.cache/pg/data. Server log: <data>/server.log.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PORT="${PG_PORT:-15432}"
if [ "$(id -u)" = 0 ]; then
  DATA="${PG_DATA_DIR:-/tmp/aftersales-pg-$(echo "$ROOT" | sha256sum | cut -c1-12)/data}"
else
  DATA="${PG_DATA_DIR:-$ROOT/.cache/pg/data}"
fi
DATABASES="case_api logistics_watcher payout_worker case_api_test logistics_watcher_test payout_worker_test"

say() { echo "pg: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

as_pg() {  # initdb/pg_ctl refuse to run as root
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

find_bin() {
  local d
  d="$(find /usr/lib/postgresql -maxdepth 3 -path '*/bin/initdb' 2>/dev/null | sort -V | tail -n 1 || true)"
  [ -n "$d" ] && dirname "$d"
}

ensure_installed() {
  if BIN="$(find_bin)"; then return 0; fi
  if [ "$(id -u)" != 0 ]; then
    say "PostgreSQL server binaries not found: sudo apt-get install -y postgresql"; exit 3
  fi
  say "installing PostgreSQL from Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q --no-install-recommends postgresql </dev/null
  BIN="$(find_bin)" || die "postgresql installed but no /usr/lib/postgresql/*/bin/initdb"
}

psql_super() {  # as the bootstrap superuser, over TCP
  "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres "$@"
}

is_ready() { "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 2; }

init_cluster() {
  if [ -f "$DATA/PG_VERSION" ] && [ "$(cat "$DATA/PG_VERSION")" = "$(basename "$(dirname "$BIN")")" ]; then
    return 0
  fi
  if [ -d "$DATA" ] && [ -n "$(ls -A "$DATA")" ] && [ ! -f "$DATA/PG_VERSION" ]; then
    die "$DATA is not empty and is no PostgreSQL cluster; refusing to wipe it"
  fi
  rm -rf "$DATA" && mkdir -p "$DATA"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$DATA" && chmod 700 "$DATA"
    as_pg test -w "$DATA" || die "user postgres cannot reach $DATA: set PG_DATA_DIR to a folder it can (e.g. under /tmp)"
  fi
  say "creating cluster in $DATA"
  as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  echo "host all all 127.0.0.1/32 trust" >"$DATA/pg_hba.conf"
  echo "include = 'aftersales.conf'" >>"$DATA/postgresql.conf"
}

start() {
  cat >"$DATA/aftersales.conf" <<EOF
# written by infra/postgres/pg.sh on every start
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = ''
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  if [ "$(id -u)" = 0 ]; then chown postgres: "$DATA/aftersales.conf"; fi
  if ! as_pg "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 start >/dev/null; then
    tail -n 30 "$DATA/server.log" >&2; die "could not start PostgreSQL on 127.0.0.1:$PORT (log: $DATA/server.log)"
  fi
  local _
  for _ in $(seq 1 60); do is_ready && return 0; sleep 0.5; done
  tail -n 30 "$DATA/server.log" >&2; die "PostgreSQL not ready on 127.0.0.1:$PORT"
}

ensure_objects() {
  psql_super <<'EOF'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'aftersales') THEN
    CREATE ROLE aftersales LOGIN SUPERUSER PASSWORD 'aftersales';
  END IF;
END $$;
EOF
  local db
  for db in $DATABASES; do
    psql_super -tA -c "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
      || psql_super -c "CREATE DATABASE $db OWNER aftersales"
  done
}

running() { [ -f "$DATA/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

up() {
  ensure_installed
  if running; then
    say "already running ($DATA)"
  else
    init_cluster
    start
  fi
  ensure_objects
  say "up on 127.0.0.1:$PORT ($DATA)"
}

down() {
  BIN="$(find_bin)" || { say "not installed"; return 0; }
  if ! running; then say "not running"; return 0; fi
  as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
  say "stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) if BIN="$(find_bin)" && is_ready; then say "accepting connections on 127.0.0.1:$PORT"
          else say "not running on 127.0.0.1:$PORT"; exit 1; fi ;;
  url) echo "postgresql+asyncpg://aftersales:aftersales@127.0.0.1:$PORT/" ;;
  *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
