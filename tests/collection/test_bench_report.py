"""bench/report.py renders docs/performance.md (and the chart) from a results file.

The bench itself is not part of `make test`; this only checks, in well under a second, that the
committed results still render, so that a change of the results format cannot break the page
unnoticed. It writes into a temporary directory, never into docs/.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# bench/run.py's TARGETS, and the name results written before 1.1.0 give the native writer's figure
HEADLINE = ("upgrade_downtime_with_backup_ratio", "upgrade_downtime_ratio", "backup_window_over_copy",
            "backup_module_speedup_vs_dbctl", "backup_native_writer_speedup_vs_dbctl", "downgrade_window_vs_script",
            "downgrade_overhead_vs_script", "fleet_6_over_1", "backup_speedup_vs_dbctl")


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results():
    found = sorted((ROOT / "bench" / "results").glob("*.json"))
    assert found, "bench/results/ holds no results file (docs/performance.md is generated from one)"
    path = found[-1]
    return path, json.loads(path.read_text(encoding="utf-8"))


def test_results_carry_the_headline_ratios(results):
    _path, r = results
    present = [name for name in HEADLINE if name in r]
    assert present, "no headline ratio in the results"
    for name in present:
        assert isinstance(r[name], (int, float)) and r[name] > 0
        assert r["headline"][name]["value"] == r[name]


def test_page_shows_every_ratio_with_its_target(report, results):
    path, r = results
    text = report.page(r, path)
    assert text.startswith("# Performance")
    assert path.name in text and "![bench chart](performance.png)" in text
    for name, entry in r["headline"].items():
        row = next(line for line in text.splitlines() if line.startswith(f"| `{name}`"))
        assert str(entry["value"]) in row and ("met" in row or "missed" in row)


def test_chart_is_a_png(report, results, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is installed by make bench only")
    _path, r = results
    out = tmp_path / "chart.png"
    report.chart(r, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_committed_page_is_generated_from_the_newest_results(results):
    path, _r = results
    page = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    assert f"bench/results/{path.name}" in page
