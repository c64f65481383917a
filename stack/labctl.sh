#!/usr/bin/env bash
# Runs labctl (`just traffic`, `just verify`, `just check N`): with cargo where there is
# a Rust toolchain, otherwise from its container image - app/Dockerfile, target
# `labctl` - for learners who run the lab's API as a container (`just lab-N container`).
# LABCTL_IN_CONTAINER=1 takes the container path even where cargo exists.
#
# The container shares the host's network (`--network host`), so labctl uses the same
# 127.0.0.1 URLs as on the cargo path, and `labctl traffic` keeps its rule of loading
# this machine only. (On the compose network it would need the service names - app,
# lgtm, collector - which that rule refuses, on purpose.) Host networking is native on
# Linux; Docker Desktop has it from 4.34 on, after "Enable host networking" in
# Settings > Resources > Network.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ "${LABCTL_IN_CONTAINER:-0}" != 1 ]] && command -v cargo >/dev/null; then
  exec cargo run -q -p labctl -- "$@"
fi
if ! command -v docker >/dev/null; then
  echo "labctl: it runs with cargo (a Rust toolchain) or Docker, and neither is installed" >&2
  exit 2
fi
image=otel-lab/labctl:local
if [[ "${LABCTL_IN_CONTAINER:-0}" == 1 ]]; then reason="LABCTL_IN_CONTAINER=1"; else reason="no cargo here"; fi
echo "labctl: $reason, so it runs from the $image image (the first build takes a few minutes)" >&2
# An unchanged tree is a quick no-op for the build cache. The image carries this
# checkout's dashboards/, so `verify` reads the dashboard as it is now; files that
# labctl writes (`traffic --json`) stay inside the container.
docker build --quiet --file app/Dockerfile --target labctl --tag "$image" . >/dev/null
exec docker run --rm --network host "$image" "$@"
