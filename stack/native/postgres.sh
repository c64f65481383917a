#!/usr/bin/env bash
# Postgres without Docker, from the distribution's server binaries (Debian's
# `postgresql` package or Nix's postgresql_16).
#
#   postgres.sh serve         the lab's database on 127.0.0.1:$LAB_POSTGRES_PORT (todouser/todopass,
#                             database tododb), data kept under the cache directory
#                             (/var/tmp/otel-lab-postgres for root); runs until Ctrl-C
#   postgres.sh run CMD...    a throwaway cluster on a free port: CMD runs with
#                             DATABASE_URL pointing at an empty tododb, then the
#                             cluster is removed (used by `just sqlx-check`)
set -euo pipefail

cache="${OTEL_LAB_CACHE:-$HOME/.cache/otel-lab}"

bindir() {
  if [[ -n "${PG_BIN:-}" ]]; then echo "$PG_BIN"; return; fi
  if command -v initdb >/dev/null && command -v postgres >/dev/null; then
    dirname "$(command -v initdb)"; return
  fi
  local dir
  # The newest Debian server; an unmatched glob stays the pattern, which is no directory.
  dir="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
  if [[ ! -d "$dir" ]]; then
    echo "postgres.sh: no Postgres server found; install 'postgresql' (apt) or set PG_BIN" >&2
    exit 1
  fi
  echo "$dir"
}

# Postgres refuses to run as root: when root, run it as the `postgres` system user.
as_db_user() {
  if [[ "$(id -u)" == 0 ]]; then setpriv --reuid=postgres --regid=postgres --init-groups "$@"; else "$@"; fi
}

init_cluster() { # data dir, socket dir, port
  local data="$1" sockets="$2" port="$3" bin
  bin="$(bindir)"
  mkdir -p "$sockets" "$(dirname "$data")"
  if [[ "$(id -u)" == 0 ]]; then chown -R postgres: "$(dirname "$data")" "$sockets"; fi
  if [[ ! -f "$data/PG_VERSION" ]]; then
    as_db_user "$bin/initdb" --auth=trust --username=postgres --encoding=UTF8 -D "$data" >/dev/null
    as_db_user "$bin/pg_ctl" -D "$data" -o "-p $port -k $sockets -c listen_addresses=127.0.0.1" -w start >/dev/null
    psql -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
      -c "CREATE ROLE todouser LOGIN PASSWORD 'todopass'" \
      -c "CREATE DATABASE tododb OWNER todouser"
  else
    as_db_user "$bin/pg_ctl" -D "$data" -o "-p $port -k $sockets -c listen_addresses=127.0.0.1" -w start >/dev/null
  fi
}

stop_cluster() { # data dir
  as_db_user "$(bindir)/pg_ctl" -D "$1" -m fast -w stop >/dev/null 2>&1 || true
}

case "${1:-}" in
  serve)
    # shellcheck disable=SC1091 # stack/lab.env: KEY=VALUE lines, nothing to follow
    source "$(dirname "${BASH_SOURCE[0]}")/../lab.env"
    port="${PGPORT_LAB:-$LAB_POSTGRES_PORT}"
    # root's home is closed to the postgres user that the server runs as.
    home="$cache/postgres"
    if [[ "$(id -u)" == 0 ]]; then home=/var/tmp/otel-lab-postgres; fi
    data="$home/data"
    init_cluster "$data" "$home/sockets" "$port"
    trap 'stop_cluster "$data"; echo "postgres stopped"' EXIT
    echo "postgres ready: postgres://todouser:todopass@127.0.0.1:$port/tododb (Ctrl-C stops it)"
    while sleep 3600; do :; done
    ;;
  run)
    shift
    [[ $# -gt 0 ]] || { echo "usage: postgres.sh run CMD..." >&2; exit 2; }
    dir="$(mktemp -d /tmp/otel-lab-pg.XXXXXX)"
    chmod 755 "$dir"
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    init_cluster "$dir/cluster/data" "$dir/sockets" "$port"
    trap 'stop_cluster "$dir/cluster/data"; rm -rf "$dir"' EXIT
    DATABASE_URL="postgres://todouser:todopass@127.0.0.1:$port/tododb" "$@"
    ;;
  *)
    sed -n '2,10p' "$0" >&2
    exit 2
    ;;
esac
