"""deploy/: the files an operator installs are checked by the tools that will read them
(promtool, nginx -t), the systemd unit's command line by our own CLI parser, and every
series the dashboard and the alerts use against a live /metrics."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from homeserver.cli import build_parser

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
# Series that Prometheus itself makes, not the server.
PROMETHEUS_OWN = {"up"}
PROMQL_WORDS = {
    "sum",
    "max",
    "min",
    "avg",
    "by",
    "without",
    "rate",
    "increase",
    "histogram_quantile",
    "and",
    "or",
    "unless",
    "le",
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: scripts/test.sh installs it (Debian package)"
    return path


def test_prometheus_config_and_alert_rules_pass_promtool():
    promtool = _tool("promtool")
    for args in (
        ["check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")],
        ["check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
        ["check", "config", str(DEPLOY / "prometheus" / "compose-prometheus.yml")],
    ):
        done = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


def test_systemd_unit_is_hardened_and_its_command_line_parses():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "systemd" / "homeserver@.service")
    service = unit["Service"]
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service.get("DynamicUser") == "yes" or service.get("User") not in (None, "root")
    command = shlex.split(service["ExecStart"].replace("\\\n", " ").replace("%i", "8008"))
    assert command[0].endswith("/homeserver")
    args = build_parser().parse_args(command[1:])
    assert args.command == "run"
    assert (args.listen, args.metrics_listen, args.federation_listen) == (
        "127.0.0.1:8008",
        "127.0.0.1:18008",
        "127.0.0.1:28008",
    )


def _expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "homeserver.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    import yaml

    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs += [r["expr"] for group in rules["groups"] for r in group["rules"]]
    assert len(exprs) > 20
    return exprs


def _series_in(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
    without_labels = re.sub(r"\{[^}]*\}", "", without_ranges)
    without_groupings = re.sub(r"\b(by|without)\s*\([^)]*\)", "", without_labels)
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_groupings))
    return {n for n in names if n not in PROMQL_WORDS and not re.fullmatch(r"e\d+", n)}


async def test_dashboard_and_alerts_use_only_series_the_server_exports(server):
    client = await server.client()
    await client.sync(timeout=0)  # some requests, so labelled series exist too
    async with aiohttp.ClientSession() as http, http.get(server.metrics_url) as resp:
        assert resp.status == 200
        text = await resp.text()
    exported: set[str] = set()
    families = list(text_string_to_metric_families(text))
    waits = next(f for f in families if f.name == "matrix_db_pool_wait_seconds")
    assert any(s.name.endswith("_count") and s.value > 0 for s in waits.samples)
    for family in families:
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
            "summary": ("_sum", "_count", ""),
        }.get(family.type, ("",))
        exported |= {family.name + s for s in suffixes}
    used = set().union(*(_series_in(e) for e in _expressions()))
    unknown = used - exported - PROMETHEUS_OWN
    assert not unknown, f"dashboard/alerts use series the server does not export: {unknown}"
    # The families operators need (issue 13, item 5) are all there.
    for name in (
        "matrix_http_request_duration_seconds_bucket",
        "matrix_event_persist_duration_seconds_bucket",
        "matrix_federation_queue_depth",
        "matrix_federation_destination_failures_total",
        "matrix_db_pool_wait_seconds_bucket",
        "matrix_sync_longpolls_open",
        "matrix_to_device_backlog",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "python_gc_collections_total",
    ):
        assert name in exported, name


def test_compose_names_the_four_services_and_only_files_that_exist():
    # No Docker here to run it: what can go stale is checked instead (services, mounted
    # files, the Dockerfile's sources, the entrypoint's CLI flags).
    import yaml

    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert set(compose["services"]) == {"postgres", "homeserver", "prometheus", "grafana"}
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), volume
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{port}: published beyond loopback"
    build = compose["services"]["homeserver"]["build"]
    dockerfile = (DEPLOY / build["context"] / build["dockerfile"]).resolve()
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), line
    entrypoint = (DEPLOY / "docker-entrypoint.sh").read_text()
    generate = entrypoint[entrypoint.index("homeserver generate-config") :].split("--output")[0]
    flags = re.findall(r"--[a-z-]+", generate)
    args = []
    for flag in flags:
        args += [flag, "x:1"] if flag not in ("--open-registration", "--no-rate-limits") else [flag]
    parsed = build_parser().parse_args(["generate-config", *args, "--output", "o"])
    assert parsed.command == "generate-config"
