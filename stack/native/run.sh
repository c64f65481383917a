#!/usr/bin/env bash
# Runs the Docker-free telemetry stack on loopback, from the binaries build.sh makes.
#
#   run.sh [stack]            Prometheus + sink + lab collector, until Ctrl-C
#   run.sh prometheus         one component in the foreground (exec: the process id
#   run.sh sink               stays the component's, so a caller can stop it);
#   run.sh collector [ARGS]   ARGS go to the collector, e.g. extra --config overlays
#   run.sh agent [ARGS]       lab 6: the agent (stack/collector/agent.yaml)
#   run.sh gateway N [ARGS]   lab 6: gateway N, 1 or 2 (stack/collector/gateway.yaml)
#   run.sh gateways           lab 6: Prometheus + sink + both gateways + the agent, until
#                             Ctrl-C (stack/collector/make-certs.sh must have run)
#
# This script is the one place for the native command lines; the test kit starts
# the components through it with its own ports. Environment (defaults in brackets):
#   OTELCOL_BIN, PROMETHEUS_BIN      binaries [whatever build.sh prints]
#   PROMETHEUS_LISTEN                [127.0.0.1:$LAB_PROMETHEUS_PORT]
#   PROMETHEUS_DATA_DIR              TSDB directory (required by `prometheus`)
#   SINK_OTLP_HTTP_ENDPOINT          [127.0.0.1:$LAB_LGTM_OTLP_HTTP_PORT, where LGTM's intake is in compose]
#   SINK_FILE_PATH                   JSON-lines output (required by `sink`)
#   COLLECTOR_OTLP_GRPC_ENDPOINT     [127.0.0.1:$LAB_COLLECTOR_OTLP_GRPC_PORT]
#   COLLECTOR_OTLP_HTTP_ENDPOINT     [127.0.0.1:$LAB_COLLECTOR_OTLP_HTTP_PORT]
#   COLLECTOR_HEALTH_CHECK_ENDPOINT  [127.0.0.1:$LAB_COLLECTOR_HEALTH_PORT]
#   (the LAB_* ports come from stack/lab.env)
# Lab 6 (agent and gateways; the agent also reads the COLLECTOR_* listen variables):
#   GATEWAY_1_ENDPOINT, GATEWAY_2_ENDPOINT  the agent's gRPC targets
#                                    [127.0.0.1:$LAB_GATEWAY_N_OTLP_GRPC_PORT]
#   GATEWAY_OTLP_GRPC_ENDPOINT, GATEWAY_OTLP_HTTP_ENDPOINT, GATEWAY_HEALTH_CHECK_ENDPOINT
#                                    gateway N's listen addresses [the LAB_GATEWAY_N_* ports]
#   LAB_GATEWAY_CERTS                directory of make-certs.sh's output [stack/collector/certs]
#   LAB_GATEWAY_CA_FILE, GATEWAY_CERT_FILE, GATEWAY_KEY_FILE, LAB_GATEWAY_TOKEN_FILE
#                                    [ca.crt, gateway.crt, gateway.key, token in LAB_GATEWAY_CERTS]
#   GATEWAY_DECISION_WAIT            tail sampling's wait per trace [gateway.yaml's 10s]
#   COLLECTOR_SELF_METRICS_ENDPOINT  where each collector pushes its otelcol_* metrics
#                                    [$COLLECTOR_EXPORT_METRICS_ENDPOINT]
#   COLLECTOR_NAME                   their service.name (job label) [lab-agent, lab-gateway-N]
#   COLLECTOR_EXPORT_ENDPOINT        traces + logs [http://$SINK_OTLP_HTTP_ENDPOINT]
#   COLLECTOR_EXPORT_METRICS_ENDPOINT
#                                    [http://$PROMETHEUS_LISTEN/api/v1/otlp/v1/metrics]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
collector_config="$here/../collector/config.yaml"

# The native stack lives on loopback only, on the host ports of the compose stack
# (stack/lab.env has them).
# shellcheck disable=SC1091 # stack/lab.env: KEY=VALUE lines, nothing to follow
source "$here/../lab.env"
export PROMETHEUS_LISTEN="${PROMETHEUS_LISTEN:-127.0.0.1:$LAB_PROMETHEUS_PORT}"
export SINK_OTLP_HTTP_ENDPOINT="${SINK_OTLP_HTTP_ENDPOINT:-127.0.0.1:$LAB_LGTM_OTLP_HTTP_PORT}"
export COLLECTOR_OTLP_GRPC_ENDPOINT="${COLLECTOR_OTLP_GRPC_ENDPOINT:-127.0.0.1:$LAB_COLLECTOR_OTLP_GRPC_PORT}"
export COLLECTOR_OTLP_HTTP_ENDPOINT="${COLLECTOR_OTLP_HTTP_ENDPOINT:-127.0.0.1:$LAB_COLLECTOR_OTLP_HTTP_PORT}"
export COLLECTOR_HEALTH_CHECK_ENDPOINT="${COLLECTOR_HEALTH_CHECK_ENDPOINT:-127.0.0.1:$LAB_COLLECTOR_HEALTH_PORT}"
export COLLECTOR_EXPORT_ENDPOINT="${COLLECTOR_EXPORT_ENDPOINT:-http://$SINK_OTLP_HTTP_ENDPOINT}"
export COLLECTOR_EXPORT_METRICS_ENDPOINT="${COLLECTOR_EXPORT_METRICS_ENDPOINT:-http://$PROMETHEUS_LISTEN/api/v1/otlp/v1/metrics}"

# Lab 6.
export LAB_GATEWAY_CERTS="${LAB_GATEWAY_CERTS:-$here/../collector/certs}"
export LAB_GATEWAY_CA_FILE="${LAB_GATEWAY_CA_FILE:-$LAB_GATEWAY_CERTS/ca.crt}"
export GATEWAY_CERT_FILE="${GATEWAY_CERT_FILE:-$LAB_GATEWAY_CERTS/gateway.crt}"
export GATEWAY_KEY_FILE="${GATEWAY_KEY_FILE:-$LAB_GATEWAY_CERTS/gateway.key}"
export LAB_GATEWAY_TOKEN_FILE="${LAB_GATEWAY_TOKEN_FILE:-$LAB_GATEWAY_CERTS/token}"
export GATEWAY_1_ENDPOINT="${GATEWAY_1_ENDPOINT:-127.0.0.1:$LAB_GATEWAY_1_OTLP_GRPC_PORT}"
export GATEWAY_2_ENDPOINT="${GATEWAY_2_ENDPOINT:-127.0.0.1:$LAB_GATEWAY_2_OTLP_GRPC_PORT}"
export COLLECTOR_SELF_METRICS_ENDPOINT="${COLLECTOR_SELF_METRICS_ENDPOINT:-$COLLECTOR_EXPORT_METRICS_ENDPOINT}"

binaries() {
  if [[ -z "${OTELCOL_BIN:-}" || -z "${PROMETHEUS_BIN:-}" ]]; then
    local key value
    while IFS='=' read -r key value; do
      case "$key" in
        OTELCOL_BIN | PROMETHEUS_BIN) export "$key=$value" ;;
      esac
    done < <("$here/build.sh")
  fi
}

self="$here/$(basename "${BASH_SOURCE[0]}")"

wait_ready() { # name, log file, curl arguments: polls up to 20 s
  local name="$1" log="$2"
  shift 2
  for _ in $(seq 1 100); do
    if curl -sS -o /dev/null "$@" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "run.sh: $name did not become ready; the end of its log:" >&2
  tail -n 20 "$log" >&2
  return 1
}

# Stack mode's exit path: stop the components it started, then drop their data.
stop_stack() {
  if [[ ${#pids[@]} -gt 0 ]]; then
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  rm -rf "$run_dir"
}

mode="${1:-stack}"
[[ $# -gt 0 ]] && shift
case "$mode" in
  prometheus)
    binaries
    : "${PROMETHEUS_DATA_DIR:?set PROMETHEUS_DATA_DIR to a TSDB directory}"
    # The same flags as otel-lgtm's Prometheus: OTLP and remote-write intake,
    # exemplars stored (they link latency points to traces).
    exec "$PROMETHEUS_BIN" \
      --config.file="$here/prometheus.yml" \
      --storage.tsdb.path="$PROMETHEUS_DATA_DIR" \
      --web.listen-address="$PROMETHEUS_LISTEN" \
      --web.enable-otlp-receiver \
      --web.enable-remote-write-receiver \
      --enable-feature=exemplar-storage
    ;;
  sink)
    binaries
    : "${SINK_FILE_PATH:?set SINK_FILE_PATH to the JSON-lines file to write}"
    exec "$OTELCOL_BIN" --config="$here/sink-collector.yaml"
    ;;
  collector)
    binaries
    exec "$OTELCOL_BIN" --config="$collector_config" "$@"
    ;;
  agent)
    binaries
    export COLLECTOR_NAME="${COLLECTOR_NAME:-lab-agent}"
    exec "$OTELCOL_BIN" --config="$here/../collector/agent.yaml" "$@"
    ;;
  gateway)
    binaries
    n="${1:-}"
    [[ "$n" == 1 || "$n" == 2 ]] || { echo "usage: $0 gateway 1|2 [ARGS...]" >&2; exit 2; }
    shift
    grpc_port="LAB_GATEWAY_${n}_OTLP_GRPC_PORT" http_port="LAB_GATEWAY_${n}_OTLP_HTTP_PORT"
    health_port="LAB_GATEWAY_${n}_HEALTH_PORT"
    export GATEWAY_OTLP_GRPC_ENDPOINT="${GATEWAY_OTLP_GRPC_ENDPOINT:-127.0.0.1:${!grpc_port}}"
    export GATEWAY_OTLP_HTTP_ENDPOINT="${GATEWAY_OTLP_HTTP_ENDPOINT:-127.0.0.1:${!http_port}}"
    export GATEWAY_HEALTH_CHECK_ENDPOINT="${GATEWAY_HEALTH_CHECK_ENDPOINT:-127.0.0.1:${!health_port}}"
    export COLLECTOR_NAME="${COLLECTOR_NAME:-lab-gateway-$n}"
    exec "$OTELCOL_BIN" --config="$here/../collector/gateway.yaml" "$@"
    ;;
  stack | gateways)
    binaries
    if [[ "$mode" == gateways && ! -r "$LAB_GATEWAY_TOKEN_FILE" ]]; then
      echo "run.sh: no $LAB_GATEWAY_TOKEN_FILE: run stack/collector/make-certs.sh first" >&2
      exit 1
    fi
    run_dir="$(mktemp -d "${TMPDIR:-/tmp}/otel-lab-native.XXXXXX")"
    export PROMETHEUS_DATA_DIR="$run_dir/prometheus-data"
    export SINK_FILE_PATH="$run_dir/sink.jsonl"
    pids=()
    trap stop_stack EXIT
    trap 'exit 130' INT TERM

    bash "$self" prometheus >"$run_dir/prometheus.log" 2>&1 &
    pids+=($!)
    bash "$self" sink >"$run_dir/sink.log" 2>&1 &
    pids+=($!)
    wait_ready prometheus "$run_dir/prometheus.log" -f "http://$PROMETHEUS_LISTEN/-/ready"
    # The sink has no health endpoint: any HTTP answer means its receiver listens.
    wait_ready sink "$run_dir/sink.log" "http://$SINK_OTLP_HTTP_ENDPOINT/"
    if [[ "$mode" == gateways ]]; then
      for n in 1 2; do
        bash "$self" gateway "$n" >"$run_dir/gateway-$n.log" 2>&1 &
        pids+=($!)
        health_port="LAB_GATEWAY_${n}_HEALTH_PORT"
        wait_ready "gateway $n" "$run_dir/gateway-$n.log" -f "http://127.0.0.1:${!health_port}/"
      done
      # The agent takes the lab collector's ports: the app exports to it unchanged.
      bash "$self" agent "$@" >"$run_dir/collector.log" 2>&1 &
    else
      # The lab collector last, so its first export finds both destinations up.
      bash "$self" collector "$@" >"$run_dir/collector.log" 2>&1 &
    fi
    pids+=($!)
    wait_ready collector "$run_dir/collector.log" -f "http://$COLLECTOR_HEALTH_CHECK_ENDPOINT/"

    cat <<EOF
native stack ready (Ctrl-C stops it and deletes $run_dir)
  send OTLP to      grpc $COLLECTOR_OTLP_GRPC_ENDPOINT | http http://$COLLECTOR_OTLP_HTTP_ENDPOINT
  Prometheus API    http://$PROMETHEUS_LISTEN/api/v1/query?query=traces_span_metrics_calls_total
  traces + logs     $SINK_FILE_PATH
  logs              $run_dir/*.log
EOF
    # Stop everything as soon as one component exits, showing why before the
    # run directory goes.
    wait -n "${pids[@]}" || true
    echo "run.sh: a component exited; the end of each log:" >&2
    for log in "$run_dir"/*.log; do
      echo "== $log" >&2
      tail -n 10 "$log" >&2
    done
    exit 1
    ;;
  *)
    echo "usage: $0 [stack | gateways | prometheus | sink | collector [ARGS...] | agent [ARGS...] | gateway 1|2 [ARGS...]]" >&2
    exit 2
    ;;
esac
