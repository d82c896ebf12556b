"""Faults during an upgrade 2.2 -> 2.4: one run of playbooks/upgrade.yml, one fault per engine.

(Fault 13, an engine that ignores SIGTERM, is in test_module_faults.py: the roles stop engines with
the module's default stop_timeout of 60 s, which would add a minute to this run.)

Four emulated engines (each a site of its own: config, data dir, PostgreSQL, ports) run 2.2 with
jobs in their databases.  Each gets exactly one fault; the playbook upgrades all four in one batch
(``upgrade_serial: ["100%"]``), so the engines do not influence one another (the rollout rule acts
only between batches).  Then each test checks its own engine, independently of Ansible:

* (a) the run's output and the engine's report entry name the cause;
* (b) the engine is in the state documented for its fault (docs/reliability.md);
* (c) the job database holds the same jids, tasks and jidcounter as before the run (read with SQL
  through tractor-dbctl --exec-sql), and the backup directory holds no partial file.
"""

from __future__ import annotations

import os
import signal

import pytest

from tractor_farm import (
    Watcher, backup_problems, backups, engine_log, engine_processes, job_records, serving_version,
)
from tractor_sites import EngineProc

# One worker runs the whole module (see conftest.py): its tests share one run.
pytestmark = pytest.mark.xdist_group("upgrade-round")

FAULTS = {
    "killed": "SIGKILL of the new engine during its schema upgrade",
    "schema": "schema-upgrade-fails",
    "unhealthy": "engine-unhealthy (the new engine only)",
    "blade": "blade-loses-engine",
}
UNHEALTHY_TIMEOUT = 30    # tractor_engine_timeout of the engine that never becomes healthy
BLADE_LOST_SECONDS = 40   # blade-loses-engine=S: longer than the engine's 30 s "blade down" limit


def spool_jobs(site):
    engine = EngineProc(site, None)
    engine.spool({"title": "one", "tasks": [{"title": "a", "argv": ["true"]}]})
    engine.spool({"title": "two", "tasks": [{"title": "b", "argv": ["true"]}, {"title": "c", "argv": ["true"]}]})


def upgrade_processes_gone(site, version):
    """A predicate: true once an engine of ``version`` was seen for the site and is gone again."""
    seen = {"pids": set()}

    def check():
        pids = set(engine_processes(site, version))
        if pids:
            seen["pids"] |= pids
            return False
        return bool(seen["pids"])
    return check


@pytest.fixture(scope="module")
def upgrade_round(round_farm):
    farm = round_farm
    sites = {}
    for name in FAULTS:
        sites[name] = farm.make_site()
        hostvars = {"tractor_engine_timeout": UNHEALTHY_TIMEOUT} if name == "unhealthy" else {}
        farm.add(name, sites[name], "2.2", **hostvars)
    farm.launch(*[(name, "2.2") for name in FAULTS])
    for name, site in sites.items():
        if name != "blade":
            spool_jobs(site)

    # 2: the 2.4 schema upgrade fails (and rolls back its transaction) -- file form: the engine
    # runs tractor-dbctl --start-for-engine itself.
    sites["schema"].write("emulator-faults", "schema-upgrade-fails\n")
    # 1: slow schema steps (1 s each) give the watcher time to SIGKILL the 2.4 engine mid-upgrade.
    sites["killed"].write("emulator-faults", "schema-upgrade-slow=1\n")

    # 14: a blade runs a task that ends only once the old engine has stopped; right after its
    # first dispatch the blade cannot reach the engine for BLADE_LOST_SECONDS.
    blade_site = sites["blade"]
    flag = os.path.join(blade_site.base, "engine-stopped")
    blade_site.start_blade("2.2", "bladeA", env={"TRACTOR_EMULATOR_FAULTS": f"blade-loses-engine={BLADE_LOST_SECONDS}"})
    blade_engine = EngineProc(blade_site, None)
    blade_jid = blade_engine.spool({"title": "through the upgrade", "tasks": [{"title": "waits", "argv": [
        "sh", "-c", f"while [ ! -e {flag} ]; do sleep 0.2; done; echo finished"]}]})
    blade_engine.wait_tasks(blade_jid, lambda ts: ts[0]["state"] == "active", timeout=60)

    before = {name: job_records(site) for name, site in sites.items()}
    pids_before = {name: serving(site)["pid"] for name, site in sites.items()}

    def kill_mid_upgrade(w):
        site = sites["killed"]
        w.until(lambda: engine_processes(site, "2.4"))
        offset = len(engine_log(site))
        w.note("2.4 engine started")
        w.until(lambda: "Applying upgrade" in engine_log(site)[offset:], interval=0.05)
        pids = engine_processes(site, "2.4")  # the daemon (its launcher has exited by now)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        w.note(f"SIGKILL sent to the 2.4 engine {pids} during its schema upgrade")
        w.killed_during = engine_log(site)[offset:]

    def unhealthy_new_engine(w):
        site = sites["unhealthy"]
        w.until(upgrade_processes_gone(site, "2.2"))
        site.write("emulator-faults", "engine-unhealthy\n")
        w.note("2.2 engine stopped: fault engine-unhealthy on")
        w.note(f"2.4 engine(s) {w.until(lambda: engine_processes(site, '2.4'))} started")
        # Off only once the rollback starts the old engine again (which must become healthy): a
        # 2.4 process that comes and goes before that does not end the fault.
        w.note(f"2.2 engine(s) {w.until(lambda: engine_processes(site, '2.2'), interval=0.2)} started again "
               f"(rollback), 2.4 now {engine_processes(site, '2.4')}")
        os.unlink(os.path.join(site.config_dir, "emulator-faults"))
        w.note("fault off")

    def release_task(w):
        w.until(upgrade_processes_gone(blade_site, "2.2"))
        with open(flag, "w"):
            pass
        w.note("2.2 engine stopped: the task may finish")

    watchers = [Watcher("killed", kill_mid_upgrade), Watcher("unhealthy", unhealthy_new_engine),
                Watcher("blade", release_task)]
    for watcher in watchers:
        watcher.start()
    proc = farm.play("upgrade", expect_ok=False, upgrade_version="2.4", upgrade_serial=["100%"])
    for watcher in watchers:
        watcher.finish()
    report = {entry["engine"]: entry for entry in farm.report("upgrade")["engines"]}
    return dict(farm=farm, sites=sites, proc=proc, output=proc.stdout + proc.stderr, report=report,
                before=before, pids_before=pids_before, watchers={w.name: w for w in watchers},
                blade_jid=blade_jid)


def serving(site):
    """The emulator-only introspection body (pid, schema-version, ...) of a healthy engine."""
    status, _, reply = EngineProc(site, None).call("ctrl?q=status", timeout=10)
    assert status == 200, reply
    status, _, reply = EngineProc(site, None).call("emulator?q=status", timeout=10)
    assert status == 200, reply
    return reply


def assert_nothing_lost(run, name, version):
    site = run["sites"][name]
    assert job_records(site) == run["before"][name]
    assert backup_problems(run["farm"].backups) == []
    archives = [path for path in backups(run["farm"].backups) if f"/{name}/" in path]
    assert len(archives) == 1, archives  # the backup of phase 3, complete (sha256 and manifest)


def assert_rolled_back(run, name, cause):
    watcher = run["watchers"].get(name)
    assert watcher is None or watcher.error is None, (watcher.error, watcher.events)
    entry = run["report"][name]
    assert entry["result"] == "rolled back" and entry["rollback"] is True, entry
    assert cause in entry["error"] and "rolled back to 2.2" in entry["error"], entry["error"]
    assert f"{name} | FAILED" in run["output"] or f"fatal: [{name}]" in run["output"]
    assert cause in run["output"]
    site = run["sites"][name]
    assert serving_version(site) == "2.2"
    assert serving(site)["schema-version"] == "2.2-4"  # the database of the backup, not a half-upgraded one
    assert_nothing_lost(run, name, "2.2")


def test_01_engine_killed_during_schema_upgrade_rolls_back(upgrade_round):
    watcher = upgrade_round["watchers"]["killed"]
    assert watcher.error is None, (watcher.error, watcher.events)
    assert "SIGKILL sent" in watcher.events[-1]  # the kill really came in the middle of the upgrade
    assert "Applying upgrade" in watcher.killed_during
    assert_rolled_back(upgrade_round, "killed", "exited during start-up")


def test_02_schema_upgrade_failure_rolls_back(upgrade_round):
    assert_rolled_back(upgrade_round, "schema", "tractor-dbctl --start-for-engine failed")
    assert "Upgrade failed" in upgrade_round["report"]["schema"]["error"]


def test_03_engine_never_healthy_rolls_back(upgrade_round):
    watcher = upgrade_round["watchers"]["unhealthy"]
    assert watcher.error is None and watcher.events[-1].endswith("fault off"), (watcher.error, watcher.events)
    assert_rolled_back(upgrade_round, "unhealthy", f"did not become healthy within {UNHEALTHY_TIMEOUT} s")
    assert "HTTP 503" in upgrade_round["report"]["unhealthy"]["error"]


def test_14_blade_losing_the_engine_still_completes_its_task(upgrade_round):
    run = upgrade_round
    watcher = run["watchers"]["blade"]
    assert watcher.error is None, (watcher.error, watcher.events)
    site = run["sites"]["blade"]
    assert run["report"]["blade"]["result"] == "ok", run["report"]["blade"]
    assert serving_version(site) == "2.4"
    jid = run["blade_jid"]
    engine = EngineProc(site, None)
    tasks = engine.wait_tasks(jid, lambda ts: ts and ts[0]["state"] == "done", timeout=BLADE_LOST_SECONDS + 60)
    assert tasks[0]["state"] == "done"
    log = os.path.join(site.data_dir, "cmd-logs", site.owner.pw_name, f"J{jid}", "T1.log")
    assert open(log, encoding="utf-8").read().strip() == "finished"
    assert_nothing_lost(run, "blade", "2.4")
