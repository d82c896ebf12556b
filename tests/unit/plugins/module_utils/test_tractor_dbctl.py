"""tractor_dbctl: the parsers of tractor-dbctl's output, and the Dbctl runner (run_command mocked).

The sample texts are tractor-dbctl's own words (fact sheet §1.4, §4.3).
"""

from __future__ import annotations

import json
import os
import pwd

import pytest

from ansible.module_utils import basic
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_common import (
    COMMON_REQUIRED_ONE_OF, TractorModule, common_argument_spec,
)
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_dbctl import (
    COUNTER_NOT_SET, COUNTER_SET_RE, Dbctl, parse_params, parse_status, parse_upgrade,
)

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core before 2.19
    import contextlib
    from unittest import mock

    @contextlib.contextmanager
    def patch_module_args(args=None):
        with mock.patch.object(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}).encode()):
            yield

DATA = "/var/spool/tractor/psql"


# -- parse_status --------------------------------------------------------------------------------
def test_status_running_reachable_database_exists():
    err = (f"A postgresql server is running on the data directory {DATA}.\n"
           "The postgresql server is reachable through port 9876.\n"
           "The database tractor exists.\n")
    assert parse_status(err) == dict(running=True, reachable=True, database_exists=True)


def test_status_running_reachable_database_missing():
    err = (f"A postgresql server is running on the data directory {DATA}.\n"
           "The postgresql server is reachable through port 9876.\n"
           "The database tractor does NOT exist.\n")
    assert parse_status(err) == dict(running=True, reachable=True, database_exists=False)


def test_status_running_not_reachable():
    err = (f"A postgresql server is running on the data directory {DATA}.\n"
           "The postgresql server is NOT reachable through port 9876.\n")
    assert parse_status(err) == dict(running=True, reachable=False, database_exists=False)


def test_status_stopped():
    err = f"A postgresql server is NOT running on the data directory {DATA}.\n"
    assert parse_status(err) == dict(running=False, reachable=False, database_exists=False)


@pytest.mark.parametrize("err", ["", None, "Config dir /nowhere does not exist\n",
                                 "tractor-dbctl is configured to be run by tractor; the owner of this process is root.\n"])
def test_status_unrecognised_output_is_an_error(err):
    with pytest.raises(ValueError, match="unrecognised tractor-dbctl --status output"):
        parse_status(err)


def test_status_messages_must_start_a_line():
    # A path that happens to contain the words must not count as "running".
    err = "A postgresql server is NOT running on the data directory /x/A postgresql server is running on the data directory.\n"
    assert parse_status(err)["running"] is False


# -- parse_params --------------------------------------------------------------------------------
def test_params_all_rows():
    out = ("jidcounter = 1234\n"
           "maxrecords = 10000\n"
           "archiving = 1\n"
           "schema-version = 2.2-4\n"
           "module-checksum = " + "a" * 40 + "\n")
    assert parse_params(out) == {"jidcounter": "1234", "maxrecords": "10000", "archiving": "1",
                                 "schema-version": "2.2-4", "module-checksum": "a" * 40}


def test_params_values_are_strings_and_split_once():
    assert parse_params("note = a = b\n") == {"note": "a = b"}


def test_params_ignores_lines_without_separator_and_blank_output():
    assert parse_params("\nnoise\njidcounter = 7\n   \n") == {"jidcounter": "7"}
    assert parse_params("") == {}
    assert parse_params(None) == {}


def test_params_strips_whitespace():
    assert parse_params("  jidcounter = 7  \r\n") == {"jidcounter": "7"}


# -- parse_upgrade -------------------------------------------------------------------------------
def test_upgrade_steps():
    err = ("Upgrading database schema from version 2.1-2 to version 2.2-4.\n"
           "Applying upgrade 1 of 4: Drop all views.\n"
           "Applying upgrade 2 of 4: Drop all functions.\n"
           "Applying upgrade 3 of 4: Create all views.\n"
           "Applying upgrade 4 of 4: Create all functions.\n")
    assert parse_upgrade(err) == dict(from_version="2.1-2", to_version="2.2-4", steps=[
        "Drop all views.", "Drop all functions.", "Create all views.", "Create all functions."])


def test_upgrade_after_start_messages():
    err = ("Starting postgres server on the data directory /d/psql and on port 9876.\n"
           "Upgrading database schema from version 66 to version 2.0-67.\n"
           "Applying upgrade 1 of 1: Add column.\n")
    assert parse_upgrade(err) == dict(from_version="66", to_version="2.0-67", steps=["Add column."])


@pytest.mark.parametrize("err", ["", None, "The database schema is current.\n",
                                 "No upgrades are required to be compatible with schema version 2.2-4.\n"])
def test_no_upgrade(err):
    assert parse_upgrade(err) is None


# -- the --set-job-counter messages --------------------------------------------------------------
def test_counter_messages():
    assert COUNTER_SET_RE.search("The job counter will continue from 500.\n").group(1) == "500"
    refused = ("The job counter was not updated.  The new job counter must be larger than the "
               "jidcounter displayed with the --show-params option.\n")
    assert COUNTER_NOT_SET in refused
    assert not COUNTER_SET_RE.search(refused)


# -- Dbctl with run_command mocked ---------------------------------------------------------------
@pytest.fixture
def tm(tmp_path, monkeypatch):
    install = tmp_path / "Tractor-2.2"
    (install / "config").mkdir(parents=True)
    me = pwd.getpwuid(os.geteuid()).pw_name
    (install / "config" / "tractor.config").write_text(
        '{"EngineOwner": "%s", "TractorDataDirectory": "%s"}' % (me, tmp_path / "data"))
    (install / "config" / "db.config").write_text('{"DBDataDir": "${TractorDataDirectory}/psql"}')
    site = tmp_path / "config"
    site.mkdir()
    calls = []
    replies = []

    def run_command(self, args, **kwargs):
        calls.append(list(args))
        return replies.pop(0)

    monkeypatch.setattr(AnsibleModule, "run_command", run_command)
    # The context stays open while the test runs: exit_json/fail_json need it too.
    with patch_module_args({"install_dir": str(install), "config_dir": str(site)}):
        module = AnsibleModule(argument_spec=common_argument_spec(), required_one_of=COMMON_REQUIRED_ONE_OF)
        tmod = TractorModule(module)
        tmod.calls, tmod.replies = calls, replies
        yield tmod


def test_dbctl_argv_has_configdir_before_the_operation(tm):
    argv = Dbctl(tm).argv("--set-job-counter", "5")
    assert argv == [tm.tool("tractor-dbctl"), "--configdir", tm.config_dir, "--set-job-counter", "5"]


def test_dbctl_status_and_params(tm):
    tm.replies.extend([(0, "", "A postgresql server is NOT running on the data directory /d.\n"),
                       (0, "jidcounter = 3\n", "")])
    dbctl = Dbctl(tm)
    assert dbctl.status()["running"] is False
    assert dbctl.params() == {"jidcounter": "3"}
    assert [c[-1] for c in tm.calls] == ["--status", "--show-params"]
    assert tm.commands == [] and tm.changed is False


def test_dbctl_change_is_skipped_in_check_mode(tm):
    tm.module.check_mode = True
    assert Dbctl(tm).change("--set-job-counter", "9") == ("", "")
    assert tm.calls == []
    assert tm.changed and tm.commands == [" ".join(Dbctl(tm).argv("--set-job-counter", "9"))]


def test_dbctl_failure_reports_rc_and_output(tm, capsys):
    tm.replies.append((2, "", "The postgresql server is not running.  It may be started with --start.\n"))
    with pytest.raises(SystemExit):
        Dbctl(tm).read("--show-params")
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] and result["rc"] == 2
    assert result["msg"] == ("tractor-dbctl --show-params failed: The postgresql server is not running.  "
                             "It may be started with --start.")
    assert "--show-params" in result["cmd"] and "not running" in result["stderr"]


def test_dbctl_crash_hints_at_data_dir(tm, capsys):
    tm.replies.append((1, "", "Traceback (most recent call last):\nFileNotFoundError: psql\n"))
    with pytest.raises(SystemExit):
        Dbctl(tm).read("--status")
    result = json.loads(capsys.readouterr().out)
    assert "crashed; does the data directory" in result["msg"] and result["rc"] == 1
