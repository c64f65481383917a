# otel-lab: `just` lists the recipes. Start with README.md, then labs/lab-1-app.
set shell := ["bash", "-euo", "pipefail", "-c"]

# The lab's settings - host ports and the app's telemetry environment - live in
# stack/lab.env, the one copy. Recipes that need them `source` it. It is not loaded with
# `set dotenv-load`, which would export the lab's OTEL_* variables into every recipe,
# `just test` included, whose tests set their own.
lab_env := "stack/lab.env"
# compose reads the published ports from the same file (`${LAB_..._PORT?...}` in stack/).
compose := "docker compose --env-file " + lab_env

# List the recipes
default:
    @just --list --unsorted

# ---- Develop and test ------------------------------------------------------------------

# Set up and run the API with no Docker: a local Postgres if none answers on :5432, telemetry on the console
dev:
    #!/usr/bin/env bash
    set -euo pipefail
    source {{lab_env}}
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$LAB_POSTGRES_PORT") 2>/dev/null; then
      stack/native/postgres.sh serve & pg=$!
      trap 'kill $pg 2>/dev/null; wait $pg' EXIT
      until (exec 3<>"/dev/tcp/127.0.0.1/$LAB_POSTGRES_PORT") 2>/dev/null; do
        kill -0 $pg 2>/dev/null || { echo "could not start Postgres (see above)" >&2; exit 1; }
        sleep 0.5
      done
    fi
    echo "Swagger UI: http://127.0.0.1:$LAB_APP_PORT/docs (Ctrl-C stops)"
    PORT=$LAB_APP_PORT OTEL_TRACES_EXPORTER=console OTEL_LOGS_EXPORTER=console OTEL_METRICS_EXPORTER=none cargo run -p todo-api

# Run every test: lint, static checks, API and telemetry tests, the native pipeline test
test: lint native-build sqlx-check
    cargo test --workspace --locked

# Lint: clippy on every target of the workspace (a warning fails) and shellcheck on every shell script
lint:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo clippy --workspace --all-targets --locked -- -D warnings
    # Every tracked file that starts with a shell shebang, wherever it lives.
    scripts=()
    while IFS= read -r -d '' file; do
      if [[ -f "$file" ]] && head -n 1 "$file" | grep -qE '^#!.*\b(ba|da)?sh\b'; then
        scripts+=("$file")
      fi
    done < <(git ls-files -z)
    shellcheck "${scripts[@]}"

# Build (or reuse) the native collector and Prometheus the pipeline test runs
native-build:
    stack/native/build.sh >/dev/null

# Check that the committed sqlx query cache (app/.sqlx) matches the queries
sqlx-check:
    stack/native/postgres.sh run bash -c 'cd app && sqlx migrate run --source migrations >/dev/null && cargo sqlx prepare --check'

# Refresh app/.sqlx after changing a query
sqlx-prepare:
    stack/native/postgres.sh run bash -c 'cd app && sqlx migrate run --source migrations >/dev/null && cargo sqlx prepare'

# Throughput and latency, telemetry on vs off vs the pgbench ceiling -> bench/results.md (not part of `test`)
bench *args: native-build
    cargo build --release --locked -p todo-api
    stack/native/postgres.sh run python3 bench/bench.py {{args}}

# The whole pipeline without Docker: Postgres, native Prometheus + collector, the API exporting to it
native: native-build
    #!/usr/bin/env bash
    set -euo pipefail
    set -a; source {{lab_env}}; set +a
    pids=()
    trap 'kill "${pids[@]}" 2>/dev/null' EXIT
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$LAB_POSTGRES_PORT") 2>/dev/null; then
      stack/native/postgres.sh serve & pids+=($!)
    fi
    stack/native/run.sh stack & pids+=($!)
    curl --silent --fail --output /dev/null --retry 60 --retry-delay 1 --retry-all-errors "http://127.0.0.1:$LAB_COLLECTOR_HEALTH_PORT/"
    echo "Prometheus http://127.0.0.1:$LAB_PROMETHEUS_PORT | collector OTLP 127.0.0.1:$LAB_COLLECTOR_OTLP_GRPC_PORT/$LAB_COLLECTOR_OTLP_HTTP_PORT | API http://127.0.0.1:$LAB_APP_PORT/docs"
    echo "Next, in another terminal: just traffic && just verify --native"
    PORT=$LAB_APP_PORT OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$LAB_COLLECTOR_OTLP_HTTP_PORT" cargo run -p todo-api


# Run the API on the host, telemetry to: console (lab 1), lgtm (lab 2), collector (labs 3-5)
run target="collector":
    #!/usr/bin/env bash
    set -euo pipefail
    # The lab's telemetry environment (protocol, metric interval, resource attributes).
    set -a; source {{lab_env}}; set +a
    case "{{target}}" in
      console)   export OTEL_TRACES_EXPORTER=console OTEL_LOGS_EXPORTER=console OTEL_METRICS_EXPORTER=none ;;
      lgtm)      export OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$LAB_LGTM_OTLP_HTTP_PORT" ;;
      collector) export OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$LAB_COLLECTOR_OTLP_HTTP_PORT" ;;
      *) echo "target is console, lgtm or collector, not '{{target}}'" >&2; exit 2 ;;
    esac
    export PORT="$LAB_APP_PORT"
    exec cargo run -p todo-api

# Send a bounded mix of good and bad requests (labctl traffic --help for the options)
[positional-arguments]
traffic *args:
    @stack/labctl.sh traffic "$@"

# Check every signal and every dashboard query (labctl verify --help for the options)
[positional-arguments]
verify *args:
    @stack/labctl.sh verify "$@"

# ---- Lab stages (Docker) ---------------------------------------------------------------
#
# Each lab stage is the compose files of the stage before plus one small override
# (stack/README.md has the table). `down`, `reset`, `logs` and `status` name every file
# and the `app` profile, so they reach whatever stage is running.

stage1 := "-f stack/compose.yaml"
stage2 := stage1 + " -f stack/compose.lgtm.yaml"
stage3 := stage2 + " -f stack/compose.collector.yaml"
stage4 := stage3 + " -f stack/compose.dashboard.yaml"
stage5 := stage4 + " -f stack/compose.faults.yaml"
stage6 := stage5 + " -f stack/compose.gateway.yaml"
# Lab 7 adds no container: a second, traced service (labctl traffic) on lab 5's stack.
stage7 := stage5
all_stages := stage6 + " --profile app"

# Lab 1: Postgres; the API runs on the host (`just run console`), or `just lab-1 container`
lab-1 app="host": (_up stage1 app)
    #!/usr/bin/env bash
    set -euo pipefail
    source {{lab_env}}
    echo
    echo "Lab 1 is up: Postgres on 127.0.0.1:$LAB_POSTGRES_PORT (user todouser, password todopass, database tododb)."
    if [ "{{app}}" = host ]; then
      echo "Next: start the API in a second terminal, telemetry on the console:  just run console"
    else
      echo "The API runs in a container; its spans and logs:  just logs app"
    fi
    echo "Then: Swagger UI http://127.0.0.1:$LAB_APP_PORT/docs  |  checkpoint: just check 1  |  guide: labs/lab-1-app/README.md"

# Lab 2: + grafana/otel-lgtm; the API exports straight to it (`just run lgtm`)
lab-2 app="host": (_up stage2 app)
    #!/usr/bin/env bash
    set -euo pipefail
    source {{lab_env}}
    echo
    echo "Lab 2 is up: Grafana http://127.0.0.1:$LAB_GRAFANA_PORT (Explore: Tempo, Loki, Prometheus), OTLP on 127.0.0.1:$LAB_LGTM_OTLP_GRPC_PORT/$LAB_LGTM_OTLP_HTTP_PORT."
    if [ "{{app}}" = host ]; then
      echo "Next: restart the API so it exports to LGTM:  just run lgtm"
    else
      echo "The API container now exports to LGTM: http://127.0.0.1:$LAB_APP_PORT/docs"
    fi
    echo "Then: send a few requests  |  checkpoint: just check 2  |  guide: labs/lab-2-lgtm/README.md"

# Lab 3: + the collector with span_metrics in the path (`just run collector`)
lab-3 app="host": (_up stage3 app) _collector-ready
    #!/usr/bin/env bash
    set -euo pipefail
    source {{lab_env}}
    echo
    echo "Lab 3 is up: the collector takes OTLP on 127.0.0.1:$LAB_COLLECTOR_OTLP_GRPC_PORT/$LAB_COLLECTOR_OTLP_HTTP_PORT (health: http://127.0.0.1:$LAB_COLLECTOR_HEALTH_PORT/) and feeds LGTM."
    if [ "{{app}}" = host ]; then
      echo "Next: restart the API so it exports to the collector:  just run collector"
    else
      echo "The API container now exports to the collector."
    fi
    echo "Then: just traffic --duration 30s  |  Grafana http://127.0.0.1:$LAB_GRAFANA_PORT  |  checkpoint: just check 3  |  guide: labs/lab-3-collector/README.md"

# Lab 4: + the "Todo API Overview" dashboard in Grafana
lab-4 app="host": (_up stage4 app) _collector-ready
    #!/usr/bin/env bash
    set -euo pipefail
    source {{lab_env}}
    echo
    echo "Lab 4 is up: dashboard http://127.0.0.1:$LAB_GRAFANA_PORT/d/todo-api-overview"
    if [ "{{app}}" = host ]; then
      echo "The API keeps exporting to the collector (just run collector)."
    fi
    echo "Next: just traffic --duration 60s  |  checkpoint: just check 4  |  guide: labs/lab-4-dashboard/README.md"

# Lab 5: + the app's fault switch; then `just traffic` and `just verify`
lab-5 app="host": (_up stage5 app) _collector-ready
    #!/usr/bin/env bash
    set -euo pipefail
    source {{lab_env}}
    echo
    echo "Lab 5 is up: dashboard http://127.0.0.1:$LAB_GRAFANA_PORT/d/todo-api-overview"
    if [ "{{app}}" = host ]; then
      echo "Next: restart the API with the fault switch on:"
      echo "  LAB_FAULT_ERROR_RATE=0.1 LAB_FAULT_LATENCY_MS=200 LAB_FAULT_ROUTES='/api/v1/todos/{todo_id}' just run collector"
    else
      echo "The API container runs with the fault switch on (stack/compose.faults.yaml)."
    fi
    echo "Then: just traffic, watch the dashboard, just verify  |  checkpoint: just check 5  |  guide: labs/lab-5-verify/README.md"

# Lab 6: the collector becomes an agent in front of two TLS + token gateways with tail sampling
lab-6 app="host": certs (_up stage6 app) _collector-ready
    #!/usr/bin/env bash
    set -euo pipefail
    source {{lab_env}}
    for port in "$LAB_GATEWAY_1_HEALTH_PORT" "$LAB_GATEWAY_2_HEALTH_PORT"; do
      curl --silent --fail --output /dev/null --retry 30 --retry-delay 1 --retry-all-errors "http://127.0.0.1:$port/" \
        || { echo "a gateway's health endpoint (127.0.0.1:$port) did not answer; see: just logs gateway1 gateway2" >&2; exit 1; }
    done
    echo
    echo "Lab 6 is up: agent on 127.0.0.1:$LAB_COLLECTOR_OTLP_GRPC_PORT/$LAB_COLLECTOR_OTLP_HTTP_PORT, gateways on 127.0.0.1:$LAB_GATEWAY_1_OTLP_HTTP_PORT and 127.0.0.1:$LAB_GATEWAY_2_OTLP_HTTP_PORT (TLS + token)."
    echo "Dashboard: http://127.0.0.1:$LAB_GRAFANA_PORT/d/collector-pipeline"
    if [ "{{app}}" = host ]; then
      echo "Next: keep the fault switch on and export to the agent, as in lab 5:"
      echo "  LAB_FAULT_ERROR_RATE=0.1 LAB_FAULT_LATENCY_MS=200 LAB_FAULT_ROUTES='/api/v1/todos/{todo_id}' just run collector"
    fi
    echo "Then: just traffic  |  checkpoint: just check 6  |  guide: labs/lab-6-gateway/README.md"

# Lab 6's credentials: a private CA, the gateways' certificate and a bearer token in stack/collector/certs (kept if present)
certs:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -r stack/collector/certs/token ] && openssl x509 -checkend 86400 -noout -in stack/collector/certs/gateway.crt >/dev/null 2>&1; then
      exit 0
    fi
    stack/collector/make-certs.sh

# Lab 7: lab 5's stack; `just traffic` is now the traced client todo-client, one trace across both services
lab-7 app="host": (_up stage7 app) _collector-ready
    #!/usr/bin/env bash
    set -euo pipefail
    source {{lab_env}}
    echo
    echo "Lab 7 is up: the service graph and client-vs-server latency are on http://127.0.0.1:$LAB_GRAFANA_PORT/d/todo-api-overview"
    if [ "{{app}}" = host ]; then
      echo "Next: restart the API so it runs this lab's code:  just run collector"
    fi
    echo "Then: just traffic --duration 60s (traced as todo-client)  |  checkpoint: just check 7  |  guide: labs/lab-7-propagation/README.md"

# Stop the lab's containers; data volumes are kept
down:
    {{compose}} {{all_stages}} down --remove-orphans

# Stop the lab and delete its data: Postgres rows, traces, logs, metrics
reset:
    {{compose}} {{all_stages}} down --remove-orphans --volumes

# Stop some of the lab's containers, to see what their absence does (`just stop gateway2`)
stop +services:
    {{compose}} {{all_stages}} stop {{services}}

# Start stopped containers again (`just start gateway2`)
start +services:
    {{compose}} {{all_stages}} start {{services}}

# Follow the containers' logs: all of them, or some (`just logs collector`)
logs *services:
    {{compose}} {{all_stages}} logs --follow --tail 100 {{services}}

# Which lab containers exist, and are they healthy?
status:
    {{compose}} {{all_stages}} ps --all

# The checkpoint of lab N (1-7): a PASS/FAIL table with a fix for each failure
[positional-arguments]
check n *args:
    @stack/labctl.sh check "$@"

# Bring the stack to a stage. `app`: `host` (you run the API with `just run ...`) or
# `container` (compose builds and runs it, profile `app`).
_up files app:
    #!/usr/bin/env bash
    set -euo pipefail
    case "{{app}}" in
      host) profile="" ;;
      container) profile="--profile app" ;;
      *)
        echo "app is where the API runs: host (the default) or container, not '{{app}}'" >&2
        exit 2
        ;;
    esac
    # Docker new enough for the files (Engine 25+, Compose 2.24.1+), then the stage's
    # host ports free - each check names what is wrong instead of failing inside `up`.
    stack/check-docker.sh
    if [ "{{app}}" = host ]; then
      # A container copy of the API left by an earlier `container` run would hold the
      # app's port and still export to its old destination: remove it.
      {{compose}} {{all_stages}} rm --stop --force app >/dev/null
    fi
    stack/check-ports.sh $profile {{files}}
    {{compose}} {{files}} $profile up --detach --wait --wait-timeout 300 --remove-orphans

# The collector's container healthcheck can only validate its config (the image has no
# shell or curl); whether its pipelines run is asked here, from the host.
_collector-ready:
    #!/usr/bin/env bash
    set -euo pipefail
    source {{lab_env}}
    url="http://127.0.0.1:$LAB_COLLECTOR_HEALTH_PORT/"
    curl --silent --fail --output /dev/null --retry 30 --retry-delay 1 --retry-all-errors "$url" \
      || { echo "the collector's health endpoint ($url) did not answer; see: just logs collector" >&2; exit 1; }

