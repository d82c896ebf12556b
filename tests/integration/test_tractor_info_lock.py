"""tractor_info reads an engine's merged config; tractor_lock keeps two runs off one engine."""

from __future__ import annotations

import json
import os
import socket

from tractor_ansible import changed


def test_info_reports_the_merged_config(site, ansible, installs):
    install = installs("2.2")
    info = ansible.module("tractor_info", {"install_dir": install, "config_dir": site.config_dir})
    assert not changed(info)
    assert info["config"]["data_dir"] == site.data_dir
    assert info["config"]["db_data_dir"] == site.db_dir  # ${TractorDataDirectory} expanded
    assert info["config"]["db_port"] == site.db_port and info["config"]["listener_port"] == site.engine_port
    assert info["config"]["db_shutdown"] is True  # from the stock db.config
    assert info["engine_owner"]["exists"] and info["engine_owner"]["name"] == site.owner.pw_name
    assert info["install"]["dbctl"] and info["address"] == f"localhost:{site.engine_port}"
    assert info["paths"]["data_dir"]["network"] is False and info["database"]["initialised"] is False
    site.dbctl("2.2", "--init")
    info = ansible.module("tractor_info", {"install_dir": install, "config_dir": site.config_dir})
    assert info["database"]["initialised"] and info["database"]["size"] > 1_000_000


def test_info_missing_install_is_refused_unless_asked(site, ansible):
    failed = ansible.module("tractor_info", {"version": "9.9", "config_dir": site.config_dir})
    assert failed["failed"] and "Tractor install /opt/pixar/Tractor-9.9 not found" in failed["msg"]
    ok = ansible.module("tractor_info", {"version": "9.9", "config_dir": site.config_dir, "require_install": False})
    assert ok["install"]["exists"] is False and ok["config"]["data_dir"] == site.data_dir


def test_info_reads_a_planned_site_config_in_place_of_the_files(site, ansible, installs, tmp_path):
    install = installs("2.4")
    planned = {"tractor_config": {"EngineOwner": site.owner.pw_name, "ListenerPort": 8123,
                                  "TractorDataDirectory": str(tmp_path / "staging-data")},
               "db_config": {"DBConnection": {"host": "localhost", "port": 9988, "dbname": "tractor"}}}
    missing = str(tmp_path / "not-written-yet")
    refused = ansible.module("tractor_info", {"install_dir": install, "config_dir": missing})
    assert refused["failed"] and f"config_dir {missing} does not exist" in refused["msg"]
    info = ansible.module("tractor_info", {"install_dir": install, "config_dir": missing,
                                           "planned_site_config": planned})
    assert not changed(info) and not os.path.exists(missing)
    assert info["config"]["listener_port"] == 8123 and info["config"]["db_port"] == 9988
    assert info["config"]["db_data_dir"] == str(tmp_path / "staging-data" / "psql")  # stock DBDataDir, expanded
    assert info["config"]["db_shutdown"] is True  # the rest from the stock db.config
    assert info["paths"]["config_dir"]["exists"] is False and info["paths"]["config_dir"]["realpath"] == missing
    # The plan replaces the site files of an existing directory: its ListenerPort is not read.
    info = ansible.module("tractor_info", {"install_dir": install, "config_dir": site.config_dir,
                                           "planned_site_config": planned})
    assert info["config"]["listener_port"] == 8123 and info["config"]["db_port"] == 9988
    bad = ansible.module("tractor_info", {"install_dir": install, "config_dir": missing,
                                          "planned_site_config": {"tractor_config": [8080]}})
    assert bad["failed"]


def test_info_reads_the_target_install_in_the_same_run(site, ansible, installs):
    install, target = installs("2.2"), installs("2.4")
    info = ansible.module("tractor_info", {"install_dir": install, "config_dir": site.config_dir,
                                           "target_install_dir": target})
    assert info["target_install"] == {"dir": target, "exists": True, "dbctl": True, "engine": True, "tq": True}
    assert info["install"]["dir"] == install
    missing = os.path.join(os.path.dirname(target), "Tractor-9.9")
    info = ansible.module("tractor_info", {"install_dir": install, "config_dir": site.config_dir,
                                           "target_install_dir": missing})
    assert info["target_install"]["exists"] is False and info["target_install"]["dbctl"] is False
    assert ansible.module("tractor_info", {"install_dir": install, "config_dir": site.config_dir})["target_install"] is None


def lock_args(site, run_id, **extra):
    args = {"path": os.path.join(site.data_dir, ".renderfarm-tractor.lock"), "run_id": run_id,
            "controller_host": socket.gethostname(), "controller_pid": os.getpid(), "purpose": "test"}
    args.update(extra)
    return args


def test_lock_take_renew_refuse_release(site, ansible):
    path = os.path.join(site.data_dir, ".renderfarm-tractor.lock")
    check = ansible.module("tractor_lock", lock_args(site, "run-a"), check=True)
    assert changed(check) and check["outcome"] == "taken" and not os.path.exists(path)
    took = ansible.module("tractor_lock", lock_args(site, "run-a", lease=600))
    first = json.load(open(path))
    assert changed(took) and first["run_id"] == "run-a" and first["expires"] == first["created"] + 600
    renewed = ansible.module("tractor_lock", {"path": path, "run_id": "run-a", "lease": 900})
    after = json.load(open(path))
    assert not changed(renewed) and renewed["outcome"] == "renewed"
    assert after["expires"] > first["expires"] and after["controller_pid"] == first["controller_pid"]  # holder kept
    other = ansible.module("tractor_lock", lock_args(site, "run-b"))
    assert other["failed"] and "engine locked by another run: run run-a (test)" in other["msg"]
    assert "tractor_lock_break=run-a" in other["msg"]
    refused = ansible.module("tractor_lock", lock_args(site, "run-b", state="absent"))
    assert refused["failed"] and json.load(open(path))["run_id"] == "run-a"
    released = ansible.module("tractor_lock", lock_args(site, "run-a", state="absent"))
    assert changed(released) and not os.path.exists(path)
    assert not changed(ansible.module("tractor_lock", lock_args(site, "run-a", state="absent")))


def test_lock_of_a_gone_run_is_taken_over_and_a_live_one_only_by_run_id(site, ansible):
    path = os.path.join(site.data_dir, ".renderfarm-tractor.lock")
    with open(path, "w") as handle:  # a run on this controller that died: its pid is gone
        json.dump({"run_id": "dead-run", "controller_host": socket.gethostname(), "controller_pid": 2 ** 22 + 4242,
                   "created": 0, "expires": 4e9, "purpose": "upgrade"}, handle)
    took = ansible.module("tractor_lock", lock_args(site, "run-c"))
    assert changed(took) and took["outcome"] == "taken over" and took["previous"]["stale"] is True
    assert "is gone" in took["previous"]["stale_reason"] and json.load(open(path))["run_id"] == "run-c"
    # run-c's controller (this test) runs and its lease runs: only its run id breaks it
    wrong = ansible.module("tractor_lock", lock_args(site, "run-d", break_run_id="run-x"))
    assert wrong["failed"] and "You asked to break run run-x, which does not hold it" in wrong["msg"]
    broke = ansible.module("tractor_lock", lock_args(site, "run-d", break_run_id="run-c"))
    assert changed(broke) and broke["previous"]["broken"] is True and json.load(open(path))["run_id"] == "run-d"
