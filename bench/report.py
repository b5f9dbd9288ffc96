"""Writes a run's results: the full JSON, and bench/RESULTS.md with both servers side by side."""

from __future__ import annotations

from pathlib import Path

import orjson

from bench.stats import ratio

REFERENCE = "synapse"
CANDIDATE = "ours"


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _verdict(better: str, r: float | None) -> str:
    """How ours compares, in the direction that matters for this figure."""
    if r is None:
        return ""
    if better == "higher":
        return f"{r:.2f}× as fast" if r >= 1 else f"{1 / r:.2f}× slower" if r > 0 else ""
    return f"{1 / r:.2f}× better" if 0 < r <= 1 else f"{r:.2f}× worse"


MEMORY = {
    "rss_end_mib": {"unit": "MiB", "better": "lower"},
    "rss_peak_mib": {"unit": "MiB", "better": "lower"},
}


def _figures(name: str, results: dict) -> list[tuple[str, dict, float | None, float | None]]:
    """(figure, its unit and direction, Synapse's value, ours) for one scenario, in order,
    the two memory figures every scenario has last."""
    ref = results[REFERENCE].get(name, {})
    cand = results[CANDIDATE].get(name, {})
    figures: dict[str, dict] = {}
    for side in (ref, cand):
        for key, fig in side.get("figures", {}).items():
            figures.setdefault(key, fig)
    rows = []
    for key, meta in [*figures.items(), *MEMORY.items()]:
        if key in MEMORY:
            a, b = ref.get(key), cand.get(key)
        else:
            a = ref.get("figures", {}).get(key, {}).get("value")
            b = cand.get("figures", {}).get(key, {}).get("value")
        rows.append((key, meta, a, b))
    return rows


def _ratio(a: float | None, b: float | None) -> float | None:
    r = ratio(b, a)
    if r is not None and not 1e-3 < r < 1e3:
        r = None  # one side is at the noise floor (e.g. an RSS delta of ~0): no ratio
    return r


def scenario_rows(name: str, results: dict) -> list[str]:
    rows = []
    for key, meta, a, b in _figures(name, results):
        r = _ratio(a, b)
        rows.append(
            f"| {name} | {key} | {meta['unit']} | {_fmt(a)} | {_fmt(b)} | "
            f"{_fmt(r)} | {_verdict(meta['better'], r)} |"
        )
    return rows


# --- the target (issue 16): throughput >= 10x Synapse, latency <= 0.1x, memory <= 1/3 ---

THROUGHPUT_TARGET = 10.0
LATENCY_TARGET = 0.1
MEMORY_TARGET = 1 / 3
# Figures that need at least one commit per operation: beside pgbench -N's commits/s.
COMMIT_BOUND_UNITS = ("msg/s", "reg/s", "rooms/s", "joins/s")
REQUEST_UNITS = ("req/s",)


def target(key: str, meta: dict) -> tuple[str, float] | None:
    """(kind, target ratio ours ÷ Synapse) of a figure, or None when it is not judged
    (sizes in bytes, counts, percentages)."""
    unit = meta["unit"]
    if unit in ("count", "%", "B") or (unit == "KiB" and "rss" not in key):
        return None
    if meta["better"] == "higher":
        return ("throughput", THROUGHPUT_TARGET)
    if unit in ("ms", "s"):
        return ("latency", LATENCY_TARGET)
    if unit in ("MiB", "KiB", "GiB"):
        return ("memory", MEMORY_TARGET)
    return None


def _meets(kind: str, goal: float, r: float) -> bool:
    return r >= goal if kind == "throughput" else r <= goal


def _shortfall(kind: str, goal: float, r: float) -> str:
    """How far from the target, as a factor: 4.2× short."""
    factor = goal / r if kind == "throughput" else r / goal
    return f"{factor:.2f}× short" if factor < 10 else f"{factor:.0f}× short"


def _share(value: float | None) -> str:
    return f"{value:.3f}" if value is not None and abs(value) < 0.1 else _fmt(value)


def _pct(share: float) -> str:
    return f"{share * 100:.0f}%"


def _fn(name: str) -> str:
    return f"`{name}`"


def _profile_lines(scenario: str, result: dict) -> list[str]:
    profiles = result.get("profiles") or {}
    if not profiles:
        return [f"- {scenario}: no profile of ours (bench.run --profile DIR takes them)"]
    lines = []
    for phase, prof in profiles.items():
        head = f"- {scenario} / {phase} ({prof.get('samples', 0):,} samples, `{prof['path']}`)"
        if not prof.get("samples"):
            lines.append(head + ": no samples")
            continue
        top_self = ", ".join(f"{_fn(f)} {_pct(s)}" for f, s, _ in prof.get("top_self", [])[:5])
        ours = ", ".join(f"{_fn(f)} {_pct(i)}" for f, _, i in prof.get("top_ours", [])[:6])
        lines += [
            head + ":",
            f"  - self: {top_self}",
            f"  - our code, inclusive: {ours or '(no frame of ours sampled)'}",
        ]
    return lines


def _limit(run: dict, name: str, key: str, meta: dict) -> tuple[str, float | None] | None:
    """(what, value) of the physical limit a figure is measured against, if any."""
    limits = run.get("limits") or {}
    if not limits:
        return None
    pg = limits.get("pgbench") or {}
    bare = limits.get("bare_aiohttp") or {}
    if meta["unit"] in COMMIT_BOUND_UNITS:
        return "pgbench -N commits/s", pg.get("commits_per_s")
    if meta["unit"] in REQUEST_UNITS:
        return "bare aiohttp req/s", bare.get("requests_per_s")
    if name == "whoami" and key in ("whoami_p50_ms", "whoami_p99_ms"):
        which = key.removeprefix("whoami_")
        return f"bare aiohttp {which.removesuffix('_ms')} ms", bare.get(which)
    return None


def _load(limit: dict) -> str:
    """The machine's 1-minute load average before and after a limit was measured (the
    bench's own work included): the machine is shared, and other work lowers figures."""
    before, after = limit.get("load_average"), limit.get("load_average_after")
    if not before or not after:
        return ""
    return f" (1-min load average, the bench's own included: {before[0]:.2f} before, {after[0]:.2f} after)"


def _limit_rows(run: dict) -> list[str]:
    """Each figure of ours beside the physical limit it is measured against."""
    rows = []
    for name in run["meta"]["scenarios"]:
        for key, meta, _a, b in _figures(name, run["results"]):
            limit = _limit(run, name, key, meta)
            if limit is None:
                continue
            what, value = limit
            rows.append(
                f"| {name} | {key} | {meta['unit']} | {_fmt(b)} | {what} | {_fmt(value)} | "
                f"{_share(ratio(b, value))} |"
            )
    return rows


def short_of_target(run: dict) -> list[str]:
    """The section that lists every figure of ours short of its target, the profile of
    that scenario, and the physical limits measured in the same run."""
    meta, results = run["meta"], run["results"]
    lines = [
        "## Short of the target",
        "",
        f"Target: every throughput at least {THROUGHPUT_TARGET:.0f}× Synapse's, every latency "
        f"at most {LATENCY_TARGET}× Synapse's, memory (MiB, and RSS per long-poll) at most "
        "1/3 of Synapse's. Sizes (B, KiB of responses), counts and percentages are not judged.",
        "",
    ]
    short, met, unjudged = [], 0, []
    short_scenarios: list[str] = []
    for name in meta["scenarios"]:
        for key, fmeta, a, b in _figures(name, results):
            goal = target(key, fmeta)
            if goal is None:
                continue
            r = _ratio(a, b)
            if r is None:
                unjudged.append(f"{name}.{key}")
                continue
            kind, value = goal
            if _meets(kind, value, r):
                met += 1
                continue
            limit = _limit(run, name, key, fmeta)
            beside = (
                f"{limit[0]} {_fmt(limit[1])} (ours ÷ it {_share(ratio(b, limit[1]))})"
                if limit
                else ""
            )
            short.append(
                f"| {name} | {key} | {fmeta['unit']} | {_fmt(a)} | {_fmt(b)} | {_fmt(r)} | "
                f"{kind} {'≥' if kind == 'throughput' else '≤'} {value:.2g} | "
                f"{_shortfall(kind, value, r)} | {beside} |"
            )
            if name not in short_scenarios:
                short_scenarios.append(name)
    judged = met + len(short)
    if not judged:
        lines.append("No figure has both servers' values in this run: nothing is judged.")
    else:
        lines += [
            f"{met} of {judged} judged figures meet their target; these {len(short)} do not "
            "(ratio = ours ÷ Synapse):",
            "",
            "| scenario | figure | unit | Synapse | ours | ratio | target | distance "
            "| physical limit |",
            "| --- | --- | --- | ---: | ---: | ---: | --- | --- | --- |",
            *short,
        ]
    if unjudged and judged:  # (with one server alone, every figure is unjudged)
        lines += [
            "",
            "Not judged (a side has no value, or one is at the noise floor): "
            + ", ".join(unjudged),
        ]
    limits = run.get("limits")
    if limits:
        pg, bare = limits.get("pgbench") or {}, limits.get("bare_aiohttp") or {}
        lines += [
            "",
            "### Physical limits (measured in this run, after both servers stopped)",
            "",
            f"- commits/s: `{pg.get('command')}` (scale {pg.get('scale')}, on the same "
            f"PostgreSQL, database of its own): **{_fmt(pg.get('commits_per_s'))} commits/s**, "
            f"average latency {_fmt(pg.get('latency_avg_ms'))} ms; {pg.get('status')}"
            f"{_load(pg)}",
            f"- requests/s: {bare.get('server')}, own process, loaded like the whoami "
            f"scenario ({bare.get('concurrency')} clients, {bare.get('seconds')} s): "
            f"**{_fmt(bare.get('requests_per_s'))} req/s**, p50 {_fmt(bare.get('p50_ms'))} ms, "
            f"p99 {_fmt(bare.get('p99_ms'))} ms; CPU cores used: load generator "
            f"{bare.get('loadgen_cores')}, bare server {bare.get('server_cores')} (whoami's are "
            f"in its notes; a load generator near 1.0 is the bottleneck); {bare.get('status')}"
            f"{_load(bare)}",
        ]
        rows = _limit_rows(run)
        if rows:
            lines += [
                "",
                "| scenario | figure of ours | unit | ours | limit | limit value | ours ÷ limit |",
                "| --- | --- | --- | ---: | --- | ---: | ---: |",
                *rows,
            ]
    if short_scenarios:
        lines += [
            "",
            "### Profiles of ours where a figure falls short",
            "",
            "py-spy samples of our server during each measured phase (idle time left out, "
            "so shares are of the time the server was on a core): the functions holding "
            "the most samples themselves (self), and our own functions by the share of "
            "samples they are on the stack (inclusive; the route wrapper and middleware "
            "left out). py-spy sees Python frames only: C work shows as self time of the "
            "Python frame that called it, so `Runner.run` self is uvloop's event loop "
            "(socket I/O, callbacks) and `Connection._do_execute` self is asyncpg's "
            "protocol (encoding queries, decoding rows).",
            "",
        ]
        for name in short_scenarios:
            lines += _profile_lines(name, results[CANDIDATE].get(name, {}))
    return lines


def markdown(run: dict) -> str:
    meta = run["meta"]
    results = run["results"]
    lines = [
        "# Benchmark results",
        "",
        f"Date: {meta['date']} · mode: {meta['mode']} · command: `{meta['command']}`",
        "",
        f"Machine: {meta['machine']}",
        "",
        "| server | version |",
        "| --- | --- |",
        *(f"| {name} | {v} |" for name, v in meta["versions"].items()),
        "",
        "Resident memory right after start-up (MiB): "
        + ", ".join(f"{k} {_fmt(v)}" for k, v in meta.get("rss_at_start_mib", {}).items()),
        "",
        "Ratio = ours ÷ Synapse. For throughputs higher is better; for latencies,",
        "sizes and memory lower is better (the last column says which way it went).",
        "Memory is the server process tree's resident set (PostgreSQL not included).",
        "",
        "| scenario | figure | unit | Synapse | ours | ratio | ours vs Synapse |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for name in meta["scenarios"]:
        lines.extend(scenario_rows(name, results))
    lines += ["", *short_of_target(run)]
    lines += ["", "## Scenario status", "", "| scenario | Synapse | ours |", "| --- | --- | --- |"]
    for name in meta["scenarios"]:
        statuses = [
            results[s].get(name, {}).get("status", "not run") for s in (REFERENCE, CANDIDATE)
        ]
        lines.append(f"| {name} | {statuses[0]} | {statuses[1]} |")
    notes = [
        f"- {name} ({server}): {note}"
        for name in meta["scenarios"]
        for server in (REFERENCE, CANDIDATE)
        for note in results[server].get(name, {}).get("notes", [])
    ]
    if notes:
        lines += ["", "## Notes", "", *notes]
    return "\n".join(lines) + "\n"


def write(run: dict, results_dir: Path, markdown_path: Path) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path = results_dir / f"{run['meta']['date'].replace(':', '-')}.json"
    json_path.write_bytes(orjson.dumps(run, option=orjson.OPT_INDENT_2))
    markdown_path.write_text(markdown(run))
    return json_path
