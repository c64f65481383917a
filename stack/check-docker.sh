#!/usr/bin/env bash
# Is this Docker new enough for the lab's compose files? `just lab-N` runs this first, so
# an old installation gets one clear line instead of an error in the middle of `up`.
#
#   Docker Engine 25.0 (API 1.44) or newer: every service's healthcheck sets
#     `start_interval`, which an older Engine cannot take - compose refuses to create
#     the containers ("can't set healthcheck.start_interval as feature require Docker
#     Engine v25 or later").
#   Docker Compose 2.24.1 or newer: 2.24.0 added `start_interval` and 2.24.1 fixed its
#     Engine check; before 2.24 compose drops the setting. Everything else the files and
#     the justfile use is older: `up --wait` (2.1.1), `--wait-timeout` (2.17.0),
#     `pull_policy: build` (2.0.0), profiles, `${VAR?message}`, `env_file`.
#
# Exit status 1 names what is too old. For the tests, LAB_CHECK_ENGINE_VERSION,
# LAB_CHECK_API_VERSION and LAB_CHECK_COMPOSE_VERSION stand in for what docker reports.
# Runs on bash 3.2 (macOS) too: no associative arrays, no mapfile.
set -euo pipefail

min_engine=25.0
min_api=1.44
min_compose=2.24.1

# The leading number groups of a version, space-separated: "v2.29.1-desktop.1" -> "2 29 1",
# "20.10.24+dfsg1" -> "20 10 24". Empty when the text does not start with a number.
numbers() {
  local text="${1#v}"
  text="${text%%[!0-9.]*}"
  echo "${text//./ }"
}

# at_least VERSION MINIMUM: 0 if VERSION >= MINIMUM, 1 if older, 2 if unreadable.
at_least() {
  local have want i h w
  read -r -a have <<<"$(numbers "$1")"
  read -r -a want <<<"$(numbers "$2")"
  [[ ${#have[@]} -gt 0 ]] || return 2
  for ((i = 0; i < ${#want[@]}; i++)); do
    h="${have[i]:-0}"
    w="${want[i]}"
    # 10# reads "08" as eight, not as a bad octal number.
    if ((10#$h > 10#$w)); then return 0; fi
    if ((10#$h < 10#$w)); then return 1; fi
  done
  return 0
}

problems=0
fail() {
  echo "lab: $*" >&2
  problems=$((problems + 1))
}

if [[ -z "${LAB_CHECK_ENGINE_VERSION:-}${LAB_CHECK_API_VERSION:-}" ]]; then
  if ! command -v docker >/dev/null; then
    echo "lab: the docker command is not installed; the lab stages need Docker Engine $min_engine+ with Compose $min_compose+" >&2
    exit 1
  fi
  if ! server="$(docker version --format '{{.Server.Version}} {{.Server.APIVersion}}' 2>/dev/null)"; then
    echo "lab: Docker is installed but its engine does not answer (is the daemon or Docker Desktop running?): docker version" >&2
    exit 1
  fi
  read -r engine api <<<"$server"
else
  engine="${LAB_CHECK_ENGINE_VERSION:-unknown}"
  api="${LAB_CHECK_API_VERSION:-unknown}"
fi

# The API version is what compose itself checks; the Engine version is what people know.
status=0
at_least "$api" "$min_api" || status=$?
case "$status" in
  0) ;;
  1) fail "Docker Engine $engine (API $api) is too old: the lab's healthchecks (start_interval) need Docker Engine $min_engine or newer (API $min_api); upgrade Docker" ;;
  *) echo "lab: cannot read the Docker API version '$api'; going on (the lab needs Docker Engine $min_engine+)" >&2 ;;
esac

if [[ -n "${LAB_CHECK_COMPOSE_VERSION:-}" ]]; then
  compose="$LAB_CHECK_COMPOSE_VERSION"
elif ! compose="$(docker compose version --short 2>/dev/null)"; then
  compose=""
fi
if [[ -z "$compose" ]]; then
  fail "Docker Compose v2 is missing (\`docker compose version\` fails); install the compose plugin, $min_compose or newer"
else
  status=0
  at_least "$compose" "$min_compose" || status=$?
  case "$status" in
    0) ;;
    1) fail "Docker Compose $compose is too old: the lab needs $min_compose or newer (healthcheck start_interval); upgrade the compose plugin" ;;
    *) echo "lab: cannot read the Compose version '$compose'; going on (the lab needs $min_compose+)" >&2 ;;
  esac
fi

((problems == 0)) || exit 1
