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


def scenario_rows(name: str, results: dict) -> list[str]:
    ref = results[REFERENCE].get(name, {})
    cand = results[CANDIDATE].get(name, {})
    figures: dict[str, dict] = {}
    for side in (ref, cand):
        for key, fig in side.get("figures", {}).items():
            figures.setdefault(key, fig)
    memory = {
        "rss_end_mib": {"unit": "MiB", "better": "lower"},
        "rss_peak_mib": {"unit": "MiB", "better": "lower"},
    }
    rows = []
    for key, meta in [*figures.items(), *memory.items()]:
        if key in memory:
            a, b = ref.get(key), cand.get(key)
        else:
            a = ref.get("figures", {}).get(key, {}).get("value")
            b = cand.get("figures", {}).get(key, {}).get("value")
        r = ratio(b, a)
        if r is not None and not 1e-3 < r < 1e3:
            r = None  # one side is at the noise floor (e.g. an RSS delta of ~0): no ratio
        rows.append(
            f"| {name} | {key} | {meta['unit']} | {_fmt(a)} | {_fmt(b)} | "
            f"{_fmt(r)} | {_verdict(meta['better'], r)} |"
        )
    return rows


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
