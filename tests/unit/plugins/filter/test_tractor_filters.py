"""The decisions the roles delegate to filters: engine collisions, retention, report formats."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ansible_collections.renderfarm.tractor.plugins.filter import tractor as f


def info(machine, port=80, db_port=9876, data="/var/spool/tractor", config="/opt/pixar/config",
         fstype="ext4", source="/dev/sda1", mount="/"):
    def path(p):
        return {"realpath": p, "mount_point": mount, "mount_source": source, "fstype": fstype,
                "network": fstype.startswith("nfs")}
    return {"machine": {"id": machine, "hostname": machine},
            "config": {"listener_port": port, "db_port": db_port},
            "paths": {"config_dir": path(config), "data_dir": path(data), "db_data_dir": path(data + "/psql")}}


def test_engines_on_one_machine_must_differ_in_everything():
    hv = {"prod": {"preflight_info": info("m1")},
          "staging": {"preflight_info": info("m1", port=8080, db_port=9877, data="/srv/staging", config="/srv/cfg"),
                      "tractor_service_name": "tractor-engine-staging"}}
    assert f.tractor_collisions(hv, ["prod", "staging"], "prod") == []
    del hv["staging"]["tractor_service_name"]  # both would be the systemd/sysv service tractor-engine
    assert f.tractor_collisions(hv, ["prod", "staging"], "prod") == [
        "prod and staging on m1 are both managed as the service tractor-engine (they would rewrite each other's "
        "settings); give each engine its own tractor_service_name"]
    hv["prod"]["tractor_service_manager"] = hv["staging"]["tractor_service_manager"] = "direct"
    assert f.tractor_collisions(hv, ["prod", "staging"], "prod") == []
    hv["staging"]["preflight_info"] = info("m1", port=80, db_port=9877, data="/var/spool/tractor", config="/srv/cfg")
    problems = f.tractor_collisions(hv, ["prod", "staging"], "prod")
    assert any("same engine port 80" in p for p in problems)
    assert any("share the TractorDataDirectory /var/spool/tractor" in p for p in problems)
    assert any("share the DBDataDir" in p for p in problems)
    assert all("prod and staging on m1" in p for p in problems)


def test_machine_identity_beats_inventory_names_and_failed_reads_are_skipped():
    hv = {"a": {"preflight_info": info("same-box"), "ansible_host": "10.0.0.1", "tractor_service_manager": "direct"},
          "b": {"preflight_info": info("same-box"), "ansible_host": "farm1.example", "tractor_service_name": "x"},
          "c": {"preflight_info": {"failed": True, "msg": "boom"}}}
    assert len(f.tractor_collisions(hv, ["a", "b", "c"], "a")) == 5  # 2 ports + 3 directories


def test_engines_outside_the_play_are_compared_too():
    hv = {"prod": {"preflight_info": info("m1"), "tractor_service_manager": "direct"},
          "staging": {"tractor_service_manager": "direct"}}
    peers = [dict(info("m1", port=80, db_port=1, data="/srv/s", config="/srv/c"), item="staging"),
             {"item": "broken", "failed": True}]
    assert f.tractor_collisions(hv, ["prod"], "prod", "preflight_info", peers) == [
        "prod and staging on m1 use the same engine port 80"]


def test_network_volume_shared_by_two_machines_is_refused():
    nfs = dict(fstype="nfs4", source="filer:/export", mount="/net/farm", data="/net/farm/tractor")
    hv = {"a": {"preflight_info": info("m1", **nfs)}, "b": {"preflight_info": info("m2", **nfs)}}
    problems = f.tractor_collisions(hv, ["a", "b"], "a")
    assert any("network volume filer:/export:tractor" in p for p in problems)
    local = {"a": {"preflight_info": info("m1")}, "b": {"preflight_info": info("m2")}}
    assert f.tractor_collisions(local, ["a", "b"], "a") == []  # same local path on two machines is fine


def test_prune_plan_keeps_newest_verified_and_honours_both_rules():
    day = 86400
    now = 100 * day
    backups = [{"path": f"b{i}", "created": now - i * day, "verified": True} for i in range(5)]
    assert f.tractor_prune_plan(backups, keep_last=2, now=now) == ["b4", "b3", "b2"]
    assert f.tractor_prune_plan(backups, keep_days=2.5, now=now) == ["b4", "b3"]
    assert f.tractor_prune_plan(backups, keep_last=1, keep_days=2.5, now=now) == ["b4", "b3"]
    assert f.tractor_prune_plan(backups, now=now) == []  # no rule: keep everything
    unverified_newest = [{"path": "new", "created": now, "verified": False}] + backups[1:]
    assert "b1" not in f.tractor_prune_plan(unverified_newest, keep_last=1, now=now)  # newest verified kept


def test_backup_list_from_find_results():
    found = [{"path": "/b/x.tgz.manifest.json", "mtime": 5.0}]
    assert f.tractor_backup_list(found) == [{"path": "/b/x.tgz", "created": 5.0, "verified": True}]


def test_reports_are_valid_junit_and_markdown():
    report = {"playbook": "upgrade", "finished": "2026-11-28T12:00:00Z", "engines": [
        {"engine": "a", "host": "h", "action": "upgrade", "result": "ok", "version_before": "2.2",
         "version_after": "2.4", "downtime": 3.2, "duration": 40, "phases": {"stop": 1},
         "backup": {"path": "/b/a.tgz", "size": 10, "sha256": "ab" * 32}},
        {"engine": "b<&>", "result": "rolled back", "error": "schema <upgrade> failed", "rollback": True,
         "database": {"path": "kept", "reason": "same schema 2.2-4", "schema_live": "2.2-4"}}]}
    root = ET.fromstring(f.tractor_report_junit(report))
    assert root.get("tests") == "2" and root.get("failures") == "1"
    assert root.find(".//testcase/failure").get("message") == "schema <upgrade> failed"
    markdown = f.tractor_report_markdown(report)
    assert "| a | h | upgrade | ok | 2.2 | 2.4 | 3.2 | /b/a.tgz (10 B, sha256 abababababab) | no |" in markdown
    assert "**b<&> failed:** schema <upgrade> failed" in markdown
    assert "**b<&> job database kept:** same schema 2.2-4" in markdown
    assert markdown.count("job database") == 1  # engine a recorded no database path
    assert "Timeline" not in markdown  # no engine recorded times
    missing = f.tractor_missing_records(["a", "c"], report["engines"])
    assert [m["engine"] for m in missing] == ["c"] and missing[0]["result"] == "missing"


def test_the_report_draws_the_rollout_as_a_gantt_by_batch_with_human_sizes():
    t0 = 1_800_000_000
    engines = [
        {"engine": "a", "result": "ok", "batch": 1, "backup": {"path": "/b/a.tgz", "size": 3 * 1024 ** 3},
         "timeline": {"started": t0, "stopped": t0 + 5.2, "healthy": t0 + 9.9, "ended": t0 + 30}},
        {"engine": "b:1", "result": "rolled back", "batch": 2,
         "timeline": {"started": t0 + 31, "stopped": t0 + 35, "healthy": None, "ended": t0 + 80}},
        {"engine": "c", "result": "unchanged", "batch": 2, "timeline": {"started": t0 + 31, "ended": t0 + 33.5}},
        {"engine": "d", "result": "missing"}]
    markdown = f.tractor_report_markdown({"playbook": "upgrade", "engines": engines})
    gantt = markdown[markdown.index("```mermaid"):]
    assert gantt.splitlines()[:4] == ["```mermaid", "gantt", "    dateFormat X", "    axisFormat %H:%M:%S"]
    assert gantt.index("section batch 1") < gantt.index("a ok : active") < gantt.index("section batch 2")
    assert f"    a ok : active, {t0}, {t0 + 31}" in gantt and f"    a down : crit, {t0 + 5}, {t0 + 10}" in gantt
    assert f"    b_1 rolled back : crit, {t0 + 31}, {t0 + 81}" in gantt  # ':' would end the name in Mermaid
    assert "b_1 down" not in gantt and f"    c unchanged : active, {t0 + 31}, {t0 + 34}" in gantt
    assert " d " not in gantt and "/b/a.tgz (3.0 GiB)" in markdown
    summary = f.tractor_report_summary({"playbook": "upgrade", "run_id": "r1", "engines": engines}, "/srv/r/upgrade-r1")
    assert summary["results"] == {"ok": 1, "rolled back": 1, "unchanged": 1, "missing": 1}
    assert summary["files"][1] == "/srv/r/upgrade-r1/report.md" and summary["run_id"] == "r1"
    assert summary["engines"][3] == {"engine": "d", "result": "missing"}


def test_config_literal_is_what_tractor_dbctl_can_read():
    import ast
    text = f.tractor_config_literal({"DBShutdown": False, "DBConnection": {"port": 9877}, "X": None})
    assert ast.literal_eval(text) == {"DBShutdown": False, "DBConnection": {"port": 9877}, "X": None}
    assert "False" in text and "false" not in text
