#!/usr/bin/env bash
# Are the host ports of a lab stage free? `just lab-N` runs this before `docker compose
# up`, with the same arguments it gives compose:
#
#   check-ports.sh [--profile NAME]... -f stack/compose.yaml [-f stack/compose.lgtm.yaml]...
#
# The ports are read from the stage's own compose files - every published port there is
# written "127.0.0.1:${LAB_..._PORT?...}:CONTAINER_PORT" - and their numbers from
# stack/lab.env, so this script holds no port of its own. A service with `profiles:` is
# checked only when one of its profiles is given (the `app` container, for example).
# Ports that this lab's own containers already publish are fine: moving from one stage
# to the next keeps them. Anything else listening on one of them is named, with the
# program if `lsof` can tell, and the exit status is 1.
#
# LAB_ENV_FILE points at another settings file (the tests use it). Runs on bash 3.2.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lab_env="${LAB_ENV_FILE:-$root/stack/lab.env}"
# shellcheck disable=SC1090,SC1091 # stack/lab.env: KEY=VALUE lines, nothing to follow
source "$lab_env"

profiles=" "
files=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --profile) profiles="$profiles$2 "; shift 2 ;;
    -f) files+=("$2"); shift 2 ;;
    *) echo "check-ports.sh: unexpected argument '$1'" >&2; exit 2 ;;
  esac
done
[[ ${#files[@]} -gt 0 ]] || { echo "usage: check-ports.sh [--profile NAME]... -f FILE..." >&2; exit 2; }

# "service profiles variable" for every published port, profiles comma-separated or "-".
# The compose files of this repository keep compose's usual layout: services two spaces
# in, their keys four, list items below them; tests/tests/lab_preflight.rs runs this
# against the real files.
published() {
  awk '
    /^[^ #]/ { in_services = ($0 ~ /^services:/); service = ""; in_ports = 0; next }
    !in_services { next }
    /^  [A-Za-z0-9_.-]+:/ { service = $1; sub(/:.*/, "", service); in_ports = 0; next }
    /^    profiles:/ {
      list = $0; sub(/^    profiles: *\[/, "", list); sub(/\].*/, "", list); gsub(/ /, "", list)
      profile[service] = list; next
    }
    /^    ports:/ { in_ports = 1; next }
    /^    [^ ]/ { in_ports = 0 }
    in_ports && match($0, /LAB_[A-Z0-9_]*_PORT/) {
      ports[++n] = service " " substr($0, RSTART, RLENGTH)
    }
    END {
      for (i = 1; i <= n; i++) {
        split(ports[i], part, " ")
        p = (part[1] in profile) ? profile[part[1]] : "-"
        print part[1], p, part[2]
      }
    }
  ' "$@"
}

# Host ports the lab's own containers publish now, one per line.
project="$(sed -n 's/^name: *//p' "$root/stack/compose.yaml")"
own_ports="$(docker ps --filter "label=com.docker.compose.project=$project" --format '{{.Ports}}' 2>/dev/null |
  grep -o ':[0-9]*->' | sed 's/[^0-9]//g' || true)"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

clashes=0
checked=" "
while read -r service service_profiles variable; do
  if [[ "$service_profiles" != "-" ]]; then
    active=no
    for p in ${service_profiles//,/ }; do
      [[ "$profiles" == *" $p "* ]] && active=yes
    done
    [[ "$active" == yes ]] || continue
  fi
  port="${!variable:-}"
  if [[ -z "$port" ]]; then
    echo "lab: $variable (service $service) is not set in $lab_env" >&2
    clashes=$((clashes + 1))
    continue
  fi
  [[ "$checked" == *" $port "* ]] && continue
  checked="$checked$port "
  if grep -qx "$port" <<<"$own_ports"; then continue; fi
  if listening "$port"; then
    holder=""
    if command -v lsof >/dev/null; then
      holder="$(lsof -nP -iTCP:"$port" -sTCP:LISTEN 2>/dev/null | awk 'NR == 2 { print $1 " (pid " $2 ")" }')"
    fi
    echo "lab: port $port on 127.0.0.1 ($service, $variable) is already in use${holder:+ by $holder}" >&2
    clashes=$((clashes + 1))
  fi
done < <(published "${files[@]}")

if ((clashes > 0)); then
  echo "lab: stop whatever holds the port(s) above and run the recipe again; stack/README.md (\"Ports\") lists what usually does" >&2
  exit 1
fi
