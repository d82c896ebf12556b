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
    "backup_speedup_vs_dbctl": "Backup speed-up, native vs `tractor-dbctl --backup` (dbctl time / native time)",
    "upgrade_downtime_ratio": "Upgrade downtime, role / (bare restart + schema migration)",
    "fleet_6_over_1": "Fleet scaling, backup playbook time for 6 engines / 1 engine",
    "downgrade_overhead_vs_script": "Orchestration overhead, downgrade playbook / bash script",
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


def why_backup(r: dict) -> str:
    tp = r["sections"]["throughput"]
    largest = tp[sizes_of(tp)[-1]]
    cores = largest["cores_used"]
    loads = largest["load_average_1min"]
    text = (f"At {int(largest['tasks']):,} tasks ({mb(largest['psql_bytes'])}) the native writer kept "
            f"{fmt(cores['native'])} cores busy against dbctl's {fmt(cores['dbctl'])} (gzip is one process) "
            f"and spent {fmt(largest['cpu_seconds']['native']['median'], 1)} CPU-s to dbctl's "
            f"{fmt(largest['cpu_seconds']['dbctl']['median'], 1)}. ")
    met = r["headline"]["backup_speedup_vs_dbctl"]["met"]
    if not met:
        text += (f"A parallel compressor can only use the cores it gets: the 1-minute load average during "
                 f"these runs was {min(loads):.1f}-{max(loads):.1f} on {r['machine'].get('cpus')} CPUs (other "
                 "users' test suites on this shared machine)")
        if autogroup(r) == 1:
            text += (", and the kernel shares the CPUs between sessions (sched_autogroup), not threads: the "
                     "bench's session got its share whether it ran one thread or three")
        native_cpu = largest["cpu_seconds"]["native"]["median"]
        dbctl_cpu = largest["cpu_seconds"]["dbctl"]["median"]
        text += (f". The native writer's CPU cost was {fmt(100 * native_cpu / dbctl_cpu, 0)}% of dbctl's "
                 "(tar and gzip) for the same bytes")
        par = r["sections"].get("parallel")
        if par:
            text += (f"; given the two cores (the parallel check below: the bench's session raised over the others "
                     f"for a minute) the native writer was {par['speedup_native_2_threads_vs_dbctl']}x dbctl at "
                     f"{int(par['tasks']):,} tasks, using {par['cores_used']['native_2_threads']} cores.")
        elif native_cpu < dbctl_cpu and cores["native"] < cores["dbctl"]:
            text += (f": it lost on time because it kept fewer cores busy ({fmt(cores['native'])} against "
                     f"{fmt(cores['dbctl'])} for tar and gzip, two processes) at this load. Only a run with "
                     "a second core free shows what the split buys (BENCH_SECTIONS=parallel).")
        else:
            text += ", so it is faster only where a second core is free; here it was not."
    else:
        text += "Both cores were available often enough for the split to pay."
    return text


def why_downtime(r: dict) -> str:
    dt = r["sections"]["downtime"]
    worst = max(dt.values(), key=lambda e: e["ratio_role_vs_restart_plus_migration"])
    s = worst["seconds"]
    extra = s["role"]["median"] - worst["baseline_restart_plus_migration_s"]
    text = (f"Worst at {int(worst['tasks']):,} tasks: role {fmt(s['role']['median'])} s, bare restart "
            f"{fmt(s['bare_restart']['median'])} s + migration {fmt(s['migration']['median'])} s. ")
    noisy = max(s["role"].get("spread_pct", 0), s["bare_switch"].get("spread_pct", 0)) > 50
    if noisy:
        # The repetitions say more than the medians when the machine was busy: show them.
        text += (f"The repetitions there ranged {fmt(s['role']['min'])}-{fmt(s['role']['max'])} s for the role and "
                 f"{fmt(s['bare_switch']['min'])}-{fmt(s['bare_switch']['max'])} s for the bare switch (the same "
                 "version change on the same data, without Ansible), so at this load most of the role's "
                 f"{fmt(extra)} s more is the spread between runs; ")
    else:
        text += f"The role's {fmt(extra)} s more "
    text += ("what the role adds inside the window is one `tractor_engine` module run (its start-up, the "
             "stop and the health polling it does itself, as the bare script's `kill`/`sleep` loop does), "
             "which weighs most where the migration is short. ")
    bigger = [e for e in dt.values() if e is not worst]
    if bigger:
        best = min(dt.values(), key=lambda e: e["ratio_role_vs_restart_plus_migration"])
        text += (f"At {int(best['tasks']):,} tasks the ratio is {fmt(best['ratio_role_vs_restart_plus_migration'])}. ")
    return text


def why_fleet(r: dict) -> str:
    fl = r["sections"]["fleet"]
    s = fl["seconds"]
    top = max(fl["engines"])
    text = (f"With --forks {max(5, top)} every task runs on all {top} engines at once; the time grows only "
            f"because the {r['machine'].get('cpus')} CPUs are shared by {top} module runs, PostgreSQL scratch "
            f"restores and engine restarts at the same time. ")
    if fl.get("ratio_6_over_1_default_forks") is not None:
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
        groups = profile_groups(prof)
        text += "Where the playbook's time goes (median task times): " + ", ".join(
            f"{k} {fmt(v, 1)} s" for k, v in groups.items()) + ". "
    text += ("Every module task is a separate Python process that loads Ansible's module library before it "
             "does its work; the script's steps are the tools alone. The playbook also verifies the backup by "
             "restoring it into a scratch PostgreSQL, takes and releases a per-engine lock, and writes a report.")
    return text


WHY = {
    "backup_speedup_vs_dbctl": why_backup,
    "upgrade_downtime_ratio": why_downtime,
    "fleet_6_over_1": why_fleet,
    "downgrade_overhead_vs_script": why_downgrade,
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


# --- the page -----------------------------------------------------------------------------------------
def page(r: dict, results_path: Path) -> str:
    m = r["machine"]
    cfg = r["settings"]
    rel = results_path.relative_to(REPO) if results_path.is_relative_to(REPO) else results_path
    lines = [
        "# Performance",
        "",
        "Measured by `make bench` (bench/, see bench/README.md) on emulated engines on one machine. The",
        "machine is shared and noisy, so every figure is a ratio against a baseline measured in the same run,",
        "interleaved with it (each repetition starts with another variant), and each time is the median of",
        f"the repetitions. This page and the chart are generated from `{rel}`; do not edit them by hand.",
        "",
        f"Run of {r['date']} on commit `{r['git']}`{' plus uncommitted changes' if r.get('git_dirty') else ''}, "
        f"{r['duration_s'] / 60:.0f} minutes.",
        "",
        "## Headline",
        "",
        "| ratio | measured | target | | why |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, head in r["headline"].items():
        why = WHY[name](r) if name in WHY else ""
        lines.append(f"| `{name}`: {NAMES[name]} | **{head['value']}** | {head['target']} | "
                     f"{'met' if head['met'] else '**missed**'} | {why} |")
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
        f"* 1-minute load average {r['load_average_start'][0]:.1f} at the start and {r['load_average_end'][0]:.1f} "
        "at the end of the run: other work shared the CPUs throughout"
        + (" (with `sched_autogroup` on, each session, the bench's included, gets an equal share of the CPUs)."
           if autogroup(r) == 1 else "."),
        "* Data in the page cache (24 GiB of memory): the I/O floor is the speed of reading cached files.",
        f"* Job databases: Tractor {cfg['from_version']} schema, {cfg['tasks_per_job']} tasks per job, one command "
        "and one finished invocation per task, every 50th job still running, 400 blades, command logs of the "
        "newest 100 jobs; filled with `generate_series` SQL through `tractor-dbctl --exec-sql` "
        "(bench/fill.sql). Sizes: " + ", ".join(
            f"{int(k):,} tasks = {mb(v['psql_bytes'])} in psql/ (prepared in {v['seconds']:.0f} s)"
            for k, v in sorted(r["prepared"].items(), key=lambda kv: int(kv[0]))) + ".",
        f"* Sizes {', '.join(f'{s:,}' for s in cfg['sizes'])} tasks; repetitions (the n in the tables): "
        + repetitions(r) + ". Settings other than the defaults of bench/README.md are the ones this run was"
        " given to finish in time on a busy machine.",
        *[f"* Merged into this file: the run of {m_['date']} on `{m_['git']}`, sizes "
          f"{', '.join(f'{s:,}' for s in m_['settings']['sizes'])}, sections {', '.join(m_['settings']['sections'])}"
          + (f", 1-minute load average {m_['load_average_start'][0]:.1f} at its start" if m_.get('load_average_start')
             else "") + "." for m_ in r.get("merged_runs", [])],
        *[f"* {note}" for note in r.get("notes", [])],
        "",
        "## The baselines",
        "",
        "* **dbctl backup**: `tractor-dbctl --backup FILE` as the EngineOwner: `tar cfz` of `psql/`, one gzip process.",
        "* **I/O floor**: `tar cf - psql | wc -c`: reading the directory without compressing.",
        "* **native (direct)**: `tractor_targz.write_archive()` in a fresh `python3` (bench/native_backup.py),"
        " the code path of `tractor_db state=backup method=native` without Ansible: tar in Python, gzip blocks on"
        " as many threads as CPUs.",
        "* **native (module)**: `ansible localhost -m renderfarm.tractor.tractor_db -a 'state=backup verify=archive"
        " force=true ...'`: the same plus Ansible's start-up, the module's preflight (engine probe, dbctl status,"
        " free space), the full read-back of the archive (sha256, gzip CRCs, tar walk), the sidecar files and fsyncs.",
        "* **restore**: `tar xfz` of each archive (what `tractor-dbctl --restore` runs); floor: `tar xf` of an"
        " uncompressed tar of the same directory.",
        "* **bare restart** (bench/baseline/restart.sh): `kill -TERM` the engine, wait for it to exit, start"
        " `tractor-engine --daemon` of the same version on data already migrated. **Migration**: `tractor-dbctl"
        f" --upgrade` ({cfg['from_version']} to {cfg['to_version']}, it rewrites every job and task row), timed on"
        " its own. **Bare switch**: the same restart script starting the new version on the old data (the"
        " migration happens at its start-up).",
        "* **Unavailable window**: a poller sends `ctrl?q=status` every 50 ms; the window runs from the last"
        " healthy answer before the first failure to the first healthy answer of the new version.",
        f"* **Upgrade role**: `playbooks/upgrade.yml -e upgrade_version={cfg['to_version']} -e upgrade_backup=false`"
        " with the new version installed before the run; separately with `upgrade_backup=true` (backup and"
        " restore-verification inside the window).",
        "* **Fleet**: `playbooks/backup.yml` over 1, 3 and 6 running engines of the smallest size (each engine is"
        " stopped, backed up natively, verified by a scratch restore, started again), `--forks max(5, engines)`"
        " and, for 6 engines, also ansible's default of 5.",
        "* **Downgrade script** (bench/baseline/downgrade.sh): the runbook's nine steps with the same tools"
        " (`tq pause` of the unfinished jobs, `tq retry active`, `kill -KILL`, `tractor-dbctl --stop/--destroy/"
        "--restore/--start-for-engine --no-auto-upgrade/--show-params`, removal of newer command logs, engine"
        " start and a `curl` loop until it answers as the old version); no checks, lock or report.",
        "* All runs use `ansible_pipelining: true` in the bench's inventory and one dbctl process lock"
        " (`TRACTOR_DBCTL_LOCKFILE`) for the bench's engines, as on one engine host.",
        "",
    ]
    lines += throughput_section(r) + downtime_section(r) + fleet_section(r) + overhead_section(r) + growth_section(r)
    lines += fixes_section(r)
    return "\n".join(lines) + "\n"


def throughput_section(r: dict) -> list[str]:
    tp = r["sections"].get("throughput")
    if not tp:
        return []
    out = ["## 1. Backup and restore throughput", "",
           "MB/s of `psql/` (file bytes); median of the repetitions, range in the seconds table.", "",
           "| tasks | psql/ | floor | dbctl | native (direct) | native (module) | native / dbctl | module / dbctl "
           "| restore floor | restore native archive | restore dbctl archive |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key in sizes_of(tp):
        e = tp[key]
        v = e["mb_per_s"]
        out.append(f"| {int(key):,} | {mb(e['psql_bytes'])} | {v['floor']} | {v['dbctl']} | {v['native']} | "
                   f"{v['module']} | **{e['speedup_native_vs_dbctl']}x** | {e['speedup_module_vs_dbctl']}x | "
                   f"{v['restore_floor']} | {v['restore_native']} | {v['restore_dbctl']} |")
    out += ["", "| tasks | dbctl | native (direct) | native (module) | cores used dbctl / native | archive dbctl / native |",
            "| --- | --- | --- | --- | --- | --- |"]
    for key in sizes_of(tp):
        e = tp[key]
        s = e["seconds"]
        out.append(f"| {int(key):,} | {spread(s['dbctl'])} | {spread(s['native'])} | {spread(s['module'])} | "
                   f"{e['cores_used']['dbctl']} / {e['cores_used']['native']} | "
                   f"{mb(e['archive_bytes']['dbctl'])} / {mb(e['archive_bytes']['native'])} |")
    out += ["", "Both archives restore with `tar xfz` (the restore columns are exactly that); the native one is a"
            " multi-member gzip of the same tar stream, a few KB larger.", ""]
    par = r["sections"].get("parallel")
    if par:
        s = par["seconds"]
        out += ["**Parallel check** (`BENCH_SECTIONS=parallel`, merged into these results): the same backups of "
                f"{int(par['tasks']):,} tasks ({mb(par['psql_bytes'])}) while the bench's session had a higher "
                "scheduler weight than the other sessions (autogroup nice -15), so that the two cores were "
                f"mostly its own; load average {par['load_average_1min']:.1f}.", "",
                "| | dbctl (`tar cfz`) | native, 1 thread | native, 2 threads |", "| --- | --- | --- | --- |",
                f"| seconds | {spread(s['dbctl'])} | {spread(s['native_1_thread'])} | {spread(s['native_2_threads'])} |",
                f"| cores used | {par['cores_used']['dbctl']} | {par['cores_used']['native_1_thread']} | "
                f"{par['cores_used']['native_2_threads']} |",
                f"| speed-up vs dbctl | 1.00 | {par['speedup_native_1_thread_vs_dbctl']} | "
                f"**{par['speedup_native_2_threads_vs_dbctl']}** |", ""]
        if par.get("speedup_native_2_threads_before_vs_dbctl"):
            out += [f"The writer before the fix (commit `{baseline(r)}`, 2 threads, "
                    f"same check): {spread(s['native_2_threads_before'])}, "
                    f"{par['cores_used']['native_2_threads_before']} cores, "
                    f"{par['speedup_native_2_threads_before_vs_dbctl']}x dbctl; after: "
                    f"{par['speedup_native_2_threads_vs_dbctl']}x.", ""]
    return out


def downtime_section(r: dict) -> list[str]:
    dt = r["sections"].get("downtime")
    if not dt:
        return []
    out = ["## 2. Upgrade downtime", "",
           "| tasks | migration | bare restart | restart + migration | role window | **ratio** | bare switch | "
           "role / bare switch | role with backup | with backup / (restart + migration) |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key in sizes_of(dt):
        e = dt[key]
        s = e["seconds"]
        out.append(f"| {int(key):,} | {spread(s['migration'])} | {spread(s['bare_restart'])} | "
                   f"{fmt(e['baseline_restart_plus_migration_s'])} s | {spread(s['role'])} | "
                   f"**{e['ratio_role_vs_restart_plus_migration']}** | {spread(s['bare_switch'])} | "
                   f"{e['ratio_role_vs_bare_switch']} | {spread(s['role_with_backup'])} | "
                   f"{e['ratio_role_with_backup_vs_restart_plus_migration']} |")
    before = [(k, e) for k, e in dt.items() if "ratio_role_before_vs_restart_plus_migration" in e]
    for key, e in before:
        out += ["", f"Before the fixes (commit `{baseline(r)}`, same run, {int(key):,} tasks): role window "
                f"{spread(e['seconds']['role_before'])}, ratio {e['ratio_role_before_vs_restart_plus_migration']}; "
                f"after: {e['ratio_role_vs_restart_plus_migration']}."]
    out += ["", "The whole upgrade playbook (preflight of every engine, lock, report) takes "
            + ", ".join(f"{fmt(dt[k]['seconds']['role_playbook']['median'], 0)} s at {int(k):,} tasks" for k in sizes_of(dt))
            + "; only the window is downtime: before it the old engine serves, after it the new one.", ""]
    return out


def fleet_section(r: dict) -> list[str]:
    fl = r["sections"].get("fleet")
    if not fl:
        return []
    base = fl["seconds"]["1@5"]["median"]
    out = ["## 3. Fleet scaling", "",
           f"`playbooks/backup.yml` over N running engines of {fl['tasks_per_engine']:,} tasks each.", "",
           "| engines | forks | playbook time | / 1 engine |", "| --- | --- | --- | --- |"]
    for key, stat in sorted(fl["seconds"].items(), key=lambda kv: (int(kv[0].split("@")[0]), -int(kv[0].split("@")[1]))):
        n, forks = key.split("@")
        out.append(f"| {n} | {forks} | {spread(stat)} | {stat['median'] / base:.2f} |")
    out += ["", "Forks: ansible runs a task on at most `forks` hosts at a time (default 5). With more engines than"
            " forks every task takes a second round; set `forks` in ansible.cfg (or `--forks`) to at least the"
            " number of engines a play touches at once. The bench passes `--forks`.", ""]
    return out


def overhead_section(r: dict) -> list[str]:
    ov = r["sections"].get("overhead")
    if not ov:
        return []
    s = ov["seconds"]
    out = ["## 4. Orchestration overhead (downgrade)", "",
           f"One engine of {ov['tasks']:,} tasks, upgraded to {r['settings']['to_version']} (running), downgraded to "
           f"{r['settings']['from_version']} with a backup made before the upgrade.", "",
           "| variant | time | / script |", "| --- | --- | --- |",
           f"| bash script (nine steps) | {spread(s['script'])} | 1.00 |",
           f"| downgrade playbook | {spread(s['playbook'])} | **{ov['ratio_playbook_vs_script']}** |"]
    if "playbook_verify_archive" in s:
        out.append(f"| downgrade playbook, `downgrade_verify=archive` | {spread(s['playbook_verify_archive'])} | "
                   f"{ov['ratio_playbook_verify_archive_vs_script']} |")
    if "playbook_before" in s:
        out.append(f"| downgrade playbook before the fixes (`{baseline(r)}`) | "
                   f"{spread(s['playbook_before'])} | {ov['ratio_playbook_before_vs_script']} |")
    prof = ov["profile"].get("playbook")
    if prof:
        out += ["", "Profile (bench/callback_plugins/task_timer.py, median per task over the repetitions; the "
                "20 slowest tasks):", "", "| task | module | seconds |", "| --- | --- | --- |"]
        for task in sorted(prof["tasks"], key=lambda t: -t["seconds"])[:20]:
            out.append(f"| {task['task'].replace('|', '/')} | `{task['action']}` | {task['seconds']:.2f} |")
        out += ["", "By kind: " + ", ".join(f"{k}: {fmt(v, 1)} s" for k, v in profile_groups(prof).items()) + "."]
    out += before_after_section(r)
    out.append("")
    return out


def task_seconds(profile: dict, words: str) -> float:
    """Sum of the median seconds of the profile's tasks whose name contains `words`."""
    return sum(t["seconds"] for t in profile["tasks"] if words in t["task"])


def before_after_section(r: dict) -> list[str]:
    """The downgrade profile before the fixes (BENCH_BASELINE_REF) beside the one after, same run."""
    ov = r["sections"].get("overhead", {})
    after, before = ov.get("profile", {}).get("playbook"), ov.get("profile", {}).get("playbook_before")
    if not (after and before):
        return []
    out = ["", f"Before (`{baseline(r)}`) and after, same run, median seconds per kind of task and for the tasks "
           "the fixes touched:", "", "| | before | after | after / before |", "| --- | --- | --- | --- |"]
    rows = []
    ga, gb = profile_groups(after), profile_groups(before)
    for key in sorted(set(ga) | set(gb), key=lambda k: -gb.get(k, 0.0)):
        rows.append((key, gb.get(key, 0.0), ga.get(key, 0.0)))
    for label, words in (("Step 4 - destroy (reads the backup before / trusts the first read after)", "Step 4"),
                         ("Step 5 - restore (the same)", "Step 5"),
                         ("the report role's tasks", "renderfarm.tractor.report")):
        rows.append((label, task_seconds(before, words), task_seconds(after, words)))
    rows.append(("whole playbook (callback total)", before["total_seconds"], after["total_seconds"]))
    for label, b, a in rows:
        out.append(f"| {label} | {fmt(b, 2)} | {fmt(a, 2)} | {fmt(a / b, 2) if b else '-'} |")
    return out


def growth_section(r: dict) -> list[str]:
    gr = r["sections"].get("growth")
    if not gr:
        return []
    out = ["## 5. Growth", "",
           "Least-squares line through every repetition (seconds against tasks).", "",
           "| what | slope (s per 100k tasks) | intercept | R² | medians by size |", "| --- | --- | --- | --- | --- |"]
    for name, fit in gr.items():
        medians = ", ".join(f"{int(k):,}: {v:.2f} s" for k, v in sorted(fit["medians"].items(), key=lambda kv: int(kv[0])))
        out.append(f"| {name.replace('_', ' ')} | {fit['slope_s_per_100k_tasks']} | {fit['intercept_s']} s | "
                   f"{fit['r2']} | {medians} |")
    out.append("")
    return out


def fixes_section(r: dict) -> list[str]:
    ov = r["sections"].get("overhead", {})
    before_after = ""
    if "ratio_playbook_before_vs_script" in ov:
        before_after = (f" Downgrade playbook / script in this run: {ov['ratio_playbook_before_vs_script']} with"
                        f" `{baseline(r)}` (before), {ov['ratio_playbook_vs_script']} with this commit (after);"
                        " the tables of section 4 split the difference by task.")
    return [
        "## What the bench changed, and what remains", "",
        "Fixed earlier in issue 8 (already in the baseline commit; measured by the first bench runs):",
        "",
        "* **Native backup writer** (`plugins/module_utils/tractor_targz.py`): every byte is copied once"
        " (the block buffer used to be grown and cut from the front), the tar is written in plain mode with"
        " a 1 MiB copy buffer. Same bytes out; on 226 MB of `psql/` the writer's CPU time fell from 8.5 to"
        " 6.3 CPU-s (1 thread, level 6).",
        "* **Upgrade without a backup** (`roles/upgrade/tasks/run.yml`): phase 4's `tractor_engine"
        " state=started` stops the old engine and starts the new one in one module run, so no task boundary"
        " lies inside the downtime.",
        "* **Polling** (`plugins/modules/tractor_engine.py`): health and exit waits look every 0.1 s (0.25 s"
        " through a service manager) instead of 0.5 s.",
        "* **retry_active** (downgrade step 2) read the active count from `ctrl?q=status` instead of listing"
        " every task of the queue. Since replaced: no field of `ctrl?q=status` but `rc` is documented, so step 2"
        " now lists the active tasks through `db?q=tractorselect` and waits until their commands have ended on"
        " their blades (docs/engine-interfaces.md); the downgrade timings above predate that wait.",
        "",
        "Fixed in this run's commit (the before/after above is measured against the baseline commit):",
        "",
        "* **Report without module runs**: the report role wrote each engine's record with `copy` (after a"
        " `file`), then found the records with `find` and wrote report.json/.md/.xml with a `copy` loop: about"
        " five module processes on the controller per playbook, each a Python start-up plus Ansible's module"
        " library. Now the records are read with the `fileglob` lookup and written by the new action plugin"
        " `renderfarm.tractor.tractor_report`, which runs inside ansible-playbook (atomic writes, only when"
        " the content differs, nothing written in check mode).",
        "* **The downgrade reads its backup once**: the verification before anything is destroyed reads the"
        " whole archive (sha256, every gzip CRC, tar walk) and restores it into a scratch PostgreSQL; steps 4"
        " and 5 used to read the whole archive again each. `tractor_db` now returns the file's identity"
        " (device, inode, size, mtime, ctime, taken before the read and unchanged after it) with the result,"
        " and with `verified_archive` steps 4 and 5 use that result while the identity is unchanged; the"
        " `.sha256` and manifest sidecars are still compared, and any change means a full read again. The"
        " rule that no job database is destroyed without a verified backup holds: the backup step 4 names is"
        " the one verified in full in the same run, unchanged since." + before_after,
        "* **Bench settings to copy**: `ansible_pipelining: true` for engine hosts (one process and no"
        " temporary module file per task), `forks` at least the number of engines a play runs on at once;"
        " the playbooks already skip fact gathering.",
        "",
        "Remaining (measured above, not changed):",
        "",
        "* Per-task cost. Each module task is a Python process that imports Ansible's module library; on this"
        " loaded machine a trivial module task costs seconds, about as much as several `tractor-dbctl` calls."
        " The downgrade has about twenty module tasks where the script has nine tool calls, and it does safety"
        " work the script does not (the scratch-restore verification, the lock, the preflight reads). That is"
        " most of the remaining ratio; merging steps into fewer modules would trade away the per-step"
        " reporting, check mode and failure handling the roles are built on.",
        "* The preflight runs twice per engine in the upgrade playbook (once for all engines, once per batch"
        " before the lock). The second read is kept on purpose: batches can start minutes after the first"
        " preflight, and the lock is taken on what is read then.",
        "* The native writer's tar is pure Python (about 2.7 CPU-s per 226 MB beside gzip's 6); on a busy"
        " host that share is not parallel.",
        "",
    ]


# --- chart ---------------------------------------------------------------------------------------------
def chart(r: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5))
    fig.suptitle(f"renderfarm.tractor bench {r['date'][:10]} ({r['machine'].get('cpus')} CPUs, shared machine; "
                 "medians, bars = min-max)", fontsize=12)
    sec = r["sections"]

    ax = axes[0][0]
    tp = sec.get("throughput")
    if tp:
        keys = sizes_of(tp)
        methods = [("floor", "I/O floor (tar, no gzip)"), ("dbctl", "tractor-dbctl --backup"),
                   ("native", "native (direct)"), ("module", "native (tractor_db module)")]
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
        ax.set_title(f"1. Backup throughput: native {largest['speedup_native_vs_dbctl']}x dbctl "
                     f"(target 1.8x) at {int(keys[-1]) // 1000}k")
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
        for offset, key, label, color in ((0, "role", "upgrade role (no backup)", "#4169e1"),
                                          (width, "bare_switch", "bare switch (restart into new version)", "#bbbbbb")):
            med = [dt[k]["seconds"][key]["median"] for k in keys]
            err = [[m - dt[k]["seconds"][key]["min"] for m, k in zip(med, keys)],
                   [dt[k]["seconds"][key]["max"] - m for m, k in zip(med, keys)]]
            ax.bar([i + offset for i in x], med, width, yerr=err, capsize=3, label=label, color=color)
        for i, k in enumerate(keys):
            ax.annotate(f"{dt[k]['ratio_role_vs_restart_plus_migration']}x", (i, dt[k]["seconds"]["role"]["median"]),
                        ha="center", va="bottom", fontsize=9, xytext=(0, 6), textcoords="offset points")
        ax.set_xticks(list(x), [f"{int(k) // 1000}k tasks" for k in keys])
        ax.set_ylabel("engine unavailable (s)")
        ax.set_title("2. Upgrade downtime: role / (restart + migration), target <= 1.2x")
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
        ax.axhline(2 * one, color="red", linestyle=":", label="target: 2x one engine")
        ax.set_xticks(sorted({int(k.split("@")[0]) for k in fl["seconds"]}))
        ax.set_xlabel("engines in the play")
        ax.set_ylabel("backup playbook (s)")
        ax.set_ylim(bottom=0)
        ax.set_title(f"3. Fleet: {max(fl['engines'])} engines / 1 = {fl['ratio_6_over_1']}x (target <= 2x)")
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
            idx = labels.index("playbook")
            for (name, sec_) , color in zip(groups.items(), palette):
                ax.barh([f"playbook by kind"], [sec_], left=left, color=color, label=name)
                left += sec_
            ax.legend(fontsize=7, loc="lower right")
        ax.set_xlabel("seconds")
        ax.set_xlim(right=max(values) * 1.35)
        ax.set_title(f"4. Downgrade: playbook / script = {ov['ratio_playbook_vs_script']}x (target <= 1.5x)")
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
