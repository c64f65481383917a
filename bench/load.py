"""The load generators: wrk against the service, pgbench against Postgres alone."""

import re
import shutil
import subprocess
from pathlib import Path

from native import ROOT, postgres_cpu

WRK_SCRIPTS = ROOT / "bench" / "wrk"
PGBENCH_SQL = """\\set n random(0, 999)
SELECT id, title, description, completed, created_at, updated_at FROM todos WHERE id = ('00000000-0000-4000-8000-' || lpad(:n::text, 12, '0'))::uuid;
"""


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
