"""The benchmark's statistics helpers (and that the bench package imports and lints in CI)."""

import pytest

from bench.report import markdown
from bench.stats import percentile, rate, ratio, summarize


def test_percentile_interpolates_between_ranks():
    values = [10, 20, 30, 40]
    assert percentile(values, 0) == 10
    assert percentile(values, 100) == 40
    assert percentile(values, 50) == 25
    # rank (4-1)*0.95 = 2.85 -> 30 + 0.85 * 10
    assert percentile(values, 95) == pytest.approx(38.5)


def test_percentile_ignores_input_order_and_handles_small_samples():
    assert percentile([3, 1, 2], 50) == 2
    assert percentile([7], 99) == 7
    assert percentile([], 50) is None


def test_percentile_rejects_out_of_range():
    with pytest.raises(ValueError):
        percentile([1, 2], 101)


def test_summarize_on_a_known_sample():
    s = summarize(range(1, 101))  # 1..100
    assert s["n"] == 100
    assert s["mean"] == pytest.approx(50.5)
    assert s["p50"] == pytest.approx(50.5)
    assert s["p99"] == pytest.approx(99.01)
    assert s["max"] == 100
    assert summarize([])["p95"] is None


def test_rate_and_ratio_guard_against_empty_measurements():
    assert rate(50, 2.0) == 25
    assert rate(0, 2.0) is None
    assert rate(10, 0) is None
    assert ratio(30, 10) == 3
    assert ratio(None, 10) is None
    assert ratio(5, 0) is None


def test_markdown_puts_both_servers_and_the_ratio_side_by_side():
    fig = {"value": None, "unit": "msg/s", "better": "higher"}
    run = {
        "meta": {
            "date": "2026-01-01T00:00:00Z",
            "mode": "quick",
            "command": "python -m bench.run --quick",
            "machine": "test machine",
            "versions": {"synapse": "1.0", "ours": "0.1"},
            "scenarios": ["send_one_room"],
        },
        "results": {
            "synapse": {"send_one_room": {"status": "ok", "figures": {"m": {**fig, "value": 10}}}},
            "ours": {"send_one_room": {"status": "ok", "figures": {"m": {**fig, "value": 40}}}},
        },
    }
    table = markdown(run)
    assert "| send_one_room | m | msg/s | 10.0 | 40.0 | 4.00 | 4.00× as fast |" in table


def test_scenario_selection_keeps_dependency_order():
    from bench.loadgen import parse_only

    assert parse_only("initial_sync,room_creation") == ["room_creation", "initial_sync"]
    with pytest.raises(SystemExit):
        parse_only("no_such_scenario")
