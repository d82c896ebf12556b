"""renderfarm.tractor.tractor_jobcounter run for real (ansible + the emulated tractor-dbctl on PostgreSQL).

Every change is made three times -- check mode (predicted, nothing changes), for real (changed, then
verified with tractor-dbctl itself or on disk), again (unchanged) -- as the EngineOwner through
``become`` and as root (the module then switches to the EngineOwner for tractor-dbctl).
"""

from __future__ import annotations

import json
import os
import textwrap

import pytest

VERSION = "2.2"


def changed(result: dict) -> bool:
    assert not result.get("failed"), json.dumps(result, indent=2)
    return bool(result.get("changed"))


def counter(site) -> int:
    proc = site.dbctl(VERSION, "--show-params")
    assert proc.returncode == 0, proc.stderr
    return int(dict(line.split(" = ", 1) for line in proc.stdout.splitlines())["jidcounter"])


def start_db(site, jidcounter: int) -> None:
    proc = site.dbctl(VERSION, "--start-for-engine")
    assert proc.returncode == 0, proc.stderr
    if jidcounter:
        proc = site.dbctl(VERSION, "--set-job-counter", str(jidcounter))
        assert "will continue from" in proc.stdout, proc.stdout + proc.stderr
    assert counter(site) == jidcounter


def make_logs(site, layout: dict) -> str:
    """cmd-logs/<owner>/J<jid>/T1.log, owned by the EngineOwner as tractor-cmdlogger writes them."""
    root = os.path.join(site.data_dir, "cmd-logs")
    uid, gid = site.owner.pw_uid, site.owner.pw_gid
    for owner, jids in layout.items():
        for jid in jids:
            path = os.path.join(root, owner, f"J{jid}")
            os.makedirs(path, exist_ok=True)
            with open(os.path.join(path, "T1.log"), "w", encoding="utf-8") as handle:
                handle.write(f"job {jid}\n")
            for item in (root, os.path.join(root, owner), path, os.path.join(path, "T1.log")):
                os.chown(item, uid, gid)
    return root


def listing(root: str) -> list[str]:
    return sorted(f"{owner}/{name}" for owner in os.listdir(root)
                  if os.path.isdir(os.path.join(root, owner)) for name in os.listdir(os.path.join(root, owner)))


def args(site, **extra) -> dict:
    return dict(install_dir=site.installs(VERSION), config_dir=site.config_dir, **extra)


@pytest.mark.parametrize("become", [True, False], ids=["as-engine-owner", "as-root"])
def test_raise_counter_check_real_repeat(ansible, site, become):
    start_db(site, 40)

    check = ansible.module("tractor_jobcounter", args(site, value=100), check=True, diff=True, become=become)
    assert changed(check)
    assert check["jidcounter"] == {"before": 40, "after": 100} and check["next_jid"] == 101
    assert len(check["commands"]) == 1 and check["commands"][0].endswith("--set-job-counter 100")
    # The callback shows the diff (not part of the result JSON): a unified diff of before/after.
    assert '-    "jidcounter": 40' in check["_output"] and '+    "jidcounter": 100' in check["_output"]
    assert counter(site) == 40  # check mode changed nothing

    real = ansible.module("tractor_jobcounter", args(site, value=100), become=become)
    assert changed(real)
    assert real["jidcounter"] == {"before": 40, "after": 100} and real["next_jid"] == 101
    assert counter(site) == 100

    again = ansible.module("tractor_jobcounter", args(site, value=100), become=become)
    assert not changed(again) and again["commands"] == []
    assert again["jidcounter"] == {"before": 100, "after": 100}

    read = ansible.module("tractor_jobcounter", args(site), become=become)
    assert not changed(read) and read["jidcounter"]["after"] == 100 and read["next_jid"] == 101


def test_lower_value_is_refused_and_counter_untouched(ansible, site):
    start_db(site, 40)
    for check in (True, False):
        result = ansible.module("tractor_jobcounter", args(site, value=10), check=check, become=True)
        assert result["failed"], result
        assert "value 10 is lower than the job counter 40" in result["msg"]
        assert "Give a value of 41 or more" in result["msg"]
        assert result["jidcounter"] == {"before": 40, "after": 40}
        assert counter(site) == 40
    ignored = ansible.module("tractor_jobcounter", args(site, value=10, on_lower="ignore"), become=True)
    assert not changed(ignored) and ignored["jidcounter"] == {"before": 40, "after": 40}
    assert counter(site) == 40


def test_database_not_running(ansible, site):
    result = ansible.module("tractor_jobcounter", args(site), become=True)
    assert result["failed"]
    assert ("start it with tractor-dbctl --start-for-engine (runbook step 6) or "
            "renderfarm.tractor.tractor_db state=started") in result["msg"].lower()
    assert result["rc"] == 2 and "--show-params" in result["cmd"] and "not running" in result["stderr"]


@pytest.mark.parametrize("become", [True, False], ids=["as-engine-owner", "as-root"])
def test_purge_logs_above_last_used(ansible, site, become):
    start_db(site, 40)
    root = make_logs(site, {site.owner.pw_name: [1, 39, 40, 41, 45], "alice": [40, 300]})
    outside = os.path.join(site.base, "outside")
    os.makedirs(os.path.join(outside, "J999"))
    os.symlink(os.path.join(outside, "J999"), os.path.join(root, "alice", "J500"))  # never followed
    before = listing(root)
    doomed = [os.path.join(root, "alice", "J300"),
              os.path.join(root, site.owner.pw_name, "J41"), os.path.join(root, site.owner.pw_name, "J45")]
    purge = args(site, purge_logs_above="last_used")

    check = ansible.module("tractor_jobcounter", purge, check=True, diff=True, become=become)
    assert changed(check)
    assert check["removed_log_dirs"] == doomed and check["purge_threshold"] == 40
    assert check["commands"] == ["remove " + path for path in doomed]
    assert check["skipped_symlinks"] == [os.path.join(root, "alice", "J500")]
    for name in ("alice/J300", f"{site.owner.pw_name}/J41", f"{site.owner.pw_name}/J45"):
        assert f'-        "{name}"' in check["_output"]
    assert '+    "cmd_logs_above_40": []' in check["_output"]
    assert listing(root) == before

    real = ansible.module("tractor_jobcounter", purge, diff=True, become=become)
    assert changed(real) and real["removed_log_dirs"] == doomed
    assert listing(root) == sorted(["alice/J40", "alice/J500", f"{site.owner.pw_name}/J1",
                                    f"{site.owner.pw_name}/J39", f"{site.owner.pw_name}/J40"])
    assert os.path.islink(os.path.join(root, "alice", "J500")) and os.path.isdir(os.path.join(outside, "J999"))
    assert counter(site) == 40

    again = ansible.module("tractor_jobcounter", purge, diff=True, become=become)
    assert not changed(again) and again["removed_log_dirs"] == [] and again["commands"] == []
    assert "cmd_logs_above_40" not in again["_output"]  # no difference, so no diff shown


def test_purge_logs_above_number_and_raise_together(ansible, site):
    start_db(site, 40)
    root = make_logs(site, {site.owner.pw_name: [40, 41, 42, 43]})

    check = ansible.module("tractor_jobcounter", args(site, purge_logs_above=41), check=True, become=True)
    assert changed(check) and check["jidcounter"] is None  # a number needs no database
    assert [os.path.basename(p) for p in check["removed_log_dirs"]] == ["J42", "J43"]
    assert len(listing(root)) == 4

    real = ansible.module("tractor_jobcounter", args(site, purge_logs_above=41), become=True)
    assert changed(real) and listing(root) == [f"{site.owner.pw_name}/J40", f"{site.owner.pw_name}/J41"]
    again = ansible.module("tractor_jobcounter", args(site, purge_logs_above=41), become=True)
    assert not changed(again)

    # last_used after a raise: logs at or below the new counter stay (those jids will not be reused).
    both = ansible.module("tractor_jobcounter", args(site, value=41, purge_logs_above="last_used"), become=False)
    assert changed(both) and both["purge_threshold"] == 41 and both["removed_log_dirs"] == []
    assert counter(site) == 41 and len(listing(root)) == 2


def test_module_defaults_group(ansible, site, tmp_path):
    """config_dir/version/install_dir set once with module_defaults for group/renderfarm.tractor.tractor."""
    start_db(site, 40)
    playbook = os.path.join(site.base, "group.yml")
    with open(playbook, "w", encoding="utf-8") as handle:
        handle.write(textwrap.dedent(f"""\
            - hosts: localhost
              gather_facts: false
              module_defaults:
                group/renderfarm.tractor.tractor:
                  version: "{VERSION}"
                  install_dir: "{site.installs(VERSION)}"
                  config_dir: "{site.config_dir}"
              tasks:
                - name: Raise the counter with only the module's own option given
                  renderfarm.tractor.tractor_jobcounter:
                    value: 77
                  register: raised
                - name: Read it back
                  renderfarm.tractor.tractor_jobcounter:
                  register: read
                - name: Check
                  ansible.builtin.assert:
                    that:
                      - raised is changed
                      - raised.jidcounter.before == 40
                      - read is not changed
                      - read.jidcounter.after == 77
                      - read.next_jid == 78
            """))
    proc = ansible.playbook(playbook)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert counter(site) == 77
