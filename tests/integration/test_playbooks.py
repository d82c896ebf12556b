"""The playbooks, run for real against emulated engines on this machine (local connection).

Each engine is a site of its own (config dir, data dir, ports, PostgreSQL); engines are started
and stopped by the collection itself (tractor_engine, direct service manager), blades are real
tractor-blade processes, and every outcome is checked independently of Ansible's return values:
with the emulator's tractor-dbctl, the engine's URL API and the files on disk.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import time

import pytest

from tractor_sites import EngineProc


class Farm:
    """An inventory of emulated engines and helpers to inspect them."""

    def __init__(self, world, prefix, installs, ansible, tmp_path_factory):
        self.world = world
        self.prefix = prefix
        self.installs = installs
        self.ansible = ansible
        self.base = tmp_path_factory.mktemp("farm")
        os.chmod(self.base, 0o755)
        self.backups = os.path.join(world, f"backups-{os.path.basename(self.base)}")
        self.reports = os.path.join(self.base, "reports")
        self.engines: dict[str, dict] = {}
        for version in ("2.2", "2.4"):  # what the tests move between
            installs(version)

    def add(self, name, site, version, **hostvars):
        self.installs(version)
        self.engines[name] = {"site": site, "vars": {"tractor_version": version,
                                                      "tractor_config_dir": site.config_dir, **hostvars}}

    def inventory(self, **extra_hostvars) -> str:
        hosts = {}
        for name, engine in self.engines.items():
            hosts[name] = dict(engine["vars"], **extra_hostvars.get(name, {}))
        data = {
            "all": {"vars": {"report_dir": self.reports}},
            "tractor_engines": {"hosts": hosts, "vars": {
                "ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3",
                "tractor_become": False, "tractor_install_prefix": self.prefix,
                "tractor_service_manager": "direct", "backup_dir": self.backups,
            }},
        }
        path = os.path.join(self.base, "inventory.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        return path

    def play(self, playbook, check=False, expect_ok=True, **extra_vars):
        proc = self.ansible.playbook(f"playbooks/{playbook}.yml", inventory=self.inventory(),
                                     extra_vars=extra_vars or None, check=check)
        if expect_ok:
            assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
        return proc

    def start(self, name, version):
        site = self.engines[name]["site"]
        result = self.ansible.module("tractor_engine", {
            "state": "started", "install_dir": self.installs(version), "config_dir": site.config_dir,
            "service_manager": "direct"})
        assert not result.get("failed"), result
        return EngineProc(site, None)

    def report(self, playbook) -> dict:
        found = sorted(glob.glob(os.path.join(self.reports, f"{playbook}-*", "report.json")), key=os.path.getmtime)
        assert found, f"no {playbook} report in {self.reports}"
        with open(found[-1], encoding="utf-8") as handle:
            return json.load(handle)


@pytest.fixture
def farm(world, prefix, installs, ansible, tmp_path_factory):
    return Farm(world, prefix, installs, ansible, tmp_path_factory)


def params(site, version):
    out = site.dbctl(version, "--show-params").stdout
    return dict(line.split(" = ", 1) for line in out.splitlines() if " = " in line)


def engine_status(site):
    try:
        return EngineProc(site, None).call("ctrl?q=status", timeout=5)[2]
    except OSError:
        return None


def wait_done(engine, jid, timeout=90):
    return engine.wait_tasks(jid, lambda ts: ts and all(t["state"] == "done" for t in ts), timeout=timeout)


def tree_digest(*roots) -> dict:
    """Names, sizes and contents of the files under roots (the job database files excluded: a
    running PostgreSQL writes them on its own)."""
    digest = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != "psql"]
            for name in filenames:
                path = os.path.join(dirpath, name)
                if name.endswith((".log", ".pid")):
                    digest[path] = "present"
                    continue
                with open(path, "rb") as handle:
                    digest[path] = hashlib.sha256(handle.read()).hexdigest()
    return digest


# -- backup and retention ------------------------------------------------------------------------
def test_backup_retention_and_restart(farm, site):
    farm.add("prod", site, "2.2")
    engine = farm.start("prod", "2.2")
    jid = engine.spool({"title": "j", "tasks": [{"title": "t", "argv": ["true"]}]})
    farm.play("backup", backup_keep_last=1)
    first = glob.glob(os.path.join(farm.backups, "prod", "*.tgz"))
    assert len(first) == 1
    manifest = json.load(open(first[0] + ".manifest.json"))
    assert manifest["jidcounter"] in (str(jid), jid) and manifest["schema_version"] == "2.2-4"
    status = engine_status(site)
    assert status and status["version"] == "2.2"  # the engine was running, so it runs again
    time.sleep(1.1)  # distinct backup names (second resolution)

    before = sorted(os.listdir(os.path.join(farm.backups, "prod")))
    check = farm.play("backup", check=True, backup_keep_last=1)
    assert sorted(os.listdir(os.path.join(farm.backups, "prod"))) == before  # check mode wrote nothing
    assert "Would stop the engine" in check.stdout

    farm.play("backup", backup_keep_last=1)
    remaining = glob.glob(os.path.join(farm.backups, "prod", "*.tgz"))
    assert len(remaining) == 1 and remaining != first  # the older one was pruned, the newest kept
    assert not os.path.exists(first[0] + ".manifest.json")
    report = farm.report("backup")
    assert report["engines"][0]["result"] == "ok" and report["engines"][0]["pruned"] == first


# -- upgrade of two engines, with a task running through it --------------------------------------
def test_rolling_upgrade_of_two_engines_with_an_active_task(farm, site, make_site):
    other = make_site()
    farm.add("prod1", site, "2.2")
    farm.add("prod2", other, "2.2")
    engine1 = farm.start("prod1", "2.2")
    farm.start("prod2", "2.2")
    site.start_blade("2.2", "blade1")
    other.start_blade("2.2", "blade2")
    jid = engine1.spool({"title": "long", "tasks": [{"title": "t", "argv": ["sh", "-c", "sleep 12; echo finished"]}]})
    engine1.wait_tasks(jid, lambda ts: ts[0]["state"] == "active", timeout=30)

    farm.play("upgrade", upgrade_version="2.4", upgrade_serial=[1, "100%"])

    for one in (site, other):
        assert engine_status(one)["version"] == "2.4"
        assert params(one, "2.4")["schema-version"] == "2.4-1"
    wait_done(EngineProc(site, None), jid, timeout=60)  # the task ran through the upgrade
    log = os.path.join(site.data_dir, "cmd-logs", site.owner.pw_name, f"J{jid}", "T1.log")
    assert open(log).read().strip() == "finished"
    assert EngineProc(site, None).spool({"title": "next", "tasks": [{"title": "t", "argv": ["true"]}]}) == jid + 1
    report = farm.report("upgrade")
    by_engine = {e["engine"]: e for e in report["engines"]}
    assert set(by_engine) == {"prod1", "prod2"}
    for entry in by_engine.values():
        assert entry["result"] == "ok" and entry["version_after"] == "2.4" and not entry["rollback"]
        assert float(entry["downtime"]) > 0 and entry["backup"]["sha256"]
    assert os.path.exists(glob.glob(os.path.join(farm.reports, "upgrade-*", "report.xml"))[0])

    # A re-run changes nothing: both engines already serve 2.4 and keep their process.
    pids = {name: engine_status(s)["pid"] for name, s in (("prod1", site), ("prod2", other))}
    farm.play("upgrade", upgrade_version="2.4")
    assert {name: engine_status(s)["pid"] for name, s in (("prod1", site), ("prod2", other))} == pids
    assert {e["result"] for e in farm.report("upgrade")["engines"]} == {"unchanged"}


# -- downgrade with restore, log purge and counter -----------------------------------------------
def test_downgrade_restores_purges_logs_and_sets_the_counter(farm, site):
    farm.add("prod", site, "2.2")
    engine = farm.start("prod", "2.2")
    site.start_blade("2.2", "blade")
    kept = engine.spool({"title": "before", "tasks": [{"title": "t", "argv": ["echo", "kept"]}]})
    wait_done(engine, kept)
    farm.play("upgrade", upgrade_version="2.4")  # takes the backup (made with 2.2)
    backup = sorted(glob.glob(os.path.join(farm.backups, "prod", "*.tgz")))[-1]
    new = EngineProc(site, None)
    lost = new.spool({"title": "after", "tasks": [{"title": "t", "argv": ["echo", "lost"]}]})
    wait_done(new, lost)
    lost_logs = os.path.join(site.data_dir, "cmd-logs", site.owner.pw_name, f"J{lost}")
    assert os.path.isdir(lost_logs)

    farm.play("downgrade", tractor_version="2.4", downgrade_version="2.2", downgrade_backup=backup,
              downgrade_job_counter=100)

    status = engine_status(site)
    assert status["version"] == "2.2" and status["schema-version"] == "2.2-4"
    jobs = {j["jid"] for j in EngineProc(site, None).call("monitor?q=jobs")[2]["jobs"]}
    assert kept in jobs and lost not in jobs  # the job spooled after the backup is gone (runbook)
    assert not os.path.exists(lost_logs)  # step 7: logs of jids that will be reused are removed
    assert os.path.isdir(os.path.join(site.data_dir, "cmd-logs", site.owner.pw_name, f"J{kept}"))
    assert params(site, "2.2")["jidcounter"] == "100"  # step 8
    entry = farm.report("downgrade")["engines"][0]
    assert entry["result"] == "ok" and entry["version_after"] == "2.2"

    # Re-run: the old version already serves, nothing is destroyed again.
    pid = status["pid"]
    farm.play("downgrade", tractor_version="2.4", downgrade_version="2.2", downgrade_backup=backup)
    assert engine_status(site)["pid"] == pid and params(site, "2.2")["jidcounter"] == "100"
    assert farm.report("downgrade")["engines"][0]["result"] == "unchanged"


# -- automatic rollback ---------------------------------------------------------------------------
def test_failed_switch_rolls_back_to_the_old_version_and_data(farm, site):
    farm.add("prod", site, "2.2")
    engine = farm.start("prod", "2.2")
    jid = engine.spool({"title": "keep me", "tasks": [{"title": "t", "argv": ["true"]}]})
    # The new version's schema upgrade fails (emulator fault): the 2.4 engine cannot start.
    site.write("emulator-faults", "schema-upgrade-fails\n")
    proc = farm.play("upgrade", expect_ok=False, upgrade_version="2.4")
    assert proc.returncode != 0
    assert "rolled back to 2.2" in proc.stdout
    status = engine_status(site)
    assert status and status["version"] == "2.2"  # the old version serves
    assert jid in {j["jid"] for j in EngineProc(site, None).call("monitor?q=jobs")[2]["jobs"]}
    assert params(site, "2.2")["schema-version"] == "2.2-4"
    entry = farm.report("upgrade")["engines"][0]
    assert entry["result"] == "rolled back" and entry["rollback"] is True and "error" in entry
    evidence = glob.glob(os.path.join(farm.backups, "prod", "failed-upgrade-to-2.4-*.log"))
    assert evidence, os.listdir(os.path.join(farm.backups, "prod"))
    junit = open(glob.glob(os.path.join(farm.reports, "upgrade-*", "report.xml"))[0]).read()
    assert 'failures="1"' in junit


# -- multi-engine rules --------------------------------------------------------------------------
def test_colliding_engines_are_refused_before_any_change(farm, site, make_site):
    other = make_site()
    farm.add("prod", site, "2.2")
    farm.add("staging", other, "2.2")
    farm.start("prod", "2.2")
    # The second engine is configured with the first one's data directory.
    other.write_config(tractor_extra="")
    other.write("tractor.config", '{"EngineOwner": "%s", "TractorDataDirectory": "%s", "ListenerPort": %d}\n'
                % (other.owner.pw_name, site.data_dir, other.engine_port))
    proc = farm.play("upgrade", expect_ok=False, upgrade_version="2.4")
    assert proc.returncode != 0, proc.stdout[-8000:]
    assert "share the TractorDataDirectory" in proc.stdout and "prod" in proc.stdout and "staging" in proc.stdout
    assert engine_status(site)["version"] == "2.2"  # nothing was touched
    assert not os.path.exists(os.path.join(farm.backups, "prod"))


def test_upgrade_refuses_a_downgrade(farm, site):
    farm.add("prod", site, "2.4")
    farm.start("prod", "2.4")
    proc = farm.play("upgrade", expect_ok=False, upgrade_version="2.2")
    assert proc.returncode != 0 and "runs only through the downgrade role" in proc.stdout
    assert engine_status(site)["version"] == "2.4"


def test_lock_held_by_another_run_is_refused(farm, site):
    farm.add("prod", site, "2.2")
    farm.start("prod", "2.2")
    lock = os.path.join(site.data_dir, ".renderfarm-tractor.lock")
    with open(lock, "w") as handle:
        json.dump({"run_id": "someone-else", "controller_host": "another-controller", "controller_pid": 1,
                   "created": time.time(), "purpose": "upgrade 2.2 -> 2.3"}, handle)
    proc = farm.play("backup", expect_ok=False)
    assert proc.returncode != 0 and "engine locked by another run: someone-else" in proc.stdout
    assert json.load(open(lock))["run_id"] == "someone-else"  # left alone
    assert not glob.glob(os.path.join(farm.backups, "prod", "*.tgz"))


# -- check mode changes nothing -------------------------------------------------------------------
def test_check_mode_of_every_playbook_changes_nothing(farm, site):
    farm.add("prod", site, "2.2")
    engine = farm.start("prod", "2.2")
    engine.spool({"title": "j", "tasks": [{"title": "t", "argv": ["true"]}]})
    farm.play("backup")
    backup = sorted(glob.glob(os.path.join(farm.backups, "prod", "*.tgz")))[-1]

    def state():
        status = engine_status(site)
        return {"engine": (status["version"], status["pid"]), "params": params(site, "2.2"),
                "files": tree_digest(site.data_dir, site.config_dir, farm.backups)}

    before = state()
    farm.play("backup", check=True)
    farm.play("upgrade", check=True, upgrade_version="2.4")
    farm.play("downgrade", check=True, tractor_version="2.2", downgrade_version="2.2", downgrade_backup=backup)
    after = state()
    assert after == before
    assert {e["result"] for e in farm.report("upgrade")["engines"]} == {"planned"}
