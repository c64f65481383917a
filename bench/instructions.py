"""Instructions per request of the service, counted by valgrind's callgrind.

Timings on a shared 2-core machine move by 10% from one minute to the next; an
instruction count does not (the same binary, inputs and environment give the same total,
whatever else the machine is doing). `perf stat` would be cheaper, but this machine's
kernel offers no hardware counters (`perf stat -e instructions true`: not supported).

One measurement: the service starts under callgrind with instrumentation off (start-up
and migrations are not counted), a warm-up runs, counting starts; an idle window is
counted, then wrk sends requests for a fixed time and the service stays up long enough
for its batch processors and metric reader to export what those requests produced (that
cost is telemetry's too). Per request = (loaded window - idle window) / requests: what
runs by the clock rather than per request is in both windows and cancels out. Every thread of the service is counted: the request runtime, the
exporters' threads, the SDK's batch threads."""

import re
import subprocess
import time
from pathlib import Path

from load import wrk
from native import LAB, App

# Long enough for every batch the requests filled to leave: the span processor's
# schedule delay (5 s by default), the metric interval of the lab, the log processor's 1 s.
EXPORT_GRACE_S = max(5.0, int(LAB["OTEL_METRIC_EXPORT_INTERVAL"]) / 1000) + 1.5
# Few connections: callgrind runs one thread at a time, 50x slower than native.
CONNECTIONS = 4


def callgrind(pid, *command):
    subprocess.run(["callgrind_control", *command, str(pid)], check=True, capture_output=True)


def measure(binary, database_url, stack, protocol, script, seconds, workdir, tag):
    """Instructions per request, and the annotated profile (self cost per function), net
    of what the service does in the same time without requests."""
    out = workdir / f"callgrind.{tag}.out"
    wrapper = [
        # --fair-sched: the exporters' threads spin briefly on locks; without it valgrind's
        # scheduler lets one thread starve the rest and requests time out.
        "valgrind", "--tool=callgrind", "--fair-sched=yes", "--instr-atstart=no", f"--callgrind-out-file={out}",
    ]
    app = App(binary, database_url, protocol, stack.collector, workdir / f"console.{tag}.log",
              wrapper=wrapper, startup_timeout=180)
    try:
        wrk(app.url, script, 3, CONNECTIONS, 1)
        callgrind(app.process.pid, "--instr=on")
        # First an idle window as long as the loaded one: what runs by the clock (the
        # metric reader's exports, the runtime's timers), which the loaded window holds
        # too and which is no cost of the requests. Under callgrind's 50x slowdown a
        # window holds 50x fewer requests per metric export than a native run.
        callgrind(app.process.pid, "--zero")
        time.sleep(seconds + EXPORT_GRACE_S)
        callgrind(app.process.pid, "--dump")
        result = wrk(app.url, script, seconds, CONNECTIONS, 1)
        time.sleep(EXPORT_GRACE_S)
        callgrind(app.process.pid, "--dump")
    finally:
        dropped = app.stop(timeout=120)
    # Each dump holds what ran since the one before it: the idle window, then the loaded one.
    dumps = sorted(workdir.glob(f"callgrind.{tag}.out.*"), key=lambda p: int(p.suffix[1:]))
    if len(dumps) < 2:
        raise SystemExit(f"bench: callgrind wrote {len(dumps)} of the 2 dumps for {tag}")
    idle, loaded = dumps[0], dumps[1]
    requests = result["requests"]
    idle_profile = self_cost_by_group(idle, requests)
    profile = {
        group: cost - idle_profile.get(group, 0)
        for group, cost in self_cost_by_group(loaded, requests).items()
    }
    return {
        "requests": requests,
        "errors": result["errors"],
        "stages": stage_costs(loaded, requests),
        "instructions": (totals(loaded) - totals(idle)) / requests,
        "gross": totals(loaded) / requests,
        "profile": profile,
        "dropped": dropped,
    }


def totals(dump):
    for line in Path(dump).read_text(errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise SystemExit(f"bench: no totals in {dump}")


# `  1,234,567 (12.34%)  file.rs:crate::module::function [/path/binary]`
ANNOTATED = re.compile(r"^\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?([^:\s]*):(.+?)(?:\s+\[(.+)\])?\s*$")
CRATE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)::")


def group_of(function, obj):
    """The crate a function belongs to, or the library for code that is not Rust."""
    crate = CRATE.search(function)
    if crate:
        name = crate.group(1)
        return {"_": "core", "alloc": "core", "std": "core"}.get(name, name)
    obj = Path(obj or "").name
    if obj.startswith(("libc.", "libc-", "ld-linux")):
        return "libc (memcpy, malloc, syscalls)"
    if obj.startswith("vgpreload"):
        return "libc (memcpy, malloc, syscalls)"
    return obj or "other"


def annotated(dump, inclusive):
    """(instructions, function, object file) of each function row of callgrind_annotate's
    report of `dump`, self cost or inclusive."""
    output = subprocess.run(
        ["callgrind_annotate", "--threshold=100", f"--inclusive={'yes' if inclusive else 'no'}", str(dump)],
        check=True, capture_output=True, text=True,
    ).stdout
    for line in output.splitlines():
        match = ANNOTATED.match(line)
        if match and "PROGRAM TOTALS" not in line and not match.group(3).startswith("*"):
            yield int(match.group(1).replace(",", "")), match.group(3), match.group(4)


def self_cost_by_group(dump, requests):
    """Self instructions per request, summed per crate (the profile's coarse view)."""
    groups = {}
    for count, function, obj in annotated(dump, inclusive=False):
        group = group_of(function, obj)
        groups[group] = groups.get(group, 0) + count / requests
    return groups


# Where telemetry's instructions go, by stage: the inclusive cost of the function that
# does each (its callees included), as callgrind_annotate names it. The export stages run
# on the SDK's batch thread (HTTP) or the exporter's runtime (gRPC's encoding).
STAGES = [
    ("server span attributes (our middleware)", "todo_api::telemetry::http::request_attributes"),
    ("histogram records (SDK: attribute-set lookup)", "opentelemetry_sdk::metrics::internal::ValueMap<A>::measure"),
    ("span batch export, all of it (SDK batch thread)",
     "opentelemetry_sdk::trace::span_processor::BatchSpanProcessor::get_spans_and_export"),
    ("- OTLP encoding straight from the spans (app/src/telemetry/span_encoding.rs)",
     "todo_api::telemetry::span_encoding::Encoder::encode"),
    ("- SpanData to OTLP structs (opentelemetry-proto)",
     "opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope"),
    ("- protobuf encoding over HTTP (prost)", "prost::message::Message::encode_to_vec"),
    ("- dropping the OTLP structs", "core::ptr::drop_in_place<opentelemetry_proto::proto::tonic::trace::v1::ResourceSpans>"),
    ("protobuf encoding over gRPC (prost, in tonic's connection task)",
     "<tonic_prost::codec::ProstEncoder<T> as tonic::codec::Encoder>::encode"),
]


def stage_costs(dump, requests):
    """Inclusive instructions per request of each of STAGES' functions in `dump` (the
    rows that name their object file: the function itself, not a line inlined elsewhere)."""
    costs = {}
    for count, function, obj in annotated(dump, inclusive=True):
        for name, stage_function in STAGES:
            if obj and function.endswith(stage_function):
                costs[name] = max(costs.get(name, 0), count / requests)
    return costs


def top_functions(dump, limit=25):
    """The dump's most expensive functions by self cost, as callgrind_annotate prints them."""
    output = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", str(dump)], check=True, capture_output=True, text=True
    ).stdout
    rows = [line for line in output.splitlines() if ANNOTATED.match(line) and "PROGRAM TOTALS" not in line]
    return rows[:limit]
