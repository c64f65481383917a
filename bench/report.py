"""bench/results.md from one run's measurements."""

import os
import statistics

# Targets (bench/README.md says where each comes from).
CPU_RATIO_TARGET = 1.10  # service CPU per request, telemetry on / off, every workload and protocol
E2E_TARGET = 0.85  # GET by id req/s, telemetry on / off, collector and backends on the same cores
P99_TARGET_MS = 5.0  # GET by id p99 with telemetry on
RSS_TARGET_MB = 32.0


def median(runs, key):
    return statistics.median(run[key] for run in runs)


def verdict(ok):
    return "" if ok is None else ("met" if ok else "MISSED")


def report(results, workloads, modes, ceiling, throttled, instructions, args):
    on_modes = [mode for mode in modes if mode != "off"]
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
        off = median(results[(name, "off")], "app_us")
        for mode in on_modes:
            on = median(results[(name, mode)], "app_us")
            ratio = on / off
            lines.append(
                f"| {name} | {mode} | {off:.1f} | {on:.1f} | {on - off:+.1f} | {(on - off) / off:+.1%} |"
                f" {ratio:.2f} | <= {CPU_RATIO_TARGET:.2f} {verdict(ratio <= CPU_RATIO_TARGET)} |"
            )

    if instructions:
        lines += ["", "## Instructions per request (callgrind)", ""] + instructions_table(instructions, workloads, modes)

    checks = []
    for mode in on_modes:
        by_id_on, by_id_off = results.get(("GET by id", mode)), results.get(("GET by id", "off"))
        if by_id_on and by_id_off:
            ratio = median(by_id_on, "rps") / median(by_id_off, "rps")
            checks.append((f"GET by id req/s, {mode} on / off", f"{ratio:.1%}", f">= {E2E_TARGET:.0%}",
                           ratio >= E2E_TARGET))
            p99 = median(by_id_on, "p99")
            checks.append((f"GET by id p99, {mode} on", f"{p99:.2f} ms", f"< {P99_TARGET_MS} ms", p99 < P99_TARGET_MS))
    by_id = results.get(("GET by id", on_modes[0])) if on_modes else None
    if by_id and ceiling:
        ceiling_ratio = median(by_id, "rps") / median(ceiling, "rps")
        checks.append((f"GET by id ({on_modes[0]} on) / pgbench ceiling", f"{ceiling_ratio:.1%}", "(information)", None))
    rss = max(r["rss"] for runs in results.values() for r in runs)
    checks.append(("RSS after the runs (max)", f"{rss:.1f} MB", f"< {RSS_TARGET_MB} MB", rss < RSS_TARGET_MB))
    for signal in ("spans", "logs"):
        dropped = sum(r["dropped"][signal] for runs in results.values() for r in runs)
        dropped += sum(m["dropped"][signal] for m in (instructions or {}).values())
        checks.append((f"{signal} dropped by the SDK (all runs)", f"{dropped}", "0", dropped == 0))
    lines += ["", "## Targets", "", "| ratio | measured | target | |", "| --- | ---: | ---: | --- |"]
    for name, measured, target, ok in checks:
        lines.append(f"| {name} | {measured} | {target} | {verdict(ok)} |")
    return "\n".join(lines) + "\n"


def instructions_table(instructions, workloads, modes):
    lines = [
        "Counted by valgrind's callgrind over every thread of the service: repeatable where the"
        " timings are not (bench/README.md, \"Instructions\").",
        "",
        "| workload | telemetry | requests | instructions / request | on / off |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name, _ in workloads:
        if (name, "off") not in instructions:
            continue
        off = instructions[(name, "off")]["instructions"]
        for mode in modes:
            measured = instructions[(name, mode)]
            ratio = "" if mode == "off" else f"{measured['instructions'] / off:.3f}"
            lines.append(f"| {name} | {mode} | {measured['requests']:,} | {measured['instructions']:,.0f} | {ratio} |")
    return lines + profile_table(instructions, workloads, modes)


def profile_table(instructions, workloads, modes, rows=12):
    """Self instructions per request by crate, for the first workload measured."""
    name = next((n for n, _ in workloads if (n, "off") in instructions), None)
    if name is None:
        return []
    profiles = {mode: instructions[(name, mode)]["profile"] for mode in modes}
    groups = set().union(*profiles.values())
    # Sorted by what telemetry adds: the top rows are where its instructions go.
    on_modes = [m for m in modes if m != "off"] or modes
    def added(group):
        return max(profiles[m].get(group, 0) for m in on_modes) - profiles["off"].get(group, 0)
    ordered = sorted(groups, key=added, reverse=True)[:rows]
    lines = [
        "",
        f"### Where the instructions go: {name}, self cost per request by crate",
        "",
        "| crate | " + " | ".join(modes) + " |",
        "| --- |" + " ---: |" * len(modes),
    ]
    for group in ordered:
        lines.append(f"| {group} | " + " | ".join(f"{profiles[m].get(group, 0):,.0f}" for m in modes) + " |")
    return lines
