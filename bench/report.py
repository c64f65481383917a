"""bench/results.md from one run's measurements."""

import os
import statistics

from instructions import STAGES

# Targets (bench/README.md says where each comes from).
CPU_RATIO_TARGET = 1.10  # service CPU per request, telemetry on / off, every workload and protocol
E2E_TARGET = 0.85  # GET by id req/s, telemetry on / off, collector and backends on the same cores
P99_TARGET_MS = 5.0  # GET by id p99 with telemetry on
RSS_TARGET_MB = 32.0
# The label suffix of the modes run with a --baseline build.
BASELINE = " (baseline)"


def median(runs, key):
    return statistics.median(run[key] for run in runs)


def off_of(mode):
    """The telemetry-off mode of the same build: what `mode`'s cost is measured against."""
    return "off" + BASELINE if is_baseline(mode) else "off"


def is_off(mode):
    """Telemetry off, of either build."""
    return mode == off_of(mode)


def is_baseline(mode):
    return mode.endswith(BASELINE)


def verdict(ok):
    return "" if ok is None else ("met" if ok else "MISSED")


def report(results, workloads, modes, ceiling, throttled, instructions, args):
    on_modes = [mode for mode in modes if not is_off(mode)]
    # The targets hold the build being measured; a --baseline build is there to compare.
    current_on = [mode for mode in on_modes if not is_baseline(mode)]
    lines = [
        "# Benchmark results",
        "",
        f"{os.cpu_count()} cores, everything on one machine (service, Postgres, collector, load generator).",
        f"wrk {args.connections} connections / {args.threads} threads, {args.duration}s per run after {args.warmup}s"
        f" of warm-up, median of {args.runs} runs per row, the modes interleaved in each run. Telemetry on ="
        " traces, metrics and logs over OTLP (the protocol named) to the native lab collector, 100% sampling;"
        " off = `OTEL_SDK_DISABLED=true`.",
        "",
        "CPU columns are microseconds of CPU per request; \"backends\" are the native Prometheus and the"
        " trace/log sink standing in for otel-lgtm.",
        "",
        "| workload | telemetry | req/s | p50 ms | p99 ms | errors | service CPU | Postgres CPU | collector CPU |"
        " backends CPU | RSS MB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, _ in workloads:
        for mode in modes:
            runs = results[(name, mode)]
            lines.append(
                f"| {name} | {mode} | {median(runs, 'rps'):,.0f} | {median(runs, 'p50'):.2f} |"
                f" {median(runs, 'p99'):.2f} | {sum(r['errors'] for r in runs)} | {median(runs, 'app_us'):.1f} |"
                f" {median(runs, 'pg_us'):.1f} | {median(runs, 'collector_us'):.1f} |"
                f" {median(runs, 'backends_us'):.1f} | {max(r['rss'] for r in runs):.1f} |"
            )
    if ceiling:
        lines.append(
            f"| pgbench SELECT by id (-M prepared) | - | {median(ceiling, 'rps'):,.0f} | - | - | 0 | - |"
            f" {median(ceiling, 'pg_us'):.1f} | - | - | - |"
        )
    if throttled:
        lines.append(
            f"| pgbench SELECT by id, throttled to the service's rate | - | {median(throttled, 'rps'):,.0f} | - |"
            f" - | 0 | - | {median(throttled, 'pg_us'):.1f} | - | - | - |"
        )

    lines += [
        "",
        "## Telemetry's cost in the service",
        "",
        "Service CPU per request with telemetry on minus off, from the medians above.",
        "",
        "| workload | protocol | off us | on us | cost us | cost % of off | on / off | target |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, _ in workloads:
        for mode in on_modes:
            off = median(results[(name, off_of(mode))], "app_us")
            on = median(results[(name, mode)], "app_us")
            ratio = on / off
            target = "(baseline)" if is_baseline(mode) else \
                f"<= {CPU_RATIO_TARGET:.2f} {verdict(ratio <= CPU_RATIO_TARGET)}"
            lines.append(
                f"| {name} | {mode} | {off:.1f} | {on:.1f} | {on - off:+.1f} | {(on - off) / off:+.1%} |"
                f" {ratio:.2f} | {target} |"
            )

    if any(is_baseline(mode) for mode in modes):
        lines += baseline_table(results, workloads, [m for m in modes if not is_baseline(m)])

    if instructions:
        lines += ["", "## Instructions per request (callgrind)", ""] + instructions_table(instructions, workloads, modes)

    checks = []
    for mode in current_on:
        by_id_on, by_id_off = results.get(("GET by id", mode)), results.get(("GET by id", "off"))
        if by_id_on and by_id_off:
            ratio = median(by_id_on, "rps") / median(by_id_off, "rps")
            checks.append((f"GET by id req/s, {mode} on / off", f"{ratio:.1%}", f">= {E2E_TARGET:.0%}",
                           ratio >= E2E_TARGET))
            p99 = median(by_id_on, "p99")
            checks.append((f"GET by id p99, {mode} on", f"{p99:.2f} ms", f"< {P99_TARGET_MS} ms", p99 < P99_TARGET_MS))
    by_id = results.get(("GET by id", current_on[0])) if current_on else None
    if by_id and ceiling:
        ceiling_ratio = median(by_id, "rps") / median(ceiling, "rps")
        checks.append((f"GET by id ({current_on[0]} on) / pgbench ceiling", f"{ceiling_ratio:.1%}", "(information)", None))
    current = [runs for (_, mode), runs in results.items() if not is_baseline(mode)]
    measured_now = [m for (_, mode), m in (instructions or {}).items() if not is_baseline(mode)]
    rss = max(r["rss"] for runs in current for r in runs)
    checks.append(("RSS after the runs (max)", f"{rss:.1f} MB", f"< {RSS_TARGET_MB} MB", rss < RSS_TARGET_MB))
    for signal in ("spans", "logs"):
        dropped = sum(r["dropped"][signal] for runs in current for r in runs)
        dropped += sum(m["dropped"][signal] for m in measured_now)
        checks.append((f"{signal} dropped by the SDK (all runs)", f"{dropped}", "0", dropped == 0))
    lines += ["", "## Targets", "", "| ratio | measured | target | |", "| --- | ---: | ---: | --- |"]
    for name, measured, target, ok in checks:
        lines.append(f"| {name} | {measured} | {target} | {verdict(ok)} |")
    return "\n".join(lines) + "\n"


def baseline_table(results, workloads, current_modes):
    """The --baseline build against this one, mode by mode, from the same run."""
    lines = [
        "",
        "## This build against the baseline",
        "",
        "The same run, the two builds interleaved: service CPU per request, throughput and p99.",
        "",
        "| workload | telemetry | baseline CPU us | this build CPU us | change | baseline req/s | req/s |"
        " baseline p99 ms | p99 ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, _ in workloads:
        for mode in current_modes:
            before, after = results.get((name, mode + BASELINE)), results.get((name, mode))
            if not before or not after:
                continue
            cpu_before, cpu_after = median(before, "app_us"), median(after, "app_us")
            lines.append(
                f"| {name} | {mode} | {cpu_before:.1f} | {cpu_after:.1f} | {(cpu_after - cpu_before) / cpu_before:+.1%} |"
                f" {median(before, 'rps'):,.0f} | {median(after, 'rps'):,.0f} | {median(before, 'p99'):.2f} |"
                f" {median(after, 'p99'):.2f} |"
            )
    return lines


def instructions_table(instructions, workloads, modes):
    lines = [
        "Counted by valgrind's callgrind over every thread of the service: repeatable where the"
        " timings are not (bench/README.md, \"Instructions\").",
        "",
        "\"Per request\" is the loaded window minus an idle window of the same length (what runs by the"
        " clock, such as the metric export, cancels out); \"gross\" is the loaded window alone.",
        "",
        "| workload | telemetry | requests | instructions / request | gross | on / off |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, _ in workloads:
        if (name, "off") not in instructions:
            continue
        for mode in modes:
            measured = instructions[(name, mode)]
            off = instructions[(name, off_of(mode))]["instructions"]
            ratio = "" if is_off(mode) else f"{measured['instructions'] / off:.3f}"
            lines.append(f"| {name} | {mode} | {measured['requests']:,} | {measured['instructions']:,.0f} |"
                         f" {measured['gross']:,.0f} | {ratio} |")
    return lines + profile_table(instructions, workloads, modes) + stages_table(instructions, workloads, modes)


def first_measured(instructions, workloads):
    """The first workload whose instructions were counted (the profiles show one)."""
    return next((n for n, _ in workloads if (n, "off") in instructions), None)


def markdown_table(title, first_column, columns, rows):
    """A titled table: `rows` are (label, cells), the cells already formatted."""
    lines = ["", f"### {title}", "", f"| {first_column} | " + " | ".join(columns) + " |",
             "| --- |" + " ---: |" * len(columns)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    return lines


def stages_table(instructions, workloads, modes):
    """Telemetry's stages (instructions.STAGES), per request, for the first workload measured."""
    name = first_measured(instructions, workloads)
    if name is None:
        return []
    on_modes = [m for m in modes if not is_off(m)]
    stages_of = {m: instructions[(name, m)].get("stages", {}) for m in on_modes}
    stages = [stage for stage, _ in STAGES if any(stage in measured for measured in stages_of.values())]
    if not stages:
        return []
    rows = [(stage, ["-" if stage not in stages_of[m] else f"{stages_of[m][stage]:,.0f}" for m in on_modes])
            for stage in stages]
    return markdown_table(f"Telemetry by stage: {name}, inclusive instructions per request", "stage", on_modes, rows)


def profile_table(instructions, workloads, modes, rows=12):
    """Self instructions per request by crate, for the first workload measured."""
    name = first_measured(instructions, workloads)
    if name is None:
        return []
    profiles = {mode: instructions[(name, mode)]["profile"] for mode in modes}
    groups = set().union(*profiles.values())
    # Sorted by what telemetry adds: the top rows are where its instructions go.
    on_modes = [m for m in modes if not is_off(m)] or modes
    def added(group):
        return max(profiles[m].get(group, 0) - profiles[off_of(m)].get(group, 0) for m in on_modes)
    ordered = sorted(groups, key=added, reverse=True)[:rows]
    table = [(group, [f"{profiles[m].get(group, 0):,.0f}" for m in modes]) for group in ordered]
    return markdown_table(f"Where the instructions go: {name}, self cost per request by crate", "crate", modes, table)
