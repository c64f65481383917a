#!/usr/bin/env python3
"""The service's throughput and latency with and without telemetry, against the
database's own ceiling. Run through `just bench` (which provides DATABASE_URL: a
throwaway Postgres cluster); writes bench/results.md and prints it.

Every number comes from this one run on this machine: telemetry on and off are
interleaved (A/B/A/B) and the median of the runs is reported, and pgbench measures what
Postgres alone does with the same SELECT over the same number of connections.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lab_env():
    """stack/lab.env, the lab's settings (plain KEY=VALUE lines), shared with the justfile,
    compose, labctl and the tests: the bench runs the app with the lab's telemetry settings."""
    settings = {}
    for line in (ROOT / "stack" / "lab.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key] = value
    return settings


LAB = lab_env()
WRK_SCRIPTS = ROOT / "bench" / "wrk"
SEED_ROWS = 1000
# The seeded ids are `00000000-0000-4000-8000-000000000NNN`, so wrk and pgbench can pick
# one at random without a lookup.
SEED_SQL = f"""
INSERT INTO todos (id, title, description)
SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, 'seeded todo ' || n, 'for the benchmark'
FROM generate_series(0, {SEED_ROWS - 1}) AS n
ON CONFLICT (id) DO NOTHING;
"""
PGBENCH_SQL = """\\set n random(0, 999)
SELECT id, title, description, completed, created_at, updated_at FROM todos WHERE id = ('00000000-0000-4000-8000-' || lpad(:n::text, 12, '0'))::uuid;
"""
WORKLOADS = [
    ("GET by id", "get_by_id.lua"),
    ("GET list (limit=20)", "list.lua"),
    ("POST create", "create.lua"),
    ("mixed CRUD", "mixed.lua"),
]
ON_OFF_TARGET = 0.90
CEILING_TARGET = 0.30
P99_TARGET_MS = 5.0
RSS_TARGET_MB = 32.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid, children=False):
    """utime + stime of a process (+ its reaped children's when asked)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def postgres_cpu(postmaster):
    """CPU of the whole cluster: the postmaster, its reaped backends, its live ones."""
    total = cpu_seconds(postmaster, children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                    total += cpu_seconds(int(entry.name))
            except (OSError, ValueError, IndexError):
                pass
    return total


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_http(url, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"bench: {url} did not answer in {timeout}s")


class NativeStack:
    """Prometheus, the sink and the lab collector, as `stack/native/run.sh` runs them."""

    def __init__(self, workdir):
        self.collector = {"grpc": f"127.0.0.1:{free_port()}", "http/protobuf": f"127.0.0.1:{free_port()}"}
        self.health = f"127.0.0.1:{free_port()}"
        env = dict(
            os.environ,
            PROMETHEUS_LISTEN=f"127.0.0.1:{free_port()}",
            PROMETHEUS_DATA_DIR=str(workdir / "prometheus"),
            SINK_OTLP_HTTP_ENDPOINT=f"127.0.0.1:{free_port()}",
            SINK_FILE_PATH=str(workdir / "sink.jsonl"),
            COLLECTOR_OTLP_GRPC_ENDPOINT=self.collector["grpc"],
            COLLECTOR_OTLP_HTTP_ENDPOINT=self.collector["http/protobuf"],
            COLLECTOR_HEALTH_CHECK_ENDPOINT=self.health,
        )
        run = str(ROOT / "stack" / "native" / "run.sh")
        self.processes = [
            subprocess.Popen([run, component], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for component in ("prometheus", "sink", "collector")
        ]
        wait_http(f"http://{self.health}/")

    def cpu(self):
        """CPU of the lab collector, and of the stand-ins for LGTM (Prometheus and the sink)."""
        prometheus, sink, collector = (cpu_seconds(process.pid) for process in self.processes)
        return collector, prometheus + sink

    def stop(self):
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=20)


class App:
    def __init__(self, binary, database_url, telemetry, collector, protocol):
        self.port = free_port()
        env = {
            "PATH": os.environ["PATH"],
            "DATABASE_URL": database_url,
            "PORT": str(self.port),
            "RUST_LOG": "warn",
            "DATABASE_MAX_CONNECTIONS": os.environ.get("BENCH_DB_CONNECTIONS", "10"),
        }
        if telemetry:
            env.update(
                OTEL_EXPORTER_OTLP_ENDPOINT=f"http://{collector[protocol]}",
                OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
                OTEL_METRIC_EXPORT_INTERVAL=LAB["OTEL_METRIC_EXPORT_INTERVAL"],
                OTEL_TRACES_SAMPLER="always_on",
            )
        else:
            env["OTEL_SDK_DISABLED"] = "true"
        self.process = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_http(f"{self.url}/health")

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


def wrk(url, script, seconds, connections, threads):
    output = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(WRK_SCRIPTS / script), url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    result["requests"] = requests
    for name, pattern in (("p50", r"50%\s+([\d.]+)(us|ms|s)"), ("p99", r"99%\s+([\d.]+)(us|ms|s)")):
        value, unit = re.search(pattern, output).groups()
        result[name] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    result["errors"] = (int(non_2xx.group(1)) if non_2xx else 0) + (
        sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    )
    return result


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


def pgbench(bindir, database_url, postmaster, args, workdir, rate=None):
    script = workdir / "select_by_id.sql"
    script.write_text(PGBENCH_SQL)
    command = [
        str(bindir / "pgbench"), "-n", "-M", "prepared", "-c", str(args.connections), "-j", str(args.threads),
        "-f", str(script), database_url,
    ]
    if rate:
        # Throttled to the service's own rate: shows what Postgres spends per query when
        # queries arrive one by one rather than back to back.
        command += ["-R", str(int(rate))]
    subprocess.run(command + ["-T", str(args.warmup)], check=True, capture_output=True)
    pg_cpu = postgres_cpu(postmaster)
    output = subprocess.run(command + ["-T", str(args.duration)], check=True, capture_output=True, text=True).stdout
    transactions = int(re.search(r"number of transactions actually processed: (\d+)", output).group(1))
    return {
        "rps": float(re.search(r"tps = ([\d.]+)", output).group(1)),
        "pg_us": (postgres_cpu(postmaster) - pg_cpu) * 1e6 / transactions,
        "latency": float(re.search(r"latency average = ([\d.]+) ms", output).group(1)),
    }


def postgres_bindir():
    found = shutil.which("pgbench")
    if found:
        return Path(found).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))
    if not candidates:
        raise SystemExit("bench: pgbench not found (Debian: postgresql; Nix: postgresql_16)")
    return candidates[-1].parent


def median(runs, key):
    return statistics.median(run[key] for run in runs)


def report(results, workloads, ceiling, throttled, args):
    lines = [
        "# Benchmark results",
        "",
        f"{os.cpu_count()} cores, everything on one machine (service, Postgres, collector, load generator).",
        f"wrk {args.connections} connections / {args.threads} threads, {args.duration}s per run after {args.warmup}s of warm-up,"
        f" median of {args.runs} runs per row, telemetry on/off interleaved. Telemetry on = traces, metrics and logs"
        f" over OTLP ({args.protocol}) to the native lab collector, 100% sampling.",
        "",
        "CPU columns are microseconds of CPU per request; \"backends\" are the native Prometheus and the"
        " trace/log sink standing in for otel-lgtm.",
        "",
        "| workload | telemetry | req/s | p50 ms | p99 ms | errors | service CPU | Postgres CPU | collector CPU | backends CPU | RSS MB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, _ in workloads:
        for mode in ("on", "off"):
            runs = results[(name, mode)]
            lines.append(
                f"| {name} | {mode} | {median(runs, 'rps'):,.0f} | {median(runs, 'p50'):.2f} | {median(runs, 'p99'):.2f} |"
                f" {sum(r['errors'] for r in runs)} | {median(runs, 'app_us'):.1f} | {median(runs, 'pg_us'):.1f} |"
                f" {median(runs, 'collector_us'):.1f} | {median(runs, 'backends_us'):.1f} | {max(r['rss'] for r in runs):.1f} |"
            )
    lines.append(
        f"| pgbench SELECT by id (-M prepared) | - | {median(ceiling, 'rps'):,.0f} | - | - | 0 | - |"
        f" {median(ceiling, 'pg_us'):.1f} | - | - | - |"
    )
    if throttled:
        lines.append(
            f"| pgbench SELECT by id, throttled to the service's rate | - | {median(throttled, 'rps'):,.0f} | - | - | 0 | - |"
            f" {median(throttled, 'pg_us'):.1f} | - | - | - |"
        )
    checks = []
    for name, _ in workloads:
        on, off = results[(name, "on")], results[(name, "off")]
        ratio = median(on, "rps") / median(off, "rps")
        checks.append((f"{name}: telemetry on / off", f"{ratio:.1%}", ">= 90%", ratio >= ON_OFF_TARGET))
        extra = median(on, "app_us") - median(off, "app_us")
        checks.append((f"{name}: telemetry CPU in the service", f"{extra:+.1f} us/req", "(information)", None))
    by_id = results.get(("GET by id", "on"))
    if by_id:
        ceiling_ratio = median(by_id, "rps") / median(ceiling, "rps")
        checks.append(("GET by id (on) / pgbench ceiling", f"{ceiling_ratio:.1%}", ">= 30%", ceiling_ratio >= CEILING_TARGET))
        p99 = median(by_id, "p99")
        checks.append(("GET by id p99 (on)", f"{p99:.2f} ms", f"< {P99_TARGET_MS} ms", p99 < P99_TARGET_MS))
        pg_ratio = median(by_id, "pg_us") / median(ceiling, "pg_us")
        checks.append(("Postgres CPU per GET by id / per pgbench txn", f"{pg_ratio:.2f}x", "(information)", None))
        pg_ratio = median(by_id, "pg_us") / median(throttled, "pg_us")
        checks.append(("... / per throttled pgbench txn (same rate)", f"{pg_ratio:.2f}x", "(information)", None))
    rss = max(r["rss"] for runs in results.values() for r in runs)
    checks.append(("RSS after the runs (max)", f"{rss:.1f} MB", f"< {RSS_TARGET_MB} MB", rss < RSS_TARGET_MB))
    lines += ["", "| ratio | measured | target | |", "| --- | ---: | ---: | --- |"]
    for name, measured, target, ok in checks:
        verdict = "" if ok is None else ("met" if ok else "MISSED")
        lines.append(f"| {name} | {measured} | {target} | {verdict} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up before each run")
    parser.add_argument("--runs", type=int, default=3, help="runs per workload and mode (median reported)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk and pgbench threads")
    parser.add_argument(
        "--protocol", choices=["http/protobuf", "grpc"], default=LAB["OTEL_EXPORTER_OTLP_PROTOCOL"],
        help="OTLP protocol to the collector (default: the lab's, from stack/lab.env)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.md")
    parser.add_argument("--only", help="run only the workloads whose name contains this text (e.g. 'by id')")
    args = parser.parse_args()
    if not 1 <= args.duration <= 120 or not 1 <= args.runs <= 10:
        raise SystemExit("bench: keep --duration within 1..120 s and --runs within 1..10")
    database_url = os.environ.get("DATABASE_URL") or sys.exit("bench: DATABASE_URL is not set (run it through `just bench`)")
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk not found (Debian: apt-get install wrk; Nix: the devShell has it)")

    binary = str(ROOT / "target" / "release" / "todo-api")
    bindir = postgres_bindir()
    # The throwaway cluster trusts local connections: its superuser may read the settings.
    admin_url = re.sub(r"//[^@/]*@", "//postgres@", database_url)
    data_directory = subprocess.run(
        ["psql", "-At", "-d", admin_url, "-c", "SHOW data_directory"], check=True, capture_output=True, text=True
    ).stdout.strip()
    postmaster = int((Path(data_directory) / "postmaster.pid").read_text().split()[0])

    with tempfile.TemporaryDirectory(prefix="otel-lab-bench-") as workdir:
        workdir = Path(workdir)
        stack = NativeStack(workdir)
        try:
            App(binary, database_url, False, None, None).stop()  # applies the migrations
            subprocess.run(["psql", "-q", "-d", database_url, "-c", SEED_SQL], check=True)
            results = {}
            workloads = [w for w in WORKLOADS if not args.only or args.only.lower() in w[0].lower()]
            ceiling, throttled = [], []
            for run in range(args.runs):
                for name, script in workloads:
                    for mode in ("on", "off"):
                        app = App(binary, database_url, mode == "on", stack.collector, args.protocol)
                        try:
                            result = measure(app, stack, postmaster, script, args)
                        finally:
                            app.stop()
                        results.setdefault((name, mode), []).append(result)
                        log(f"run {run + 1}/{args.runs} {name} telemetry {mode}: {result['rps']:,.0f} req/s,"
                            f" p99 {result['p99']:.2f} ms, errors {result['errors']}")
                ceiling.append(pgbench(bindir, database_url, postmaster, args, workdir))
                log(f"run {run + 1}/{args.runs} pgbench: {ceiling[-1]['rps']:,.0f} tps")
                if ("GET by id", "on") in results:
                    rate = results[("GET by id", "on")][-1]["rps"]
                    throttled.append(pgbench(bindir, database_url, postmaster, args, workdir, rate))
                    log(f"run {run + 1}/{args.runs} pgbench at {rate:,.0f} tps: {throttled[-1]['pg_us']:.1f} us/txn")
        finally:
            stack.stop()
    text = report(results, workloads, ceiling, throttled, args)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
