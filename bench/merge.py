#!/usr/bin/env python3
"""Merge the sections of one bench results file into another and redraw the page.

    bench/merge.py INTO.json FROM.json

For a run split over two `make bench` invocations (e.g. BENCH_SECTIONS=overhead,fleet and
BENCH_SECTIONS=throughput,downtime,growth in separate BENCH_WORLDs): FROM's sections replace
INTO's sections of the same name, FROM is listed under merged_runs (date, commit, settings, load),
the headline ratios are recomputed and docs/performance.md and docs/performance.png redrawn.
Every ratio still compares variants of one invocation; nothing is compared across the two.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("into", type=Path)
    parser.add_argument("source", type=Path)
    parser.add_argument("--sections", help="comma-separated sections to take (default: those FROM ran)")
    parser.add_argument("--world", type=Path, help="FROM's BENCH_WORLD: its golden/<size>/prepared.json describe "
                        "the databases FROM ran on (a FROM written with BENCH_MERGE_INTO keeps the earlier ones)")
    args = parser.parse_args()
    into = json.loads(args.into.read_text())
    source = json.loads(args.source.read_text())
    # FROM may itself have been written with BENCH_MERGE_INTO: its own run is then its last merged run
    run_info = source["merged_runs"][-1] if source.get("merged_runs") else source
    names = args.sections.split(",") if args.sections else run_info["settings"]["sections"]
    missing = [n for n in names if n not in source["sections"]]
    if missing:
        raise SystemExit(f"{args.source} has no section {', '.join(missing)}")
    for name in names:
        into["sections"][name] = source["sections"][name]
        into.setdefault("section_runs", {})[name] = source.get("section_runs", {}).get(name) or {
            k: run_info.get(k) for k in ("git", "date", "load_average_start")}
    sizes = {str(size) for size in run_info["settings"]["sizes"]} | {str(size) for size in into["settings"]["sizes"]}
    prepared = {k: v for k, v in into.get("prepared", {}).items() if k in sizes}
    if args.world:
        for size in run_info["settings"]["sizes"]:
            info = args.world / "golden" / str(size) / "prepared.json"
            if info.exists():
                prepared.setdefault(str(size), json.loads(info.read_text()))
    into["prepared"] = dict(sorted(prepared.items(), key=lambda kv: int(kv[0])))
    into.setdefault("merged_runs", []).append(
        {k: run_info.get(k) for k in ("date", "git", "settings", "load_average_start", "load_average_end", "duration_s")}
        | {"sections_taken": names})
    into.pop("notes", None)  # the page speaks to users: no free-text notes
    # growth is recomputed from the sections now on the page, whichever run they came from
    if "growth" in into["sections"]:
        into["sections"]["growth"] = run.section_growth(into["sections"].get("throughput", {}),
                                                        into["sections"].get("downtime", {}))
    for key in list(run.TARGETS) + ["backup_speedup_vs_dbctl"]:
        into.pop(key, None)
    values = run.headline(into)
    into.update(values)
    into["headline"] = {
        name: {"value": value, "target": f"{run.TARGETS[name][0]} {run.TARGETS[name][1]}",
               "met": (value >= run.TARGETS[name][1]) if run.TARGETS[name][0] == ">=" else (value <= run.TARGETS[name][1])}
        for name, value in values.items()}
    args.into.write_text(json.dumps(into, indent=2) + "\n")
    import report  # noqa: E402  (needs matplotlib from bench/requirements.txt)
    report.write(into, args.into)
    return 0


if __name__ == "__main__":
    sys.exit(main())
