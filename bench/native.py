"""The processes a bench run starts and reads: the native lab stack (Prometheus, the
trace/log sink and the lab collector, as `stack/native/run.sh` runs them) and the
service, with their CPU and memory read from /proc."""

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


# What the SDK's batch processors say when their queue overflows: once at the first drop
# (`...DroppingStarted`) and with the total at shutdown (`BatchSpanProcessor.SpansDropped`
# / `BatchLogProcessor.LogsDropped`), events the service keeps on its console. No line
# means nothing was dropped.
DROPPED = {
    "spans": (re.compile(r"dropped_span_count=(\d+)"), "BatchSpanProcessor.SpanDroppingStarted"),
    "logs": (re.compile(r"dropped_logs_count=(\d+)"), "BatchLogProcessor.LogDroppingStarted"),
}
# The console is coloured (tracing's formatter writes ANSI escapes even into a file).
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def dropped_counts(console):
    """The SDK's dropped-span and dropped-log totals from the service's console output;
    at least 1 where the first drop was reported but no total (a shutdown cut short)."""
    console = ANSI.sub("", console)
    counts = {}
    for signal_, (total, started) in DROPPED.items():
        counts[signal_] = sum(int(n) for n in total.findall(console)) or int(started in console)
    return counts


class App:
    """The service, telemetry off (`protocol` None: OTEL_SDK_DISABLED) or exporting every
    signal over `protocol` to the lab collector; `wrapper` runs it under a tool (valgrind)."""

    def __init__(self, binary, database_url, protocol, collector, console_path, wrapper=(), startup_timeout=30,
                 extra_env=None):
        self.port = free_port()
        env = {
            "PATH": os.environ["PATH"],
            "DATABASE_URL": database_url,
            "PORT": str(self.port),
            "RUST_LOG": "warn",
            "DATABASE_MAX_CONNECTIONS": os.environ.get("BENCH_DB_CONNECTIONS", "10"),
        }
        if protocol:
            env.update(
                OTEL_EXPORTER_OTLP_ENDPOINT=f"http://{collector[protocol]}",
                OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
                OTEL_METRIC_EXPORT_INTERVAL=LAB["OTEL_METRIC_EXPORT_INTERVAL"],
                OTEL_TRACES_SAMPLER="always_on",
            )
        else:
            env["OTEL_SDK_DISABLED"] = "true"
        env.update(extra_env or {})
        self.console_path = console_path
        self.console = open(console_path, "w")
        self.process = subprocess.Popen(
            [*wrapper, binary], env=env, stdout=self.console, stderr=subprocess.STDOUT
        )
        self.url = f"http://127.0.0.1:{self.port}"
        wait_http(f"{self.url}/health", timeout=startup_timeout)

    def stop(self, timeout=30):
        """Stops the service (it flushes its telemetry) and returns the SDK's drop counts."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=timeout)
        self.console.close()
        return dropped_counts(Path(self.console_path).read_text(errors="replace"))
