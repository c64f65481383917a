"""Instructions per request of the service, counted by valgrind's callgrind.

Timings on a shared 2-core machine move by 10% from one minute to the next; an
instruction count does not (the same binary, inputs and environment give the same total,
whatever else the machine is doing). `perf stat` would be cheaper, but this machine's
kernel offers no hardware counters (`perf stat -e instructions true`: not supported).

One measurement: the service starts under callgrind with instrumentation off (start-up
and migrations are not counted), a warm-up runs, counting starts, wrk sends requests for
a fixed time, the service then stays up long enough for its batch processors and metric
reader to export what those requests produced (that cost is telemetry's too), and the
counters are dumped. Every thread of the service is counted: the request runtime, the
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
    """Instructions per request, and the annotated profile (self cost per function)."""
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
        callgrind(app.process.pid, "--zero")
        result = wrk(app.url, script, seconds, CONNECTIONS, 1)
        time.sleep(EXPORT_GRACE_S)
        callgrind(app.process.pid, "--dump")
    finally:
        dropped = app.stop(timeout=120)
    # The first dump after --zero holds exactly the measured window.
    dumps = sorted(workdir.glob(f"callgrind.{tag}.out.*"), key=lambda p: int(p.suffix[1:]))
    if not dumps:
        raise SystemExit(f"bench: callgrind wrote no dump for {tag}")
    total = totals(dumps[0])
    return {
        "requests": result["requests"],
        "errors": result["errors"],
        "instructions": total / result["requests"],
        "profile": self_cost_by_group(dumps[0], result["requests"]),
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


def self_cost_by_group(dump, requests):
    """Self instructions per request, summed per crate (the profile's coarse view)."""
    output = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--inclusive=no", str(dump)],
        check=True, capture_output=True, text=True,
    ).stdout
    groups = {}
    for line in output.splitlines():
        match = ANNOTATED.match(line)
        if not match or match.group(3).startswith("*"):
            continue
        count = int(match.group(1).replace(",", ""))
        if "PROGRAM TOTALS" in line:
            continue
        group = group_of(match.group(3), match.group(4))
        groups[group] = groups.get(group, 0) + count / requests
    return groups


def top_functions(dump, limit=25):
    """The dump's most expensive functions by self cost, as callgrind_annotate prints them."""
    output = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", str(dump)], check=True, capture_output=True, text=True
    ).stdout
    rows = [line for line in output.splitlines() if ANNOTATED.match(line) and "PROGRAM TOTALS" not in line]
    return rows[:limit]
