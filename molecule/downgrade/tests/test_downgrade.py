"""downgrade: after renderfarm.tractor.downgrade took the engine from 2.4 back to 2.2.

Checked on the host: 2.2 serves the restored job database under systemd; the jobs of 2.4 are
gone and the logs of their (reused) job ids purged, the logs of restored jobs kept; the job counter
is the one asked for; and the runbook's steps happened in order, as the host's own records show:
the running task retried while dispatching was paused (engine and blade journals), the engine
killed (systemd's journal), the database restored (the restored files' change time), then the
old engine started.
"""

from __future__ import annotations

import glob
import json
import os
import re

from tractor_checks import DATA_DIR, OWNER, PREFIX, exec_start, starts_install


def jids(host) -> dict:
    return json.loads(host.file("/var/lib/molecule/jids.json").content_string)


def journal(host, unit: str) -> list[tuple[float, str]]:
    out = host.check_output(f"journalctl -u {unit} -o short-unix --no-pager")
    lines = []
    for line in out.splitlines():
        stamp, _, text = line.partition(" ")
        try:
            lines.append((float(stamp), text))
        except ValueError:
            continue
    return lines


def first(lines, pattern: str) -> float:
    found = [stamp for stamp, text in lines if re.search(pattern, text)]
    assert found, f"nothing matches {pattern!r}"
    return found[0]


def test_old_engine_serves_the_restored_database_under_systemd(host, engine):
    status = engine.status()
    assert (status["version"], status["schema-version"]) == ("2.2", "2.2-4")
    unit = host.service("tractor-engine")
    assert unit.is_running
    assert int(host.check_output("systemctl show -p MainPID --value tractor-engine")) == status["pid"]
    assert starts_install(host, "2.2"), exec_start(host)


def test_jobs_of_the_backup_are_back_and_those_of_2_4_are_gone(host, engine):
    known = jids(host)
    present = {j["jid"] for j in engine.jobs()}
    assert known["kept"] in present
    assert known["lost"] not in present and known["running"] not in present


def test_logs_of_reused_job_ids_purged_and_restored_jobs_kept(host):
    known = jids(host)
    logs = f"{DATA_DIR}/cmd-logs/{OWNER}"
    assert host.file(f"{logs}/J{known['kept']}").is_directory
    for name in ("lost", "running"):
        assert not host.file(f"{logs}/J{known[name]}").exists, f"logs of J{known[name]} ({name}) not purged"


def test_job_counter_set_and_next_job_gets_101(engine):
    params = engine.params("2.2")
    assert params["jidcounter"] == "100"
    jid = engine.spool("2.2", "verify: after the downgrade", ["/usr/local/bin/render-sim", "--seconds", "0"])
    assert jid == 101
    engine.wait_tasks(jid, "done", timeout=120)


def test_the_nine_steps_in_order(host, engine):
    known = jids(host)
    running = known["running"]
    engine_log = journal(host, "tractor-engine")
    blade_log = journal(host, "tractor-blade")
    # Steps 1-2: with dispatching paused, `tq retry active` retried the running task: the engine
    # logged the retry, the blade killed the command, and never got the task again (paused).
    retried = first(engine_log, rf"retry J{running} T1 \(was active\)")
    killed_command = first(blade_log, rf"J{running}\b.*SIGTERM|SIGTERM.*J{running}\b")
    starts = [t for t, text in blade_log if re.search(rf"J{running}\b.*started pid", text)]
    assert len(starts) == 1, f"J{running} was dispatched {len(starts)} times: step 1 did not pause it before step 2"
    # Step 3: the engine was killed (SIGKILL), not stopped.
    engine_killed = first(engine_log, r"Main process exited, code=killed, status=9/KILL")
    # Steps 4-5: the job database was replaced by the backup (files written at the restore).
    restored = float(host.check_output(f"stat -c %Z {DATA_DIR}/psql/PG_VERSION"))
    # Step 9: the old engine started.
    started = engine.status()["starttime"]
    assert retried <= killed_command + 1 and killed_command <= engine_killed, (retried, killed_command, engine_killed)
    assert engine_killed <= restored <= started + 1, (engine_killed, restored, started)
    # Step 6 started the database without a schema upgrade: the restored schema is 2.2's.
    assert engine.params("2.2")["schema-version"] == "2.2-4"


def test_the_2_4_install_is_kept(host):
    assert host.file(f"{PREFIX}/Tractor-2.4/bin/tractor-engine").exists
    assert not host.file(f"{DATA_DIR}/.renderfarm-tractor.lock").exists
    assert not host.file(f"{DATA_DIR}/.renderfarm-tractor-paused-jobs.json").exists


def test_report_says_the_backup_was_restored_because_asked():
    # one report per run: check mode (planned), converge (ok), idempotence (unchanged)
    paths = glob.glob(os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "reports", "downgrade-*", "report.json"))
    entries = [{e["engine"]: e for e in json.load(open(path))["engines"]}["downgrade-engine"] for path in paths]
    done = [entry for entry in entries if entry["result"] == "ok"]
    assert len(done) == 1, [entry["result"] for entry in entries]
    database = done[0]["database"]
    assert (database["path"], database["reason"]) == ("restored", "downgrade_restore is always"), database
    # without the option both schema versions (2.2-4) would have kept it
    assert database["schema_live"] == database["schema_backup"] == "2.2-4", database
