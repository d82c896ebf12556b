#!/usr/bin/env python3
"""`make bench`: the collection measured against plain baselines, in one run, on this machine.

Sections (bench/README.md says more; docs/performance.md shows the last results):
  1 throughput  tractor_db's native backup vs `tractor-dbctl --backup` vs reading psql/ (I/O floor),
                and the restore side (`tar xfz` of each archive vs `tar xf` of a plain tar)
  2 downtime    the URL API's unavailable window during the upgrade playbook vs a bare restart
                plus the schema migration
  3 fleet       the backup playbook over 1, 3 and 6 engines
  4 overhead    the downgrade playbook vs bench/baseline/downgrade.sh (the same nine steps),
                with a per-task profile
  5 growth      backup, restore and schema-upgrade time against the number of tasks (linear fit)

Settings (environment): BENCH_SIZES (tasks per job database, default 10000,100000,500000),
BENCH_REPEATS (repetitions, default 3 for the largest size and 5 for the others; 3 for fleet and
overhead), BENCH_BACKUP_REPEATS (upgrades with a backup per size, default 2), BENCH_FLEET_REPEATS,
BENCH_FLEET (default 1,3,6), BENCH_SECTIONS (default all), BENCH_VERIFY_ARCHIVE=1 (section 4 also
runs the playbook with downgrade_verify=archive), BENCH_BASELINE_REF (a git ref: sections 2 and 4
also run that version of the collection, for before/after), BENCH_WORLD (default
/var/tmp/tractor-bench), BENCH_KEEP=1 keeps the world's sites and archives.
Results: bench/results/<date>.json, docs/performance.md and docs/performance.png (bench/report.py).
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as B  # noqa: E402

# Each headline is a median ratio with both sides measured interleaved in the same run.
TARGETS = {
    # the upgrade role with its default backup (copy while stopped, archive after the switch)
    "upgrade_downtime_with_backup_ratio": ("<=", 1.3),
    "upgrade_downtime_ratio": ("<=", 1.2),
    "backup_window_over_copy": ("<=", 1.5),
    # the backup step as the roles run it (tractor_db, default verification)
    "backup_module_speedup_vs_dbctl": (">=", 1.5),
    # the writer alone, without Ansible, verification or fsync
    "backup_native_writer_speedup_vs_dbctl": (">=", 1.8),
    "downgrade_window_vs_script": ("<=", 1.5),
    "downgrade_overhead_vs_script": ("<=", 2.5),
    "fleet_6_over_1": ("<=", 2.0),
}


def settings() -> dict:
    sizes = [int(s) for s in os.environ.get("BENCH_SIZES", "10000,100000,500000").replace(" ", "").split(",") if s]
    sizes = sorted(set(sizes))
    if len(sizes) < 1:
        raise SystemExit("BENCH_SIZES names no size")
    fleet = sorted({int(s) for s in os.environ.get("BENCH_FLEET", "1,3,6").split(",") if s})
    sections = os.environ.get("BENCH_SECTIONS", "throughput,downtime,fleet,overhead,growth").replace(" ", "").split(",")
    return {
        "sizes": sizes, "fleet": fleet, "sections": sections,
        "repeats": int(os.environ["BENCH_REPEATS"]) if os.environ.get("BENCH_REPEATS") else None,
        "baseline_ref": os.environ.get("BENCH_BASELINE_REF") or None,
        "tasks_per_job": B.TASKS_PER_JOB, "from_version": B.OLD, "to_version": B.NEW,
        "world": str(B.WORLD), "poll_interval_s": 0.05,
    }


def repeats(cfg: dict, size: int, largest_default: int = 3, other_default: int = 3) -> int:
    if cfg["repeats"]:
        return cfg["repeats"]
    return largest_default if size == max(cfg["sizes"]) else other_default


def rotate(items: list, index: int) -> list:
    """Interleave the variants, each repetition starting with another one (drift hits all alike)."""
    index %= len(items)
    return items[index:] + items[:index]


# --- 1. backup and restore throughput ---------------------------------------------------------------
def section_throughput(cfg: dict) -> dict:
    out = {}
    work = B.WORLD / "throughput"
    B.rmtree(work)
    work.mkdir(parents=True)
    work.chmod(0o777)  # tractor-dbctl writes its archive as the EngineOwner
    for size in cfg["sizes"]:
        golden = B.golden(size)
        src = golden.db_dir
        nbytes = B.dir_bytes(src)
        native, dbctl = work / "native.tgz", work / "dbctl.tgz"
        plain = work / "plain.tar"
        B.run(["tar", "cf", plain, "-C", src.parent, src.name])
        # as the roles run it: the default verification (a scratch restore), the action plugin's async job
        module_args = {"install_dir": str(B.PREFIX / f"Tractor-{B.OLD}"), "config_dir": str(golden.config_dir),
                       "state": "backup", "path": str(work / "module.tgz"), "force": True}
        module_argv = [B.VENV_BIN / "ansible", "localhost", "-c", "local", "-m", "renderfarm.tractor.tractor_db",
                       "-a", json.dumps(module_args), "-e", f"ansible_python_interpreter={B.HOST_PYTHON}"]

        cpu = {k: [] for k in ("floor", "dbctl", "native", "module")}

        def floor():
            return B.timed_cpu(["bash", "-c", f"tar cf - -C {src.parent} {src.name} | wc -c"])

        def run_dbctl():
            dbctl.unlink(missing_ok=True)
            return B.timed_cpu(B.as_owner([B.tool(B.OLD, "tractor-dbctl"), "--configdir", golden.config_dir,
                                           "--backup", dbctl]))

        def run_native():
            return B.timed_cpu([B.HOST_PYTHON, B.BENCH / "native_backup.py", src, native])

        def run_module():
            return B.timed_cpu(module_argv, env=B.ansible_env())

        def untar(archive: Path, flags: str):
            scratch = work / "restore"
            B.rmtree(scratch)
            scratch.mkdir()
            seconds = B.timed(["tar", flags, archive, "-C", scratch])[0]
            B.rmtree(scratch)
            return seconds

        times = {k: [] for k in ("floor", "dbctl", "native", "module", "restore_floor", "restore_native",
                                 "restore_dbctl")}
        loads = []
        variants = [("floor", floor), ("dbctl", run_dbctl), ("native", run_native), ("module", run_module)]
        n = repeats(cfg, size)
        B.log(f"throughput: {size} tasks, {nbytes / 1e6:.0f} MB in psql/, {n} repetitions")
        for rep in range(n):
            loads.append(B.load_average())
            for name, func in rotate(variants, rep):
                seconds, cpu_seconds = func()
                times[name].append(seconds)
                cpu[name].append(cpu_seconds)
            restores = [("restore_floor", plain, "xf"), ("restore_native", native, "xfz"), ("restore_dbctl", dbctl, "xfz")]
            for name, archive, flags in rotate(restores, rep):
                times[name].append(untar(archive, flags))
        stats = {k: B.summary(v) for k, v in times.items()}
        mb = nbytes / 1e6
        out[str(size)] = {
            "tasks": size, "psql_bytes": nbytes,
            "archive_bytes": {"native": native.stat().st_size, "dbctl": dbctl.stat().st_size,
                              "module": (work / "module.tgz").stat().st_size},
            "seconds": stats,
            "mb_per_s": {k: round(mb / v["median"], 1) for k, v in stats.items()},
            "speedup_native_vs_dbctl": B.ratio(stats["dbctl"], stats["native"]),
            "speedup_module_vs_dbctl": B.ratio(stats["dbctl"], stats["module"]),
            "native_over_floor": B.ratio(stats["native"], stats["floor"]),
            "dbctl_over_floor": B.ratio(stats["dbctl"], stats["floor"]),
            "restore_native_vs_dbctl": B.ratio(stats["restore_native"], stats["restore_dbctl"]),
            "cpu_seconds": {k: B.summary(v) for k, v in cpu.items()},
            # CPU seconds per wall second: how many cores a method kept busy
            "cores_used": {k: round(B.summary(cpu[k])["median"] / stats[k]["median"], 2) for k in cpu},
            "load_average_1min": loads,
        }
        B.log(f"  native {stats['native']['median']:.2f} s, dbctl {stats['dbctl']['median']:.2f} s, "
              f"module {stats['module']['median']:.2f} s, floor {stats['floor']['median']:.2f} s "
              f"-> native {out[str(size)]['speedup_native_vs_dbctl']}x dbctl")
        for path in (native, dbctl, plain, work / "module.tgz"):
            path.unlink(missing_ok=True)
        for path in work.glob("module.tgz.*"):
            path.unlink()
    return out


# --- 1b. parallel check (optional) ------------------------------------------------------------------
def section_parallel(cfg: dict, collections_before: Path | None) -> dict:
    """Native writer on 1 and 2 threads vs dbctl while this session has priority over the others.

    Only with BENCH_SECTIONS=parallel: with sched_autogroup the kernel shares the CPUs between
    sessions, so on a shared machine the bench's session gets a fraction of the cores whatever its
    thread count. For about a minute this raises the session's autogroup weight (nice -15), so that
    the two cores are mostly the bench's, and measures what the parallel compressor does with them.
    """
    size = sorted(cfg["sizes"])[len(cfg["sizes"]) // 2]
    golden = B.golden(size)
    src = golden.db_dir
    work = B.WORLD / "parallel"
    B.rmtree(work)
    work.mkdir(parents=True)
    work.chmod(0o777)
    autogroup = Path("/proc/self/autogroup")
    variants = [
        ("dbctl", lambda: B.timed_cpu(B.as_owner([B.tool(B.OLD, "tractor-dbctl"), "--configdir", golden.config_dir,
                                                  "--backup", work / f"d{time.monotonic_ns()}.tgz"]))),
        ("native_1_thread", lambda: B.timed_cpu([B.HOST_PYTHON, B.BENCH / "native_backup.py", src, work / "n1.tgz", 1])),
        ("native_2_threads", lambda: B.timed_cpu([B.HOST_PYTHON, B.BENCH / "native_backup.py", src, work / "n2.tgz", 2])),
    ]
    if collections_before is not None:
        variants.append(("native_2_threads_before", lambda: B.timed_cpu(
            [B.HOST_PYTHON, B.BENCH / "native_backup.py", src, work / "nb.tgz", 2],
            env=B.env(BENCH_COLLECTIONS=str(collections_before)))))
    times = {k: [] for k, _ in variants}
    cpu = {k: [] for k, _ in variants}
    n = repeats(cfg, size, 3, 3)
    B.log(f"parallel check: {size} tasks, {n} repetitions, session autogroup at nice -15")
    try:
        autogroup.write_text("-15")
        for rep in range(n):
            for name, func in rotate(variants, rep):
                wall, cpu_s = func()
                times[name].append(wall)
                cpu[name].append(cpu_s)
    finally:
        autogroup.write_text("0")
    B.rmtree(work)
    stats = {k: B.summary(v) for k, v in times.items()}
    return {"tasks": size, "psql_bytes": B.dir_bytes(src), "seconds": stats,
            "cpu_seconds": {k: B.summary(v) for k, v in cpu.items()},
            "cores_used": {k: round(B.summary(cpu[k])["median"] / stats[k]["median"], 2) for k in cpu},
            "speedup_native_2_threads_vs_dbctl": B.ratio(stats["dbctl"], stats["native_2_threads"]),
            "speedup_native_1_thread_vs_dbctl": B.ratio(stats["dbctl"], stats["native_1_thread"]),
            "speedup_native_2_threads_before_vs_dbctl": (B.ratio(stats["dbctl"], stats["native_2_threads_before"])
                                                         if "native_2_threads_before" in stats else None),
            "load_average_1min": os.getloadavg()[0]}


# --- 2. upgrade downtime -----------------------------------------------------------------------------
def playbook_window(site: B.Site, golden: B.Site, playbook: str, extra: dict, serves: str, tag: str,
                    collections: Path | None = None) -> dict:
    """A playbook run on a running engine of the old version, with a poller: the unavailable window
    until the engine serves ``serves``, the whole playbook's time and its per-task profile."""
    site.clone_from(golden)
    site.start_engine(B.OLD)
    inventory = B.write_inventory(B.WORLD / "inventories" / f"{site.name}.json", {site.name: site.inventory_vars(B.OLD)})
    timings = B.WORLD / "timings" / f"{tag}.json"
    timings.parent.mkdir(parents=True, exist_ok=True)
    with B.Poller(site.port) as poller:
        total = B.playbook(playbook, inventory, extra, collections=collections, timings=timings)
        poller.wait_until(serves)
    window = poller.window(serves)
    site.stop_everything()
    B.rmtree(B.WORLD / "backups" / site.name)
    return {"window": window, "playbook": total, "timings": json.loads(timings.read_text())}


def upgrade_window(site: B.Site, golden: B.Site, backup: bool, collections: Path | None, tag: str) -> dict:
    return playbook_window(site, golden, "upgrade.yml", {"upgrade_version": B.NEW, "upgrade_backup": backup},
                           B.NEW, f"upgrade-{tag}", collections)


def backup_window(site: B.Site, golden: B.Site, tag: str) -> dict:
    """The backup playbook with its defaults: the engine comes back on the same version."""
    return playbook_window(site, golden, "backup.yml", {}, B.OLD, f"backup-{tag}")


def section_downtime(cfg: dict, collections_before: Path | None) -> dict:
    out = {}
    bare, switch, role = B.Site("dt-bare"), B.Site("dt-switch"), B.Site("dt-role")
    for site in (bare, switch, role):
        site.write_config()
    restart = B.BENCH / "baseline" / "restart.sh"
    for size in cfg["sizes"]:
        golden = B.golden(size)
        n = int(os.environ.get("BENCH_DOWNTIME_REPEATS", "0")) or repeats(cfg, size, 3, 3)
        # the expensive variant (a backup and a scratch restore inside the window)
        n_backup = int(os.environ.get("BENCH_BACKUP_REPEATS", "0")) or n
        times = {k: [] for k in ("migration", "bare_restart", "bare_switch", "role", "role_playbook",
                                 "role_with_backup", "role_with_backup_playbook", "role_before", "role_before_playbook",
                                 "backup_window", "backup_playbook", "copy")}
        role_profiles = []

        def run_bare():
            bare.clone_from(golden)
            bare.dbctl(B.NEW, "--start")
            times["migration"].append(B.timed(B.as_owner([B.tool(B.NEW, "tractor-dbctl"), "--configdir",
                                                          bare.config_dir, "--upgrade"]))[0])
            bare.dbctl(B.NEW, "--stop")
            bare.start_engine(B.NEW)
            with B.Poller(bare.port) as poller:
                B.run([restart, B.PREFIX / f"Tractor-{B.NEW}", bare.config_dir, bare.pidfile, bare.log_file])
                poller.wait_until(B.NEW)
            times["bare_restart"].append(poller.window(B.NEW))
            bare.stop_everything()

        def run_switch():
            switch.clone_from(golden)
            switch.start_engine(B.OLD)
            with B.Poller(switch.port) as poller:
                B.run([restart, B.PREFIX / f"Tractor-{B.NEW}", switch.config_dir, switch.pidfile, switch.log_file])
                poller.wait_until(B.NEW)
            times["bare_switch"].append(poller.window(B.NEW))
            switch.stop_everything()

        def run_role():
            result = upgrade_window(role, golden, False, None, f"{size}")
            times["role"].append(result["window"])
            times["role_playbook"].append(result["playbook"])
            role_profiles.append(result["timings"])

        def run_backup():
            """The backup playbook with its defaults on a running engine: the window is the copy."""
            result = backup_window(role, golden, f"{size}")
            times["backup_window"].append(result["window"])
            times["backup_playbook"].append(result["playbook"])

        def run_copy():
            """The baseline of the backup window: a plain cp -a of the stopped psql/."""
            target = B.WORLD / "copy-baseline"
            B.rmtree(target)
            times["copy"].append(B.timed(["cp", "-a", golden.db_dir, target])[0])
            B.rmtree(target)

        def run_role_before():
            result = upgrade_window(role, golden, False, collections_before, f"{size}-before")
            times["role_before"].append(result["window"])
            times["role_before_playbook"].append(result["playbook"])

        variants = [run_bare, run_switch, run_role, run_backup, run_copy]
        if collections_before is not None and size == min(cfg["sizes"]):
            variants.append(run_role_before)
        B.log(f"downtime: {size} tasks, {n} repetitions ({n_backup} with the backup)")
        for rep in range(n):
            for func in rotate(variants, rep):
                func()
            if rep < n_backup:
                result = upgrade_window(role, golden, True, None, f"{size}-backup")
                times["role_with_backup"].append(result["window"])
                times["role_with_backup_playbook"].append(result["playbook"])
        stats = {k: B.summary(v) for k, v in times.items() if v}
        baseline = stats["bare_restart"]["median"] + stats["migration"]["median"]
        entry = {
            "tasks": size, "seconds": stats,
            "baseline_restart_plus_migration_s": round(baseline, 4),
            "ratio_role_vs_restart_plus_migration": round(stats["role"]["median"] / baseline, 3),
            "ratio_role_vs_bare_switch": B.ratio(stats["role"], stats["bare_switch"]),
            "ratio_role_with_backup_vs_restart_plus_migration": round(stats["role_with_backup"]["median"] / baseline, 3),
            "ratio_backup_window_over_copy": B.ratio(stats["backup_window"], stats["copy"]),
            "role_profile": role_profiles[len(role_profiles) // 2] if role_profiles else None,
        }
        if "role_before" in stats:
            entry["ratio_role_before_vs_restart_plus_migration"] = round(stats["role_before"]["median"] / baseline, 3)
        out[str(size)] = entry
        B.log(f"  window: role {stats['role']['median']:.2f} s, bare restart {stats['bare_restart']['median']:.2f} s "
              f"+ migration {stats['migration']['median']:.2f} s, bare switch {stats['bare_switch']['median']:.2f} s, "
              f"role+backup {stats['role_with_backup']['median']:.2f} s -> {entry['ratio_role_vs_restart_plus_migration']}x; "
              f"backup window {stats['backup_window']['median']:.2f} s, cp -a {stats['copy']['median']:.2f} s "
              f"-> {entry['ratio_backup_window_over_copy']}x")
    for site in (bare, switch, role):
        site.remove()
    return out


# --- 3. fleet scaling ---------------------------------------------------------------------------------
def section_fleet(cfg: dict) -> dict:
    size = min(cfg["sizes"])
    golden = B.golden(size)
    counts = cfg["fleet"]
    sites = [B.Site(f"fleet{i}") for i in range(1, max(counts) + 1)]
    for site in sites:
        site.write_config()
        site.clone_from(golden)
        site.start_engine(B.OLD)
    n = int(os.environ.get("BENCH_FLEET_REPEATS", "0")) or repeats(cfg, size, 3, 3)
    # forks: ansible's default is 5; the bench sets it to the number of engines (at least 5).
    runs = [(count, max(5, count)) for count in counts]
    times = {f"{count}@{forks}": [] for count, forks in runs}
    if max(counts) > 5:  # ansible's default forks, for comparison: once
        times[f"{max(counts)}@5"] = []
    profiles = {}
    B.log(f"fleet: backup playbook over {counts} engines ({size} tasks each), {n} repetitions")
    for rep in range(n):
        extra = [(max(counts), 5)] if rep == 0 and max(counts) > 5 else []
        for count, forks in rotate(runs, rep) + extra:
            chosen = sites[:count]
            inventory = B.write_inventory(B.WORLD / "inventories" / f"fleet-{count}.json",
                                          {s.name: s.inventory_vars(B.OLD) for s in chosen},
                                          {"backup_keep_last": 2})
            timings = B.WORLD / "timings" / f"fleet-{count}-{forks}.json"
            seconds = B.playbook("backup.yml", inventory, {}, timings=timings, forks=forks)
            times[f"{count}@{forks}"].append(seconds)
            profiles[f"{count}@{forks}"] = json.loads(timings.read_text())
    stats = {k: B.summary(v) for k, v in times.items()}
    top = max(counts)
    result = {
        "tasks_per_engine": size, "engines": counts, "seconds": stats,
        "forks_note": "N@F = N engines with --forks F; the bench sets forks to max(5, engines)",
        "ratio_6_over_1": B.ratio(stats[f"{top}@{max(5, top)}"], stats["1@5"]),
        "ratio_6_over_1_default_forks": B.ratio(stats[f"{top}@5"], stats["1@5"]) if f"{top}@5" in stats else None,
        "profiles": profiles,
    }
    B.log(f"  {top} engines / 1 engine: {result['ratio_6_over_1']}x (default forks: {result['ratio_6_over_1_default_forks']}x)")
    for site in sites:
        site.remove()
    B.rmtree(B.WORLD / "backups")
    (B.WORLD / "backups").mkdir()
    return result


# --- 4. orchestration overhead (downgrade) --------------------------------------------------------------
def section_overhead(cfg: dict, collections_before: Path | None) -> dict:
    size = min(cfg["sizes"])
    golden = B.golden(size)
    jidcounter = size // B.TASKS_PER_JOB
    # The backup to restore: made once with the module (native, with its .sha256 and manifest).
    fixed = B.WORLD / "fixed-backups"
    B.rmtree(fixed)
    fixed.mkdir(parents=True)
    B.chown_tree(fixed)
    archive = fixed / f"golden-{size}-{B.OLD}.tgz"
    B.run([B.VENV_BIN / "ansible", "localhost", "-c", "local", "-m", "renderfarm.tractor.tractor_db", "-a",
           json.dumps({"install_dir": str(B.PREFIX / f"Tractor-{B.OLD}"), "config_dir": str(golden.config_dir),
                       "state": "backup", "path": str(archive), "verify": "archive"}),
           "-e", f"ansible_python_interpreter={B.HOST_PYTHON}"], env=B.ansible_env())
    site = B.Site("dg")
    site.write_config()
    inventory = B.write_inventory(B.WORLD / "inventories" / "dg.json", {"dg": site.inventory_vars(B.NEW)})

    def setup():
        """The engine after an upgrade: 2.2 on the migrated database, with jobs spooled since the backup."""
        site.clone_from(golden)
        site.start_engine(B.NEW)
        B.write_cmd_logs(site.data_dir / "cmd-logs", range(jidcounter + 1, jidcounter + 6))
        B.chown_tree(site.data_dir / "cmd-logs")

    def check():
        ok, version = B.probe(site.port)
        if not ok or version != B.OLD:
            raise RuntimeError(f"after the downgrade the engine answers {ok} {version}")
        leftover = [p for p in (site.data_dir / "cmd-logs").glob("*/J*") if int(p.name[1:]) > jidcounter]
        if leftover:
            raise RuntimeError(f"command logs above jid {jidcounter} remain: {leftover}")
        site.stop_everything()

    def playbook(verify: str, collections: Path | None, tag: str) -> tuple[float, dict]:
        setup()
        timings = B.WORLD / "timings" / f"downgrade-{tag}.json"
        # downgrade_restore=always: the script restores, so the playbook must do the same steps (by
        # default it keeps a database whose schema is the backup's, as 2.4's is 2.2's)
        with B.Poller(site.port) as poller:
            seconds = B.playbook("downgrade.yml", inventory,
                                 {"downgrade_version": B.OLD, "downgrade_backup": str(archive),
                                  "downgrade_verify": verify, "downgrade_restore": "always"},
                                 collections=collections, timings=timings)
            poller.wait_until(B.OLD)
        windows[tag].append(poller.window(B.OLD))
        check()
        return seconds, json.loads(timings.read_text())

    def script() -> float:
        setup()
        with B.Poller(site.port) as poller:
            seconds = B.timed([B.BENCH / "baseline" / "downgrade.sh", B.PREFIX / f"Tractor-{B.OLD}",
                               site.config_dir, site.data_dir, site.port, archive, B.OLD])[0]
            poller.wait_until(B.OLD)
        windows["script"].append(poller.window(B.OLD))
        check()
        return seconds

    times = {k: [] for k in ("script", "playbook", "playbook_verify_archive", "playbook_before")}
    # the engine's unavailable window (step 3's kill until the old version answers), by variant tag
    windows = {k: [] for k in ("script", "after", "after-archive", "before")}
    profiles = {k: [] for k in times}
    variants = [("script", lambda: (script(), None)),
                ("playbook", lambda: playbook("restore", None, "after"))]
    if os.environ.get("BENCH_VERIFY_ARCHIVE"):
        # the same playbook with downgrade_verify=archive (no scratch restore of the backup)
        variants.append(("playbook_verify_archive", lambda: playbook("archive", None, "after-archive")))
    if collections_before is not None:
        variants.append(("playbook_before", lambda: playbook("restore", collections_before, "before")))
    n = repeats(cfg, size, 3, 3)
    B.log(f"overhead: downgrade playbook vs script on {size} tasks, {n} repetitions")
    for rep in range(n):
        for name, func in rotate(variants, rep):
            seconds, profile = func()
            times[name].append(seconds)
            if profile:
                profiles[name].append(profile)
    stats = {k: B.summary(v) for k, v in times.items() if v}
    window_stats = {k: B.summary(v) for k, v in windows.items() if v}
    result = {"tasks": size, "archive": str(archive), "seconds": stats, "window_seconds": window_stats,
              "ratio_playbook_vs_script": B.ratio(stats["playbook"], stats["script"]),
              "ratio_window_playbook_vs_script": B.ratio(window_stats["after"], window_stats["script"]),
              "profile": {k: aggregate_profile(v) for k, v in profiles.items() if v}}
    if "playbook_verify_archive" in stats:
        result["ratio_playbook_verify_archive_vs_script"] = B.ratio(stats["playbook_verify_archive"], stats["script"])
    if "playbook_before" in stats:
        result["ratio_playbook_before_vs_script"] = B.ratio(stats["playbook_before"], stats["script"])
    B.log(f"  playbook {stats['playbook']['median']:.2f} s, script {stats['script']['median']:.2f} s -> "
          f"{result['ratio_playbook_vs_script']}x; window {window_stats['after']['median']:.2f} s against "
          f"{window_stats['script']['median']:.2f} s -> {result['ratio_window_playbook_vs_script']}x"
          + (f" (before: {result['ratio_playbook_before_vs_script']}x)" if "playbook_before" in stats else ""))
    site.remove()
    return result


def aggregate_profile(runs: list[dict]) -> dict:
    """Median seconds per task (by position) over the repetitions, and the total."""
    tasks = []
    for index, record in enumerate(runs[0]["tasks"]):
        values = [r["tasks"][index]["seconds"] for r in runs if index < len(r["tasks"])
                  and r["tasks"][index]["task"] == record["task"]]
        tasks.append({"task": record["task"], "action": record["action"], "status": record["status"],
                      "seconds": round(sorted(values)[len(values) // 2], 3)})
    totals = sorted(r["total_seconds"] for r in runs)
    return {"total_seconds": totals[len(totals) // 2], "tasks": tasks}


# --- 5. growth -------------------------------------------------------------------------------------------
def section_growth(throughput: dict, downtime: dict) -> dict:
    series = {}

    def add(name: str, source: dict, key: str):
        xs, ys = [], []
        for entry in source.values():
            for value in entry["seconds"].get(key, {}).get("values", []):
                xs.append(entry["tasks"])
                ys.append(value)
        if len(set(xs)) >= 2:
            series[name] = dict(B.linear_fit(xs, ys), sizes=sorted(set(xs)),
                                medians={str(e["tasks"]): e["seconds"][key]["median"] for e in source.values()
                                         if key in e["seconds"]})

    if throughput:
        add("backup_native", throughput, "native")
        add("backup_dbctl", throughput, "dbctl")
        add("backup_module", throughput, "module")
        add("restore_native_archive", throughput, "restore_native")
        add("restore_dbctl_archive", throughput, "restore_dbctl")
    if downtime:
        add("schema_upgrade", downtime, "migration")
        add("upgrade_window_role", downtime, "role")
        add("upgrade_window_role_with_backup", downtime, "role_with_backup")
        add("backup_window", downtime, "backup_window")
        add("copy_baseline", downtime, "copy")
    return series


# --- headline --------------------------------------------------------------------------------------------
def headline(results: dict) -> dict:
    sections = results["sections"]
    values = {}
    if "downtime" in sections:
        # the worst size
        values["upgrade_downtime_with_backup_ratio"] = max(e["ratio_role_with_backup_vs_restart_plus_migration"]
                                                           for e in sections["downtime"].values())
        values["upgrade_downtime_ratio"] = max(e["ratio_role_vs_restart_plus_migration"]
                                               for e in sections["downtime"].values())
        values["backup_window_over_copy"] = max(e["ratio_backup_window_over_copy"]
                                                for e in sections["downtime"].values())
    if "throughput" in sections:
        largest = str(max(int(k) for k in sections["throughput"]))
        values["backup_module_speedup_vs_dbctl"] = sections["throughput"][largest]["speedup_module_vs_dbctl"]
        values["backup_native_writer_speedup_vs_dbctl"] = sections["throughput"][largest]["speedup_native_vs_dbctl"]
    if "overhead" in sections:
        values["downgrade_window_vs_script"] = sections["overhead"]["ratio_window_playbook_vs_script"]
        values["downgrade_overhead_vs_script"] = sections["overhead"]["ratio_playbook_vs_script"]
    if "fleet" in sections:
        values["fleet_6_over_1"] = sections["fleet"]["ratio_6_over_1"]
    return values


def main() -> int:
    cfg = settings()
    B.WORLD.mkdir(parents=True, exist_ok=True)
    B.WORLD.chmod(0o755)
    (B.WORLD / "ansible-tmp").mkdir(exist_ok=True)
    (B.WORLD / "backups").mkdir(exist_ok=True)
    B.DBCTL_LOCK.touch()
    B.DBCTL_LOCK.chmod(0o666)
    B.stop_leftovers()
    started = time.time()
    B.log(f"sizes {cfg['sizes']}, sections {cfg['sections']}, world {B.WORLD}")
    B.install(B.OLD)
    B.install(B.NEW)
    prepared = {}
    for size in cfg["sizes"]:
        B.golden(size)
        prepared[str(size)] = B.prepared_info(size)
    before = B.collection_tree_at(cfg["baseline_ref"]) if cfg["baseline_ref"] else None
    results = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "git": B.run(["git", "rev-parse", "--short", "HEAD"], check=False).stdout.strip(),
        "git_dirty": bool(B.run(["git", "status", "--porcelain", "--", "plugins", "roles", "playbooks"],
                                check=False).stdout.strip()),
        "baseline_commit": (B.run(["git", "rev-parse", "--short", cfg["baseline_ref"]]).stdout.strip()
                            if cfg["baseline_ref"] else None),
        "machine": B.machine(), "settings": cfg, "prepared": prepared, "targets": TARGETS,
        "load_average_start": list(os.getloadavg()), "sections": {},
    }
    load_start = results["load_average_start"]
    merge_into = os.environ.get("BENCH_MERGE_INTO")
    if merge_into:  # add this run's sections to an earlier results file
        earlier = json.loads(Path(merge_into).read_text())
        earlier["sections"].update({k: None for k in cfg["sections"]})
        earlier.setdefault("merged_runs", []).append({k: results[k] for k in ("date", "git", "settings")})
        if not earlier.get("baseline_commit"):  # results written before the bench recorded it
            earlier["baseline_commit"] = results["baseline_commit"]
        results = dict(earlier, load_average_start=earlier["load_average_start"])
    sections = results["sections"]
    if "throughput" in cfg["sections"]:
        sections["throughput"] = section_throughput(cfg)
    if "parallel" in cfg["sections"]:
        sections["parallel"] = section_parallel(cfg, before)
    if "downtime" in cfg["sections"]:
        sections["downtime"] = section_downtime(cfg, before)
    if "fleet" in cfg["sections"]:
        sections["fleet"] = section_fleet(cfg)
    if "overhead" in cfg["sections"]:
        sections["overhead"] = section_overhead(cfg, before)
    if "growth" in cfg["sections"]:
        sections["growth"] = section_growth(sections.get("throughput", {}), sections.get("downtime", {}))
    for name in [k for k, v in sections.items() if v is None]:
        del sections[name]
    # which run measured each section (a file may hold sections of several runs, merged)
    this_run = {"git": B.run(["git", "rev-parse", "--short", "HEAD"], check=False).stdout.strip(),
                "date": datetime.datetime.now().isoformat(timespec="seconds"),
                "load_average_start": load_start}
    results.setdefault("section_runs", {}).update({name: this_run for name in cfg["sections"] if name in sections})
    if not merge_into:
        results["load_average_end"] = list(os.getloadavg())
        results["duration_s"] = round(time.time() - started, 1)
    values = headline(results)
    results.update(values)
    results["headline"] = {
        name: {"value": value, "target": f"{TARGETS[name][0]} {TARGETS[name][1]}",
               "met": (value >= TARGETS[name][1]) if TARGETS[name][0] == ">=" else (value <= TARGETS[name][1])}
        for name, value in values.items()}
    out_dir = B.BENCH / "results"
    out_dir.mkdir(exist_ok=True)
    path = Path(merge_into) if merge_into else out_dir / f"{datetime.date.today().isoformat()}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    B.log(f"results: {path} ({results['duration_s']:.0f} s)")
    for name, value in results["headline"].items():
        B.log(f"  {name} = {value['value']} (target {value['target']}: {'met' if value['met'] else 'MISSED'})")
    import report  # noqa: E402  (needs matplotlib from bench/requirements.txt)
    report.write(results, path)
    if not os.environ.get("BENCH_KEEP"):
        B.rmtree(B.WORLD / "sites")
        B.rmtree(B.WORLD / "throughput")
    return 0


if __name__ == "__main__":
    sys.exit(main())
