#!/usr/bin/env python3
"""docs/performance.md and docs/performance.png from a bench/results/<date>.json.

    .venv/bin/python bench/report.py [bench/results/<date>.json]   (default: the newest)

bench/run.py calls write() at the end of `make bench`; run this alone to redo the page from a
results file.  Needs matplotlib (bench/requirements.txt, installed by `make bench`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
CHART = DOCS / "performance.png"
PAGE = DOCS / "performance.md"

NAMES = {
    "upgrade_downtime_with_backup_ratio": "Upgrade downtime with the default backup, role window / (bare restart + "
                                          "schema migration), worst size",
    "upgrade_downtime_ratio": "Upgrade downtime without a backup (`upgrade_backup=false`), role window / (bare "
                              "restart + schema migration), worst size",
    "backup_window_over_copy": "Backup playbook window (engine unavailable) / `cp -a` of `psql/`, worst size",
    "backup_module_speedup_vs_dbctl": "Backup step as the roles run it (`tractor_db`, default verification) vs "
                                      "`tractor-dbctl --backup` (dbctl time / module time), largest size",
    "backup_native_writer_speedup_vs_dbctl": "The native writer alone, without Ansible, verification or fsync, vs "
                                             "`tractor-dbctl --backup`, largest size",
    "downgrade_window_vs_script": "Downgrade window (step 3 until the old version answers), playbook / bash script",
    "downgrade_overhead_vs_script": "Whole downgrade, playbook / bash script",
    "fleet_6_over_1": "Fleet scaling, backup playbook time for 6 engines / 1 engine",
    # the name results files written before 1.1.0 give the native writer's figure
    "backup_speedup_vs_dbctl": "The native writer alone vs `tractor-dbctl --backup`, largest size",
}


def fmt(value, digits=2):
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def spread(stat: dict) -> str:
    return f"{fmt(stat['median'])} s ({fmt(stat['min'])}-{fmt(stat['max'])}, n={stat['n']})"


def mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:.0f} MB"


def sizes_of(section: dict) -> list[str]:
    return sorted(section, key=int)


# --- explanations ----------------------------------------------------------------------------------
def autogroup(r: dict) -> int | None:
    if "sched_autogroup" in r["machine"]:
        return r["machine"]["sched_autogroup"]
    try:  # results of a run before the bench recorded it: this machine's setting
        return int(Path("/proc/sys/kernel/sched_autogroup_enabled").read_text())
    except (OSError, ValueError):
        return None


def load_words(loads: list[float], cpus) -> str:
    """The load during some runs, in words computed from the samples."""
    text = f"the 1-minute load average during these runs was {min(loads):.1f}-{max(loads):.1f} on {cpus} CPUs"
    if cpus and max(loads) > int(cpus):
        text += " (more runnable processes than CPUs: the parallel compressor got fewer cores than it asked for)"
    return text


def largest_throughput(r: dict) -> dict:
    tp = r["sections"]["throughput"]
    return tp[sizes_of(tp)[-1]]


def why_native_writer(r: dict) -> str:
    largest = largest_throughput(r)
    cores = largest["cores_used"]
    text = (f"At {int(largest['tasks']):,} tasks ({mb(largest['psql_bytes'])}) the native writer kept "
            f"{fmt(cores['native'])} cores busy against dbctl's {fmt(cores['dbctl'])} (tar and one gzip process) "
            f"and spent {fmt(largest['cpu_seconds']['native']['median'], 1)} CPU-s to dbctl's "
            f"{fmt(largest['cpu_seconds']['dbctl']['median'], 1)}; "
            + load_words(largest["load_average_1min"], r["machine"].get("cpus")) + ".")
    par = r["sections"].get("parallel")
    if par:
        text += (f" With the two cores to itself (section 1's parallel check) the writer was "
                 f"{par['speedup_native_2_threads_vs_dbctl']}x dbctl at {int(par['tasks']):,} tasks.")
    return text


def why_module(r: dict) -> str:
    largest = largest_throughput(r)
    s = largest["seconds"]
    extra = s["module"]["median"] - s["native"]["median"]
    return (f"At {int(largest['tasks']):,} tasks the module took {fmt(s['module']['median'])} s and the bare writer "
            f"{fmt(s['native']['median'])} s: the module's {fmt(extra)} s more are its checks before it writes, "
            "the fsyncs, the read-back of the whole archive (sha256, every gzip CRC, the tar walk), the restore "
            "check (the archive unpacked into a scratch directory and a PostgreSQL started on it) and the "
            "sidecar files. `tractor-dbctl --backup` does none of these. "
            f"Ratio {largest['speedup_module_vs_dbctl']}x at this size; "
            + ", ".join(f"{r['sections']['throughput'][k]['speedup_module_vs_dbctl']}x at {int(k):,} tasks"
                        for k in sizes_of(r["sections"]["throughput"])[:-1]) + ".")


def worst(dt: dict, key: str) -> dict:
    return max(dt.values(), key=lambda e: e[key])


def why_downtime(r: dict) -> str:
    dt = r["sections"]["downtime"]
    w = worst(dt, "ratio_role_vs_restart_plus_migration")
    s = w["seconds"]
    extra = s["role"]["median"] - w["baseline_restart_plus_migration_s"]
    return (f"Worst at {int(w['tasks']):,} tasks: role {fmt(s['role']['median'])} s (repetitions "
            f"{fmt(s['role']['min'])}-{fmt(s['role']['max'])} s), bare restart {fmt(s['bare_restart']['median'])} s "
            f"+ migration {fmt(s['migration']['median'])} s. The role's {fmt(extra)} s more: phase 4 is one "
            "`tractor_engine` run (its start-up, the stop, and the health polling it does itself, as the bare "
            "script's `kill`/`sleep` loop does).")


def why_downtime_backup(r: dict) -> str:
    dt = r["sections"]["downtime"]
    w = worst(dt, "ratio_role_with_backup_vs_restart_plus_migration")
    s = w["seconds"]
    return (f"Worst at {int(w['tasks']):,} tasks: {fmt(s['role_with_backup']['median'])} s against "
            f"{fmt(s['role']['median'])} s without a backup and {fmt(w['baseline_restart_plus_migration_s'])} s "
            "for the bare restart and migration. Inside the window the role stops the engine, copies the stopped "
            f"`psql/` (a plain `cp -a` of it took {fmt(s['copy']['median'])} s here) and starts the new version as "
            "a separate task; the archive and its verification come after the window (phase 6).")


def why_backup_window(r: dict) -> str:
    dt = r["sections"]["downtime"]
    w = worst(dt, "ratio_backup_window_over_copy")
    s = w["seconds"]
    return (f"Worst at {int(w['tasks']):,} tasks: {fmt(s['backup_window']['median'])} s unavailable against "
            f"{fmt(s['copy']['median'])} s for `cp -a` of the same `psql/` (from the page cache). The window also "
            "holds the engine's stop, PostgreSQL's stop and the engine's start until it answers again, each a "
            "fixed cost that a copy alone does not have. The whole playbook took "
            + ", ".join(f"{fmt(dt[k]['seconds']['backup_playbook']['median'], 0)} s at {int(k):,} tasks"
                        for k in sizes_of(dt)) + "; outside the window the engine serves.")


def why_fleet(r: dict) -> str:
    fl = r["sections"]["fleet"]
    top = max(fl["engines"])
    text = (f"With --forks {max(5, top)} every task runs on all {top} engines at once; the time grows only "
            f"because the {r['machine'].get('cpus')} CPUs are shared by {top} module runs, PostgreSQL scratch "
            f"restores and engine restarts at the same time. ")
    if top > 5 and fl.get("ratio_6_over_1_default_forks") is not None:
        text += (f"With ansible's default of 5 forks the sixth engine waits for a second round of every "
                 f"task: {fmt(fl['ratio_6_over_1_default_forks'])}x.")
    return text


def profile_groups(profile: dict) -> dict:
    groups = {}
    for task in profile["tasks"]:
        name = task["task"]
        action = task["action"]
        if name.startswith("renderfarm.tractor.report") or "report" in name.lower():
            key = "report (records and report files on the controller)"
        elif name.startswith("renderfarm.tractor.preflight") or "Preflight" in name or "lock" in name.lower():
            key = "preflight and lock"
        elif action.startswith("renderfarm.tractor."):
            key = "the nine steps' modules"
        else:
            key = "control tasks (set_fact, assert, include, argument specs)"
        groups[key] = groups.get(key, 0.0) + task["seconds"]
    return dict(sorted(groups.items(), key=lambda kv: -kv[1]))


def why_downgrade(r: dict) -> str:
    ov = r["sections"]["overhead"]
    prof = ov["profile"].get("playbook")
    text = (f"The script takes {fmt(ov['seconds']['script']['median'])} s; the playbook "
            f"{fmt(ov['seconds']['playbook']['median'])} s. ")
    if prof:
        text += "Where the playbook's time goes (median task times): " + ", ".join(
            f"{k} {fmt(v, 1)} s" for k, v in profile_groups(prof).items()) + ". "
    text += ("Every module task is a separate Python process that loads Ansible's module library before it "
             "does its work; the script's steps are the tools alone. The playbook also verifies the backup by "
             "restoring it into a scratch PostgreSQL, takes and releases a per-engine lock, and writes a report.")
    return text


def why_downgrade_window(r: dict) -> str:
    ov = r["sections"]["overhead"]
    w = ov["window_seconds"]
    return (f"The engine was unavailable {fmt(w['after']['median'])} s with the playbook and "
            f"{fmt(w['script']['median'])} s with the script, from step 3 (the engine stopped) until the old "
            "version answered. Between those the playbook runs steps 4 to 8 as separate module tasks, each with "
            "its own checks (the backup is verified before step 4, outside the window).")


WHY = {
    "upgrade_downtime_with_backup_ratio": why_downtime_backup,
    "upgrade_downtime_ratio": why_downtime,
    "backup_window_over_copy": why_backup_window,
    "backup_module_speedup_vs_dbctl": why_module,
    "backup_native_writer_speedup_vs_dbctl": why_native_writer,
    "downgrade_window_vs_script": why_downgrade_window,
    "downgrade_overhead_vs_script": why_downgrade,
    "fleet_6_over_1": why_fleet,
    "backup_speedup_vs_dbctl": why_native_writer,
}


def baseline(r: dict) -> str:
    return r.get("baseline_commit") or r["settings"].get("baseline_ref") or "baseline"


def repetitions(r: dict) -> str:
    sec = r["sections"]
    parts = []
    if "throughput" in sec:
        parts.append("throughput " + "/".join(str(e["seconds"]["native"]["n"]) for _, e in
                                             sorted(sec["throughput"].items(), key=lambda kv: int(kv[0]))))
    if "downtime" in sec:
        first = sec["downtime"][sizes_of(sec["downtime"])[0]]["seconds"]
        parts.append(f"downtime {first['role']['n']} (with the backup {first['role_with_backup']['n']})")
    if "fleet" in sec:
        parts.append("fleet " + str(sec["fleet"]["seconds"]["1@5"]["n"]))
    if "overhead" in sec:
        parts.append("downgrade " + str(sec["overhead"]["seconds"]["script"]["n"]))
    return ", ".join(parts)


DEFAULT_SETTINGS = {"sizes": [10000, 100000, 500000], "repeats": None}


def settings_words(cfg: dict) -> str:
    changed = [f"{k} {', '.join(str(x) for x in cfg[k]) if isinstance(cfg.get(k), list) else cfg.get(k)}"
               for k, v in DEFAULT_SETTINGS.items() if cfg.get(k) != v]
    return ("the defaults of bench/README.md" if not changed
            else "the defaults of bench/README.md except " + ", ".join(changed))


def origin(r: dict, name: str) -> str:
    """Which run measured a section: the commit and the load of that run (sections may come from
    different runs merged into one file)."""
    info = r.get("section_runs", {}).get(name)
    if info is None:  # results written before section_runs: the last merged run that took the section
        taken = [m for m in r.get("merged_runs", []) if name in (m.get("sections_taken") or m["settings"]["sections"])]
        info = taken[-1] if taken else {"git": r["git"], "date": r["date"],
                                        "load_average_start": r.get("load_average_start")}
    load = info.get("load_average_start")
    return (f"Measured on commit `{info['git']}` ({info['date']})"
            + (f", 1-minute load average {load[0]:.1f} at the start of that run" if load else "") + ".")


# --- the page -----------------------------------------------------------------------------------------
def page(r: dict, results_path: Path) -> str:
    m = r["machine"]
    cfg = r["settings"]
    rel = results_path.relative_to(REPO) if results_path.is_relative_to(REPO) else results_path
    lines = [
        "# Performance",
        "",
        "Measured by `make bench` (bench/, see bench/README.md) on emulated engines on one machine. Every",
        "figure is a ratio against a baseline measured in the same run, interleaved with it (each repetition",
        "starts with another variant), and each time is the median of the repetitions. This page and the",
        f"chart are generated from `{rel}`.",
        "",
        f"Run of {r['date']} on commit `{r['git']}`{' plus uncommitted changes' if r.get('git_dirty') else ''}, "
        f"{r['duration_s'] / 60:.0f} minutes, with {settings_words(cfg)}.",
        "",
        "## Headline",
        "",
        "| ratio | measured | target | | why |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, head in r["headline"].items():
        why = WHY[name](r) if name in WHY else ""
        lines.append(f"| `{name}`: {NAMES.get(name, name)} | **{head['value']}** | {head['target']} | "
                     f"{'met' if head['met'] else '**missed**'} | {why} |")
    load_start, load_end = r["load_average_start"][0], r["load_average_end"][0]
    lines += [
        "",
        "![bench chart](performance.png)",
        "",
        "## The machine",
        "",
        f"* {m.get('cpus')} CPUs ({m.get('cpu_model', 'unknown model')}), {m.get('memory_gib')} GiB memory, "
        f"{m.get('os', 'Linux')}, kernel {m.get('kernel')}.",
        f"* {m.get('postgresql')}; {m.get('ansible_core')}; modules run with {m.get('host_python')} "
        f"(local connection, `tractor_service_manager: direct`, no become), as `make demo` does.",
        f"* {m.get('tar')}; {m.get('gzip')}.",
        f"* 1-minute load average {load_start:.1f} at the start and {load_end:.1f} at the end of the run"
        + (" (`sched_autogroup` on: each session gets an equal share of the CPUs)." if autogroup(r) == 1 else "."),
        f"* Data in the page cache ({m.get('memory_gib')} GiB of memory): the I/O floor is the speed of reading "
        "cached files, and `cp -a` copies from memory.",
        f"* Job databases: Tractor {cfg['from_version']} schema, {cfg['tasks_per_job']} tasks per job, one command "
        "and one finished invocation per task, every 50th job still running, 400 blades, command logs of the "
        "newest 100 jobs; filled with `generate_series` SQL through `tractor-dbctl --exec-sql` "
        "(bench/fill.sql). Sizes: " + ", ".join(
            f"{int(k):,} tasks = {mb(v['psql_bytes'])} in psql/ (prepared in {v['seconds']:.0f} s)"
            for k, v in sorted(r["prepared"].items(), key=lambda kv: int(kv[0]))) + ".",
        f"* Sizes {', '.join(f'{s:,}' for s in cfg['sizes'])} tasks; repetitions (the n in the tables): "
        + repetitions(r) + ".",
        *[f"* Merged into this file: the run of {m_['date']} on `{m_['git']}`, sizes "
          f"{', '.join(f'{s:,}' for s in m_['settings']['sizes'])}, sections {', '.join(m_['settings']['sections'])}"
          + (f", 1-minute load average {m_['load_average_start'][0]:.1f} at its start" if m_.get('load_average_start')
             else "") + "." for m_ in r.get("merged_runs", [])],
        "",
        "## The baselines",
        "",
        "* **dbctl backup**: `tractor-dbctl --backup FILE` as the EngineOwner: `tar cfz` of `psql/`, one gzip process.",
        "* **I/O floor**: `tar cf - psql | wc -c`: reading the directory without compressing.",
        "* **native writer**: `tractor_targz.write_archive()` in a fresh `python3` (bench/native_backup.py),"
        " the writer of `tractor_db state=backup method=native` without Ansible: tar in Python, gzip blocks on"
        " as many threads as CPUs; no verification, no fsync.",
        "* **backup module**: `ansible localhost -m renderfarm.tractor.tractor_db -a 'state=backup force=true ...'`"
        " with the default verification, as the roles run it: Ansible's start-up, the async job and its progress"
        " polling, the module's checks (engine probe, dbctl status, free space), the writer, the read-back of the"
        " archive (sha256, gzip CRCs, tar walk), the restore check on a scratch PostgreSQL, the sidecar files and"
        " fsyncs.",
        "* **restore**: `tar xfz` of each archive (what `tractor-dbctl --restore` runs); floor: `tar xf` of an"
        " uncompressed tar of the same directory.",
        "* **bare restart** (bench/baseline/restart.sh): `kill -TERM` the engine, wait for it to exit, start"
        " `tractor-engine --daemon` of the same version on data already migrated. **Migration**: `tractor-dbctl"
        f" --upgrade` ({cfg['from_version']} to {cfg['to_version']}, it rewrites every job and task row), timed on"
        " its own. **Bare switch**: the same restart script starting the new version on the old data (the"
        " migration happens at its start-up).",
        "* **Unavailable window**: a poller sends `ctrl?q=status` every 50 ms; the window runs from the last"
        " healthy answer before the first failure to the first healthy answer of the expected version.",
        f"* **Upgrade role**: `playbooks/upgrade.yml -e upgrade_version={cfg['to_version']}` with the new version"
        " installed before the run, once with its defaults (the backup: the stopped database copied in phase 3,"
        " archived and verified in phase 6 after the switch) and once with `upgrade_backup=false`.",
        "* **Backup playbook**: `playbooks/backup.yml` with its defaults on a running engine (the stopped database"
        " copied, the engine started again, the archive written and verified while it serves); its window"
        " against **`cp -a`** of the same stopped `psql/`.",
        "* **Fleet**: `playbooks/backup.yml` over 1, 3 and 6 running engines of the smallest size,"
        " `--forks max(5, engines)` and, for 6 engines, also ansible's default of 5.",
        "* **Downgrade script** (bench/baseline/downgrade.sh): the runbook's nine steps with the same tools"
        " (`tq pause` of the unfinished jobs, `tq retry active`, `kill -KILL`, `tractor-dbctl --stop/--destroy/"
        "--restore/--start-for-engine --no-auto-upgrade/--show-params`, removal of newer command logs, engine"
        " start and a `curl` loop until it answers as the old version); no checks, lock or report. The playbook"
        " runs with `downgrade_restore=always`, so that both restore.",
        "* All runs use `ansible_pipelining: true` in the bench's inventory and one dbctl process lock"
        " (`TRACTOR_DBCTL_LOCKFILE`) for the bench's engines, as on one engine host.",
        "",
    ]
    lines += throughput_section(r) + downtime_section(r) + fleet_section(r) + overhead_section(r) + growth_section(r)
    lines += settings_section(r)
    return "\n".join(lines) + "\n"


def size_difference(native: int, dbctl: int) -> str:
    diff = native - dbctl
    if diff == 0:
        return "the same size"
    word = "larger" if diff > 0 else "smaller"
    return f"{abs(diff) / 1e3:,.0f} KB {word} ({100 * abs(diff) / dbctl:.2f} %)"


def throughput_section(r: dict) -> list[str]:
    tp = r["sections"].get("throughput")
    if not tp:
        return []
    out = ["## 1. Backup and restore throughput", "", origin(r, "throughput"), "",
           "MB/s of `psql/` (file bytes); median of the repetitions, range in the seconds table.", "",
           "| tasks | psql/ | floor | dbctl | native writer | backup module | writer / dbctl | module / dbctl "
           "| restore floor | restore native archive | restore dbctl archive |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key in sizes_of(tp):
        e = tp[key]
        v = e["mb_per_s"]
        out.append(f"| {int(key):,} | {mb(e['psql_bytes'])} | {v['floor']} | {v['dbctl']} | {v['native']} | "
                   f"{v['module']} | {e['speedup_native_vs_dbctl']}x | **{e['speedup_module_vs_dbctl']}x** | "
                   f"{v['restore_floor']} | {v['restore_native']} | {v['restore_dbctl']} |")
    out += ["", "| tasks | dbctl | native writer | backup module | cores used dbctl / native | archive dbctl / native |",
            "| --- | --- | --- | --- | --- | --- |"]
    for key in sizes_of(tp):
        e = tp[key]
        s = e["seconds"]
        out.append(f"| {int(key):,} | {spread(s['dbctl'])} | {spread(s['native'])} | {spread(s['module'])} | "
                   f"{e['cores_used']['dbctl']} / {e['cores_used']['native']} | "
                   f"{mb(e['archive_bytes']['dbctl'])} / {mb(e['archive_bytes']['native'])} |")
    largest = tp[sizes_of(tp)[-1]]
    out += ["", "Both archives restore with `tar xfz` (the restore columns are exactly that); the native one is a"
            " multi-member gzip of the same tar stream. At "
            f"{int(largest['tasks']):,} tasks it is "
            + size_difference(largest["archive_bytes"]["native"], largest["archive_bytes"]["dbctl"])
            + " against dbctl's.", ""]
    par = r["sections"].get("parallel")
    if par:
        s = par["seconds"]
        out += ["**Parallel check** (`BENCH_SECTIONS=parallel`): the same backups of "
                f"{int(par['tasks']):,} tasks ({mb(par['psql_bytes'])}) with the bench's session given a higher "
                "scheduler weight than the other sessions (autogroup nice -15), so that the two cores were "
                f"mostly its own; load average {par['load_average_1min']:.1f}. " + origin(r, "parallel"), "",
                "| | dbctl (`tar cfz`) | native, 1 thread | native, 2 threads |", "| --- | --- | --- | --- |",
                f"| seconds | {spread(s['dbctl'])} | {spread(s['native_1_thread'])} | {spread(s['native_2_threads'])} |",
                f"| cores used | {par['cores_used']['dbctl']} | {par['cores_used']['native_1_thread']} | "
                f"{par['cores_used']['native_2_threads']} |",
                f"| speed-up vs dbctl | 1.00 | {par['speedup_native_1_thread_vs_dbctl']} | "
                f"**{par['speedup_native_2_threads_vs_dbctl']}** |", ""]
    return out


def downtime_section(r: dict) -> list[str]:
    dt = r["sections"].get("downtime")
    if not dt:
        return []
    out = ["## 2. Downtime of an upgrade and of a backup", "", origin(r, "downtime"), "",
           "Seconds the engine does not answer.", "",
           "| tasks | migration | bare restart | restart + migration | upgrade role, default backup | ratio | "
           "upgrade role, no backup | ratio | bare switch |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key in sizes_of(dt):
        e = dt[key]
        s = e["seconds"]
        out.append(f"| {int(key):,} | {spread(s['migration'])} | {spread(s['bare_restart'])} | "
                   f"{fmt(e['baseline_restart_plus_migration_s'])} s | {spread(s['role_with_backup'])} | "
                   f"**{e['ratio_role_with_backup_vs_restart_plus_migration']}** | {spread(s['role'])} | "
                   f"**{e['ratio_role_vs_restart_plus_migration']}** | {spread(s['bare_switch'])} |")
    if all("backup_window" in dt[k]["seconds"] for k in dt):
        out += ["", "| tasks | backup playbook window | `cp -a` of psql/ | ratio | whole backup playbook |",
                "| --- | --- | --- | --- | --- |"]
        for key in sizes_of(dt):
            e = dt[key]
            s = e["seconds"]
            out.append(f"| {int(key):,} | {spread(s['backup_window'])} | {spread(s['copy'])} | "
                       f"**{e['ratio_backup_window_over_copy']}** | {spread(s['backup_playbook'])} |")
    out += ["", "The whole upgrade playbook takes "
            + ", ".join(f"{fmt(dt[k]['seconds']['role_with_backup_playbook']['median'], 0)} s at {int(k):,} tasks"
                        for k in sizes_of(dt))
            + " with its default backup; only the window is downtime: before it the old engine serves, after it"
            " the new one.", ""]
    return out


def fleet_section(r: dict) -> list[str]:
    fl = r["sections"].get("fleet")
    if not fl:
        return []
    base = fl["seconds"]["1@5"]["median"]
    out = ["## 3. Fleet scaling", "", origin(r, "fleet"), "",
           f"`playbooks/backup.yml` over N running engines of {fl['tasks_per_engine']:,} tasks each.", "",
           "| engines | forks | playbook time | / 1 engine |", "| --- | --- | --- | --- |"]
    for key, stat in sorted(fl["seconds"].items(), key=lambda kv: (int(kv[0].split("@")[0]), -int(kv[0].split("@")[1]))):
        n, forks = key.split("@")
        out.append(f"| {n} | {forks} | {spread(stat)} | {stat['median'] / base:.2f} |")
    out.append("")
    return out


def overhead_section(r: dict) -> list[str]:
    ov = r["sections"].get("overhead")
    if not ov:
        return []
    s = ov["seconds"]
    w = ov.get("window_seconds", {})

    def window(tag: str) -> str:
        return spread(w[tag]) if tag in w else "not measured"

    out = ["## 4. Downgrade", "", origin(r, "overhead"), "",
           f"One engine of {ov['tasks']:,} tasks, upgraded to {r['settings']['to_version']} (running), downgraded to "
           f"{r['settings']['from_version']} with a backup made before the upgrade.", "",
           "| variant | whole run | / script | engine unavailable | / script |", "| --- | --- | --- | --- | --- |",
           f"| bash script (nine steps) | {spread(s['script'])} | 1.00 | {window('script')} | 1.00 |",
           f"| downgrade playbook | {spread(s['playbook'])} | **{ov['ratio_playbook_vs_script']}** | "
           f"{window('after')} | **{ov.get('ratio_window_playbook_vs_script', '-')}** |"]
    if "playbook_verify_archive" in s:
        out.append(f"| downgrade playbook, `downgrade_verify=archive` | {spread(s['playbook_verify_archive'])} | "
                   f"{ov['ratio_playbook_verify_archive_vs_script']} | {window('after-archive')} | |")
    prof = ov["profile"].get("playbook")
    if prof:
        out += ["", "Profile (bench/callback_plugins/task_timer.py, median per task over the repetitions; the "
                "20 slowest tasks):", "", "| task | module | seconds |", "| --- | --- | --- |"]
        for task in sorted(prof["tasks"], key=lambda t: -t["seconds"])[:20]:
            out.append(f"| {task['task'].replace('|', '/')} | `{task['action']}` | {task['seconds']:.2f} |")
        out += ["", "By kind: " + ", ".join(f"{k}: {fmt(v, 1)} s" for k, v in profile_groups(prof).items()) + "."]
    out.append("")
    return out


def growth_section(r: dict) -> list[str]:
    gr = r["sections"].get("growth")
    if not gr:
        return []
    sources = {origin(r, name) for name in ("throughput", "downtime") if name in r["sections"]}
    out = ["## 5. Growth", "",
           "Least-squares line through every repetition of sections 1 and 2 above (seconds against tasks). "
           + " ".join(sorted(sources)), "",
           "| what | slope (s per 100k tasks) | intercept | R² | medians by size |", "| --- | --- | --- | --- | --- |"]
    for name, fit in gr.items():
        medians = ", ".join(f"{int(k):,}: {v:.2f} s" for k, v in sorted(fit["medians"].items(), key=lambda kv: int(kv[0])))
        out.append(f"| {name.replace('_', ' ')} | {fit['slope_s_per_100k_tasks']} | {fit['intercept_s']} s | "
                   f"{fit['r2']} | {medians} |")
    out.append("")
    return out


def settings_section(r: dict) -> list[str]:
    return [
        "## Settings that change these figures", "",
        "* `ansible_pipelining: true` for engine hosts: one process and no temporary module file per task.",
        "* `forks` at least the number of engines a play runs on at once (section 3): with fewer, every task"
        " takes a second round.",
        "* A backup directory on a filesystem with reflinks (Btrfs, XFS with `reflink=1`) makes the copy taken"
        " while the engine is stopped nearly instant, whatever the size of `psql/`; elsewhere it is a plain copy"
        " at disk speed.",
        "* `backup_max_rate` slows the archive written while the engine serves, to leave it disk bandwidth; it"
        " does not lengthen the downtime.",
        "",
    ]


# --- chart ---------------------------------------------------------------------------------------------
def chart(r: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5))
    fig.suptitle(f"renderfarm.tractor bench {r['date'][:10]} ({r['machine'].get('cpus')} CPUs; "
                 "medians, bars = min-max)", fontsize=12)
    sec = r["sections"]

    def target(name: str) -> str:
        found = r.get("targets", {}).get(name)
        return f"target {found[0]} {found[1]}x" if found else "no target"


    ax = axes[0][0]
    tp = sec.get("throughput")
    if tp:
        keys = sizes_of(tp)
        methods = [("floor", "I/O floor (tar, no gzip)"), ("dbctl", "tractor-dbctl --backup"),
                   ("native", "native writer"), ("module", "backup module (as the roles run it)")]
        width = 0.2
        for i, (m, label) in enumerate(methods):
            xs = [j + (i - 1.5) * width for j in range(len(keys))]
            ys = [tp[k]["mb_per_s"][m] for k in keys]
            bars = ax.bar(xs, ys, width, label=label)
            ax.bar_label(bars, fmt="%.0f", fontsize=7)
        ax.set_yscale("log")
        ax.set_xticks(range(len(keys)), [f"{int(k) // 1000}k tasks\n{mb(tp[k]['psql_bytes'])}" for k in keys])
        ax.set_ylabel("MB/s of psql/ (log scale)")
        largest = tp[keys[-1]]
        ax.set_title(f"1. Backup: module {largest['speedup_module_vs_dbctl']}x dbctl "
                     f"({target('backup_module_speedup_vs_dbctl')}) at {int(keys[-1]) // 1000}k")
        ax.legend(fontsize=8, loc="upper left")

    ax = axes[0][1]
    dt = sec.get("downtime")
    if dt:
        keys = sizes_of(dt)
        x = range(len(keys))
        mig = [dt[k]["seconds"]["migration"]["median"] for k in keys]
        rst = [dt[k]["seconds"]["bare_restart"]["median"] for k in keys]
        width = 0.25
        ax.bar([i - width for i in x], rst, width, label="bare restart", color="#8fbc8f")
        ax.bar([i - width for i in x], mig, width, bottom=rst, label="+ schema migration", color="#2e8b57")
        for offset, key, label, color in ((0, "role_with_backup", "upgrade role, default backup", "#1f3b73"),
                                          (width, "role", "upgrade role, no backup", "#4169e1")):
            med = [dt[k]["seconds"][key]["median"] for k in keys]
            err = [[m - dt[k]["seconds"][key]["min"] for m, k in zip(med, keys)],
                   [dt[k]["seconds"][key]["max"] - m for m, k in zip(med, keys)]]
            ax.bar([i + offset for i in x], med, width, yerr=err, capsize=3, label=label, color=color)
        for i, k in enumerate(keys):
            ax.annotate(f"{dt[k]['ratio_role_with_backup_vs_restart_plus_migration']}x",
                        (i, dt[k]["seconds"]["role_with_backup"]["median"]),
                        ha="center", va="bottom", fontsize=9, xytext=(0, 6), textcoords="offset points")
        ax.set_xticks(list(x), [f"{int(k) // 1000}k tasks" for k in keys])
        ax.set_ylabel("engine unavailable (s)")
        ax.set_title("2. Upgrade downtime / (restart + migration), "
                     f"{target('upgrade_downtime_with_backup_ratio')} with backup")
        ax.legend(fontsize=8, loc="upper left")

    ax = axes[1][0]
    fl = sec.get("fleet")
    if fl:
        series = {}
        for key, stat in fl["seconds"].items():
            n, forks = (int(v) for v in key.split("@"))
            tag = "forks = max(5, engines)" if forks == max(5, n) else f"forks = {forks} (default)"
            series.setdefault(tag, []).append((n, stat))
        for tag, points in series.items():
            points.sort()
            xs = [p[0] for p in points]
            ys = [p[1]["median"] for p in points]
            err = [[p[1]["median"] - p[1]["min"] for p in points], [p[1]["max"] - p[1]["median"] for p in points]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=tag,
                        linestyle="-" if "max" in tag else "none")
        one = fl["seconds"]["1@5"]["median"]
        fleet_target = r.get("targets", {}).get("fleet_6_over_1", ["<=", 2.0])[1]
        ax.axhline(fleet_target * one, color="red", linestyle=":", label=f"target: {fleet_target}x one engine")
        ax.set_xticks(sorted({int(k.split("@")[0]) for k in fl["seconds"]}))
        ax.set_xlabel("engines in the play")
        ax.set_ylabel("backup playbook (s)")
        ax.set_ylim(bottom=0)
        ax.set_title(f"3. Fleet: {max(fl['engines'])} engines / 1 = {fl['ratio_6_over_1']}x ({target('fleet_6_over_1')})")
        ax.legend(fontsize=8, loc="upper left")

    ax = axes[1][1]
    ov = sec.get("overhead")
    if ov:
        labels, values, colors = [], [], []
        s = ov["seconds"]
        for key, label, color in (("script", "bash script", "#8fbc8f"),
                                  ("playbook_before", "playbook (before fixes)", "#bbbbbb"),
                                  ("playbook", "playbook", "#4169e1")):
            if key in s:
                labels.append(label)
                values.append(s[key]["median"])
                colors.append(color)
        ax.barh(labels, values, color=colors)
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:.1f} s ({v / s['script']['median']:.1f}x)", va="center", fontsize=9)
        prof = ov["profile"].get("playbook")
        if prof:
            left = 0.0
            groups = profile_groups(prof)
            palette = ["#1f3b73", "#3f6fc4", "#8fb0e8", "#c9d8f2"]
            for (name, sec_) , color in zip(groups.items(), palette):
                ax.barh(["playbook by kind"], [sec_], left=left, color=color, label=name)
                left += sec_
            ax.legend(fontsize=7, loc="lower right")
        ax.set_xlabel("seconds")
        ax.set_xlim(right=max(values) * 1.35)
        ax.set_title(f"4. Downgrade: playbook / script = {ov['ratio_playbook_vs_script']}x "
                     f"({target('downgrade_overhead_vs_script')})")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: dict, results_path: Path) -> None:
    DOCS.mkdir(exist_ok=True)
    chart(results, CHART)
    PAGE.write_text(page(results, Path(results_path).resolve()))
    print(f"[bench] wrote {PAGE.relative_to(REPO)} and {CHART.relative_to(REPO)}", flush=True)


def main() -> int:
    if len(sys.argv) > 1:
        path = Path(sys.argv[1])
    else:
        found = sorted((REPO / "bench" / "results").glob("*.json"))
        if not found:
            raise SystemExit("no bench/results/*.json: run make bench first")
        path = found[-1]
    write(json.loads(path.read_text()), path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
