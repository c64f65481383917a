#!/usr/bin/env bash
# Builds the lab's native OpenTelemetry Collector (otelcol-lab, from
# builder-config.yaml) and Prometheus (from the prometheus/ wrapper module) with
# the Go toolchain and the Go module proxy only, into a cache:
#   ${OTEL_LAB_CACHE:-$HOME/.cache/otel-lab}/native/otelcol-<version>-<manifest hash>/otelcol-lab
#   ${OTEL_LAB_CACHE:-$HOME/.cache/otel-lab}/native/prometheus-<version>-<inputs hash>/prometheus
# A binary is rebuilt only when its inputs (manifest or go.mod/go.sum, and this
# script) change, so a warm run takes seconds.
#
# stdout is exactly two lines, for scripts and the test kit:
#   OTELCOL_BIN=<path>
#   PROMETHEUS_BIN=<path>
# Progress goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${OTEL_LAB_CACHE:-$HOME/.cache/otel-lab}/native"

# Both binaries are static and self-contained: no C toolchain needed.
export CGO_ENABLED=0

log() { echo "build.sh: $*" >&2; }

# Hash of the files that decide what a binary is; stored next to the binary.
inputs_hash() { cat "$@" | sha256sum | cut -d' ' -f1; }

# Versions are read from the manifests, so each lives in one place.
otelcol_version="$(sed -n 's/^  version: *//p' "$here/builder-config.yaml" | head -n1)"
prometheus_module_version="$(awk '$1 == "github.com/prometheus/prometheus" { print $2 }' "$here/prometheus/go.mod")"
if [[ -z "$otelcol_version" || -z "$prometheus_module_version" ]]; then
  log "cannot read the versions from builder-config.yaml and prometheus/go.mod"
  exit 1
fi
# Prometheus 3.XY.Z is published as the Go module version v0.3XY.Z.
prometheus_minor="${prometheus_module_version#v0.}"
prometheus_minor="${prometheus_minor%%.*}"
prometheus_version="$((prometheus_minor / 100)).$((prometheus_minor % 100)).${prometheus_module_version##*.}"

mkdir -p "$cache"
# One build at a time per cache (parallel test binaries may all ask at once).
exec 9>"$cache/.lock"
flock 9
# Scratch space inside the cache, so the final mv is a rename on one filesystem.
scratch="$(mktemp -d "$cache/scratch.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

# --- OpenTelemetry Collector -------------------------------------------------
otelcol_hash="$(inputs_hash "$here/builder-config.yaml" "$here/build.sh")"
# One directory per manifest, not per version: checkouts with different component lists
# at the same release (branches, worktrees) share the cache without rebuilding over -
# and replacing under a running test - each other's binary.
otelcol_dir="$cache/otelcol-$otelcol_version-${otelcol_hash:0:12}"
otelcol_bin="$otelcol_dir/otelcol-lab"
if [[ -x "$otelcol_bin" && "$(cat "$otelcol_dir/inputs.sha256" 2>/dev/null)" == "$otelcol_hash" ]]; then
  log "otelcol-lab $otelcol_version is up to date"
else
  # The builder release must match the collector release it assembles.
  builder="$cache/builder-v$otelcol_version/builder"
  if [[ ! -x "$builder" ]]; then
    log "installing the collector builder v$otelcol_version"
    GOBIN="$(dirname "$builder")" go install "go.opentelemetry.io/collector/cmd/builder@v$otelcol_version"
  fi
  log "building otelcol-lab $otelcol_version (a few minutes when cold)"
  # The manifest's output_path is relative: sources and binary land in the scratch dir.
  (cd "$scratch" && "$builder" --config "$here/builder-config.yaml") >&2
  mkdir -p "$otelcol_dir"
  mv "$scratch/dist/otelcol-lab" "$otelcol_bin"
  echo "$otelcol_hash" >"$otelcol_dir/inputs.sha256"
fi

# --- Prometheus --------------------------------------------------------------
prometheus_hash="$(inputs_hash "$here/prometheus/go.mod" "$here/prometheus/go.sum" "$here/build.sh")"
prometheus_dir="$cache/prometheus-$prometheus_version-${prometheus_hash:0:12}"
prometheus_bin="$prometheus_dir/prometheus"
if [[ -x "$prometheus_bin" && "$(cat "$prometheus_dir/inputs.sha256" 2>/dev/null)" == "$prometheus_hash" ]]; then
  log "prometheus $prometheus_version is up to date"
else
  log "building prometheus $prometheus_version (a few minutes when cold)"
  # remove_all_sd drops the cloud service-discovery plugins (all data arrives via
  # OTLP); the version ldflag is what upstream's release build sets, so
  # `prometheus --version` reports the real release. No VCS stamp: the
  # wrapper module's git state says nothing about Prometheus.
  (cd "$here/prometheus" && go build -buildvcs=false -trimpath -tags remove_all_sd \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$prometheus_version" \
    -o "$scratch/prometheus" github.com/prometheus/prometheus/cmd/prometheus) >&2
  mkdir -p "$prometheus_dir"
  mv "$scratch/prometheus" "$prometheus_bin"
  echo "$prometheus_hash" >"$prometheus_dir/inputs.sha256"
fi

echo "OTELCOL_BIN=$otelcol_bin"
echo "PROMETHEUS_BIN=$prometheus_bin"
