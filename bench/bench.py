#!/usr/bin/env python3
"""The service's throughput, latency and CPU with telemetry off and on over each OTLP
protocol, against the database's own ceiling, and (--instructions) its instructions per
request under callgrind. Run through `just bench` (which provides DATABASE_URL: a
throwaway Postgres cluster); writes bench/results.md and prints it.

Every number comes from this one run on this machine: the modes (off, on over gRPC, on
over HTTP) are interleaved in each run and the median of the runs is reported, and
pgbench measures what Postgres alone does with the same SELECT over the same number of
connections.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import instructions as callgrind
from load import pgbench, postgres_bindir, wrk
from native import ROOT, App, NativeStack, cpu_seconds, postgres_cpu, rss_mb
from report import BASELINE, instructions_table, report

SEED_ROWS = 1000
# The seeded ids are `00000000-0000-4000-8000-000000000NNN`, so wrk and pgbench can pick
# one at random without a lookup.
SEED_SQL = f"""
INSERT INTO todos (id, title, description)
SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, 'seeded todo ' || n, 'for the benchmark'
FROM generate_series(0, {SEED_ROWS - 1}) AS n
ON CONFLICT (id) DO NOTHING;
"""
WORKLOADS = [
    ("GET by id", "get_by_id.lua"),
    ("GET list (limit=20)", "list.lua"),
    ("POST create", "create.lua"),
    ("mixed CRUD", "mixed.lua"),
]
PROTOCOLS = ["grpc", "http/protobuf"]


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


# A mode is a label: `off`, a protocol, or either of them followed by BASELINE for the
# build given with --baseline, measured in the same run for a before/after comparison.


def protocol_of(mode):
    plain = mode.removesuffix(BASELINE)
    return None if plain == "off" else plain


def measure(app, stack, postmaster, script, args):
    wrk(app.url, script, args.warmup, args.connections, args.threads)
    app_cpu, pg_cpu, stack_cpu = cpu_seconds(app.process.pid), postgres_cpu(postmaster), stack.cpu()
    result = wrk(app.url, script, args.duration, args.connections, args.threads)
    result["app_us"] = (cpu_seconds(app.process.pid) - app_cpu) * 1e6 / result["requests"]
    result["pg_us"] = (postgres_cpu(postmaster) - pg_cpu) * 1e6 / result["requests"]
    collector, backends = stack.cpu()
    result["collector_us"] = (collector - stack_cpu[0]) * 1e6 / result["requests"]
    result["backends_us"] = (backends - stack_cpu[1]) * 1e6 / result["requests"]
    result["rss"] = rss_mb(app.process.pid)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up before each run")
    parser.add_argument("--runs", type=int, default=3, help="runs per workload and mode (median reported)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk and pgbench threads")
    parser.add_argument(
        "--protocols", default=",".join(PROTOCOLS),
        help="OTLP protocols to measure telemetry on with, comma-separated (default: both)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.md")
    parser.add_argument("--only", help="run only the workloads whose name contains this text (e.g. 'by id')")
    parser.add_argument("--instructions", type=int, default=0, metavar="SECONDS",
                        help="also count instructions per request under callgrind, SECONDS of load per mode")
    parser.add_argument("--no-timing", action="store_true", help="skip the timed runs (with --instructions)")
    parser.add_argument("--keep", type=Path, help="keep the work directory (callgrind dumps) here")
    parser.add_argument("--baseline", type=Path, metavar="BINARY",
                        help="also measure this build of the service (e.g. main's, before a change), interleaved"
                             " with the current one, so before and after come from one run")
    args = parser.parse_args()
    if not 1 <= args.duration <= 120 or not 1 <= args.runs <= 10 or not 0 <= args.instructions <= 60:
        raise SystemExit("bench: keep --duration within 1..120 s, --runs within 1..10, --instructions within 0..60 s")
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise SystemExit(f"bench: --protocols takes {' and/or '.join(PROTOCOLS)}, not {args.protocols!r}")
    if args.no_timing and not args.instructions:
        raise SystemExit("bench: --no-timing leaves nothing to measure without --instructions")
    modes = ["off", *protocols]
    binary = str(ROOT / "target" / "release" / "todo-api")
    binaries = dict.fromkeys(modes, binary)
    if args.baseline:
        if not os.access(args.baseline, os.X_OK):
            raise SystemExit(f"bench: --baseline {args.baseline} is not an executable")
        baseline = str(args.baseline.resolve())
        modes += [mode + BASELINE for mode in modes]
        binaries.update({mode: baseline for mode in modes if mode.endswith(BASELINE)})
    database_url = os.environ.get("DATABASE_URL") or sys.exit("bench: DATABASE_URL is not set (run it through `just bench`)")
    for tool, hint in (("wrk", "apt-get install wrk; Nix: the devShell has it"),
                       ("valgrind", "apt-get install valgrind") if args.instructions else (None, None)):
        if tool and shutil.which(tool) is None:
            raise SystemExit(f"bench: {tool} not found ({hint})")

    bindir = postgres_bindir()
    # The throwaway cluster trusts local connections: its superuser may read the settings.
    admin_url = re.sub(r"//[^@/]*@", "//postgres@", database_url)
    data_directory = subprocess.run(
        ["psql", "-At", "-d", admin_url, "-c", "SHOW data_directory"], check=True, capture_output=True, text=True
    ).stdout.strip()
    postmaster = int((Path(data_directory) / "postmaster.pid").read_text().split()[0])

    workloads = [w for w in WORKLOADS if not args.only or args.only.lower() in w[0].lower()]
    results, instructions, ceiling, throttled = {}, {}, [], []
    with tempfile.TemporaryDirectory(prefix="otel-lab-bench-") as workdir:
        workdir = Path(args.keep or workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        stack = NativeStack(workdir)
        try:
            App(binary, database_url, None, None, workdir / "console.migrate.log").stop()  # applies the migrations
            subprocess.run(["psql", "-q", "-d", database_url, "-c", SEED_SQL], check=True)
            for run in range(0 if args.no_timing else args.runs):
                for name, script in workloads:
                    for mode in modes:
                        app = App(binaries[mode], database_url, protocol_of(mode), stack.collector,
                                  workdir / f"console.{run}.{script}.{slug(mode)}.log")
                        try:
                            result = measure(app, stack, postmaster, script, args)
                        finally:
                            result_dropped = app.stop()
                        result["dropped"] = result_dropped
                        results.setdefault((name, mode), []).append(result)
                        log(f"run {run + 1}/{args.runs} {name} telemetry {mode}: {result['rps']:,.0f} req/s,"
                            f" p99 {result['p99']:.2f} ms, service {result['app_us']:.1f} us/req,"
                            f" errors {result['errors']}, dropped {result_dropped}")
                ceiling.append(pgbench(bindir, database_url, postmaster, args, workdir))
                log(f"run {run + 1}/{args.runs} pgbench: {ceiling[-1]['rps']:,.0f} tps")
                if ("GET by id", modes[1]) in results:
                    rate = results[("GET by id", modes[1])][-1]["rps"]
                    throttled.append(pgbench(bindir, database_url, postmaster, args, workdir, rate))
                    log(f"run {run + 1}/{args.runs} pgbench at {rate:,.0f} tps: {throttled[-1]['pg_us']:.1f} us/txn")
            if args.instructions:
                for name, script in workloads:
                    for mode in modes:
                        tag = f"{script.removesuffix('.lua')}.{slug(mode)}"
                        measured = callgrind.measure(binaries[mode], database_url, stack, protocol_of(mode), script,
                                                     args.instructions, workdir, tag)
                        instructions[(name, mode)] = measured
                        log(f"callgrind {name} telemetry {mode}: {measured['instructions']:,.0f} instructions/request"
                            f" over {measured['requests']:,} requests")
        finally:
            stack.stop()
    if args.no_timing:
        text = instructions_only(instructions, workloads, modes)
    else:
        text = report(results, workloads, modes, ceiling, throttled, instructions, args)
    args.out.write_text(text)
    print(text)


def slug(mode):
    return re.sub(r"[^a-z0-9]+", "-", mode).strip("-")


def instructions_only(instructions, workloads, modes):
    lines = ["# Instructions per request (callgrind)", "", *instructions_table(instructions, workloads, modes)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
