"""tractor_jobcounter with tractor-dbctl replaced by a fake (run_command is the only thing mocked).

The fake answers --show-params and --set-job-counter with tractor-dbctl's own words and exit codes
(fact sheet §1.4, §1.6): a refused lower value still exits 0.  The command logs are real directories
in a temporary data directory.
"""

from __future__ import annotations

import json
import os
import pwd

import pytest

from ansible.module_utils import basic
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.renderfarm.tractor.plugins.modules import tractor_jobcounter
from ansible_collections.renderfarm.tractor.plugins.modules.tractor_jobcounter import (
    cmd_logs_dir_from_config, list_job_dirs, parse_threshold,
)
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_config import SiteConfig

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core before 2.19
    import contextlib
    from unittest import mock

    @contextlib.contextmanager
    def patch_module_args(args=None):
        with mock.patch.object(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}).encode()):
            yield

ME = pwd.getpwuid(os.geteuid()).pw_name
NOT_RUNNING = "The postgresql server is not running.  It may be started with --start.\n"
NOT_UPDATED = ("The job counter was not updated.  The new job counter must be larger than the "
               "jidcounter displayed with the --show-params option.\n")
STOCK_STARTUP = ("'${TractorInstallDirectory}/bin/tractor-cmdlogger' "
                 "--filetemplate='${TractorDataDirectory}/cmd-logs/%u/J%j/T%t.log' --port=9180")


class FakeDbctl:
    """tractor-dbctl's --show-params / --set-job-counter against an in-memory param table."""

    def __init__(self, counter=0):
        self.counter = counter
        self.running = True
        self.calls = []
        self.spooled_meanwhile = 0  # jobs an engine spools between the read and the set
        self.override = {}  # operation -> (rc, out, err)

    def __call__(self, module, args, **kwargs):
        args = list(args)
        self.calls.append(args)
        operation = next(a for a in args if a.startswith("--") and a != "--configdir")
        if operation in self.override:
            return self.override[operation]
        if not self.running:
            return 2, "", NOT_RUNNING
        if operation == "--show-params":
            return 0, (f"jidcounter = {self.counter}\nmaxrecords = 10000\narchiving = 1\n"
                       "schema-version = 2.2-4\n"), ""
        if operation == "--set-job-counter":
            value = int(args[args.index(operation) + 1])
            self.counter += self.spooled_meanwhile
            if self.counter < value:
                self.counter = value
                return 0, f"The job counter will continue from {value}.\n", ""
            return 0, NOT_UPDATED, ""
        raise AssertionError(f"unexpected tractor-dbctl call {args}")

    def ops(self):
        return [next(a for a in c if a.startswith("--") and a != "--configdir") for c in self.calls]


@pytest.fixture
def site(tmp_path):
    install = tmp_path / "Tractor-2.2"
    (install / "config").mkdir(parents=True)
    (install / "bin").mkdir()
    data = tmp_path / "data"
    data.mkdir()
    (install / "config" / "tractor.config").write_text(
        '{"EngineOwner": "tractor", "TractorDataDirectory": "/var/spool/tractor",\n'
        ' "SiteCmdLogServerStartup": "%s"}\n' % STOCK_STARTUP)
    (install / "config" / "db.config").write_text('{"DBDataDir": "${TractorDataDirectory}/psql"}\n')
    config = tmp_path / "config"
    config.mkdir()
    (config / "tractor.config").write_text(f'{{"EngineOwner": "{ME}", "TractorDataDirectory": "{data}"}}\n')

    class Site:
        pass

    s = Site()
    s.install, s.config, s.data, s.logs = str(install), str(config), data, data / "cmd-logs"
    s.args = {"install_dir": s.install, "config_dir": s.config}
    return s


@pytest.fixture
def dbctl(monkeypatch):
    fake = FakeDbctl(counter=40)

    def run_command(module, args, **kwargs):
        return fake(module, args, **kwargs)

    monkeypatch.setattr(AnsibleModule, "run_command", run_command)
    return fake


def run(args, capsys, check=False, diff=False):
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            tractor_jobcounter.main()
    return json.loads(capsys.readouterr().out)


def make_logs(root, layout):
    """layout: {owner: [jid, ...]} -> J<jid>/T1.log files."""
    for owner, jids in layout.items():
        for jid in jids:
            path = root / owner / f"J{jid}"
            path.mkdir(parents=True)
            (path / "T1.log").write_text(f"output of job {jid}\n")


def listing(root):
    return sorted(f"{owner}/{name}" for owner in os.listdir(root) if os.path.isdir(root / owner)
                  for name in os.listdir(root / owner))


# -- reading --------------------------------------------------------------------------------------
def test_reads_counter_and_next_jid(site, dbctl, capsys):
    result = run(site.args, capsys)
    assert result["changed"] is False and not result.get("failed")
    assert result["jidcounter"] == {"before": 40, "after": 40}
    assert result["next_jid"] == 41  # TractorNewJid increments, then returns
    assert result["commands"] == [] and result["removed_log_dirs"] == []
    assert dbctl.ops() == ["--show-params"]
    argv = dbctl.calls[0]
    assert argv == [os.path.join(site.install, "bin", "tractor-dbctl"), "--configdir", site.config, "--show-params"]


def test_database_not_running_is_actionable(site, dbctl, capsys):
    dbctl.running = False
    result = run(dict(site.args, value=100), capsys)
    assert result["failed"]
    assert "start it with tractor-dbctl --start-for-engine (runbook step 6) or " \
           "renderfarm.tractor.tractor_db state=started" in result["msg"].lower()
    assert result["rc"] == 2 and result["stderr"] == NOT_RUNNING and "--show-params" in result["cmd"]
    assert dbctl.ops() == ["--show-params"]


def test_crash_hints_at_data_dir(site, dbctl, capsys):
    dbctl.override["--show-params"] = (1, "", "Traceback (most recent call last):\nFileNotFoundError\n")
    result = run(site.args, capsys)
    assert result["failed"] and result["rc"] == 1
    assert "does the data directory" in result["msg"]


def test_no_jidcounter_row(site, dbctl, capsys):
    dbctl.override["--show-params"] = (0, "maxrecords = 10000\n", "")
    result = run(site.args, capsys)
    assert result["failed"] and "printed no jidcounter" in result["msg"]


# -- raising the counter --------------------------------------------------------------------------
def test_raise_in_check_mode_predicts_and_runs_nothing(site, dbctl, capsys):
    result = run(dict(site.args, value=100), capsys, check=True, diff=True)
    assert result["changed"] is True
    assert result["jidcounter"] == {"before": 40, "after": 100} and result["next_jid"] == 101
    assert result["commands"] == [" ".join([os.path.join(site.install, "bin", "tractor-dbctl"), "--configdir",
                                            site.config, "--set-job-counter", "100"])]
    assert result["diff"]["before"] == {"jidcounter": 40} and result["diff"]["after"] == {"jidcounter": 100}
    assert dbctl.ops() == ["--show-params"] and dbctl.counter == 40
    assert "would be raised from 40 to 100" in result["msg"]


def test_raise_for_real_then_idempotent(site, dbctl, capsys):
    result = run(dict(site.args, value=100), capsys)
    assert result["changed"] is True and result["jidcounter"] == {"before": 40, "after": 100}
    assert dbctl.ops() == ["--show-params", "--set-job-counter"] and dbctl.counter == 100
    assert "diff" not in result  # only in diff mode
    again = run(dict(site.args, value=100), capsys)
    assert again["changed"] is False and again["commands"] == []
    assert again["jidcounter"] == {"before": 100, "after": 100}
    assert "already 100" in again["msg"]


@pytest.mark.parametrize("check", [False, True])
def test_lower_value_fails_without_running_set(site, dbctl, capsys, check):
    result = run(dict(site.args, value=10), capsys, check=check)
    assert result["failed"]
    assert "value 10 is lower than the job counter 40" in result["msg"]
    assert "Give a value of 41 or more" in result["msg"]
    assert "The job counter was not updated" in result["msg"]
    assert result["jidcounter"] == {"before": 40, "after": 40}
    assert dbctl.ops() == ["--show-params"] and dbctl.counter == 40


@pytest.mark.parametrize("check", [False, True])
def test_lower_value_ignored_on_request(site, dbctl, capsys, check):
    result = run(dict(site.args, value=10, on_lower="ignore"), capsys, check=check, diff=True)
    assert not result.get("failed") and result["changed"] is False
    assert result["jidcounter"] == {"before": 40, "after": 40} and result["commands"] == []
    assert result["diff"]["before"] == result["diff"]["after"] == {"jidcounter": 40}
    assert dbctl.ops() == ["--show-params"]


def test_refusal_after_a_race_is_reported_not_hidden(site, dbctl, capsys):
    dbctl.spooled_meanwhile = 70  # an engine spools 70 jobs between the read and the set
    result = run(dict(site.args, value=100), capsys)
    assert result["failed"]
    assert "refused to set the job counter to 100" in result["msg"] and "is 110 now" in result["msg"]
    assert result["stdout"] == NOT_UPDATED and result["rc"] == 0
    assert result["jidcounter"] == {"before": 40, "after": 110}


def test_set_failure_reports_rc(site, dbctl, capsys):
    dbctl.override["--set-job-counter"] = (2, "", "The postgresql server is not running.  It may be started with --start.\n")
    result = run(dict(site.args, value=100), capsys)
    assert result["failed"] and result["rc"] == 2
    assert result["msg"].startswith("tractor-dbctl --set-job-counter failed")
    assert "--set-job-counter 100" in result["cmd"]


def test_set_unexpected_answer(site, dbctl, capsys):
    dbctl.override["--set-job-counter"] = (0, "something else\n", "")
    result = run(dict(site.args, value=100), capsys)
    assert result["failed"] and "unexpected answer" in result["msg"]


def test_negative_value(site, dbctl, capsys):
    result = run(dict(site.args, value=-1), capsys)
    assert result["failed"] and "value must be 0 or more" in result["msg"]
    assert dbctl.calls == []


# -- purging command logs -------------------------------------------------------------------------
def test_purge_above_last_used_check_real_repeat(site, dbctl, capsys):
    make_logs(site.logs, {"alice": [1, 39, 40, 41, 45], "bob": [40, 300]})
    before = listing(site.logs)
    args = dict(site.args, purge_logs_above="last_used")

    check = run(args, capsys, check=True, diff=True)
    assert check["changed"] is True
    expected = [str(site.logs / "alice" / "J41"), str(site.logs / "alice" / "J45"), str(site.logs / "bob" / "J300")]
    assert check["removed_log_dirs"] == expected
    assert check["commands"] == ["remove " + p for p in expected]
    assert check["purge_threshold"] == 40 and check["cmd_logs_dir"] == str(site.logs)
    assert check["diff"]["before"] == {"cmd_logs_above_40": ["alice/J41", "alice/J45", "bob/J300"]}
    assert check["diff"]["after"] == {"cmd_logs_above_40": []}
    assert listing(site.logs) == before

    real = run(args, capsys, diff=True)
    assert real["changed"] is True and real["removed_log_dirs"] == expected
    assert listing(site.logs) == ["alice/J1", "alice/J39", "alice/J40", "bob/J40"]
    assert "removed 3 command-log directories above job 40" in real["msg"]

    again = run(args, capsys, diff=True)
    assert again["changed"] is False and again["removed_log_dirs"] == [] and again["commands"] == []
    assert again["diff"]["before"] == again["diff"]["after"] == {"cmd_logs_above_40": []}


def test_purge_above_number_needs_no_database(site, dbctl, capsys):
    dbctl.running = False
    make_logs(site.logs, {"alice": [5, 6, 7]})
    result = run(dict(site.args, purge_logs_above=5), capsys)
    assert result["changed"] is True and dbctl.calls == []
    assert result["jidcounter"] is None and result["next_jid"] is None
    assert listing(site.logs) == ["alice/J5"]
    # a number given as a string works the same
    assert run(dict(site.args, purge_logs_above="5"), capsys)["changed"] is False


def test_last_used_means_after_the_raise(site, dbctl, capsys):
    make_logs(site.logs, {"alice": [41, 60, 61]})
    result = run(dict(site.args, value=60, purge_logs_above="last_used"), capsys, check=True, diff=True)
    assert result["purge_threshold"] == 60
    assert result["removed_log_dirs"] == [str(site.logs / "alice" / "J61")]
    assert result["diff"]["before"] == {"jidcounter": 40, "cmd_logs_above_60": ["alice/J61"]}
    assert result["diff"]["after"] == {"jidcounter": 60, "cmd_logs_above_60": []}
    assert len(result["commands"]) == 2 and "--set-job-counter 60" in result["commands"][0]
    real = run(dict(site.args, value=60, purge_logs_above="last_used"), capsys)
    assert real["changed"] and listing(site.logs) == ["alice/J41", "alice/J60"] and dbctl.counter == 60


def test_purge_touches_only_job_dirs_and_never_follows_symlinks(site, dbctl, capsys, tmp_path):
    outside = tmp_path / "outside"
    make_logs(outside, {"victim": [99, 100]})
    make_logs(site.logs, {"alice": [50]})
    alice = site.logs / "alice"
    (alice / "J51").symlink_to(outside / "victim" / "J99")   # a job-dir name that is a link
    (site.logs / "mallory").symlink_to(outside / "victim")     # an owner dir that is a link
    (alice / "J52").write_text("a file, not a directory\n")
    for name in ("J53x", "j54", "J", "J-55", "J 56", "T57", "J٥٨"):  # not exactly J<ASCII digits>
        (alice / name).mkdir()
    (site.logs / "J60").mkdir()                                  # not under an owner
    (alice / "sub" / "J61").mkdir(parents=True)                  # too deep
    result = run(dict(site.args, purge_logs_above=0), capsys)
    assert result["removed_log_dirs"] == [str(alice / "J50")]
    assert sorted(result["skipped_symlinks"]) == [str(alice / "J51"), str(site.logs / "mallory")]
    assert "left symbolic links" in json.dumps(result.get("warnings", []))  # structured since core 2.19
    assert sorted(os.listdir(outside / "victim")) == ["J100", "J99"]
    assert (outside / "victim" / "J99" / "T1.log").exists()
    assert (alice / "J51").is_symlink() and (alice / "J52").is_file()
    assert sorted(os.listdir(alice)) == sorted(["J51", "J52", "J53x", "j54", "J", "J-55", "J 56", "T57", "J٥٨", "sub"])
    assert (site.logs / "J60").is_dir() and (alice / "sub" / "J61").is_dir()


def test_cmd_logs_dir_that_is_a_symlink_is_followed_once(site, dbctl, capsys, tmp_path):
    real_logs = tmp_path / "bigdisk" / "cmd-logs"
    make_logs(real_logs, {"alice": [1, 2]})
    site.logs.symlink_to(real_logs)
    result = run(dict(site.args, purge_logs_above=1), capsys)
    assert result["cmd_logs_dir"] == str(real_logs)
    assert result["removed_log_dirs"] == [str(real_logs / "alice" / "J2")]


def test_missing_cmd_logs_dir_is_nothing_to_do(site, dbctl, capsys):
    result = run(dict(site.args, purge_logs_above=3), capsys, diff=True)
    assert result["changed"] is False and result["removed_log_dirs"] == []
    assert "does not exist" in result["msg"]


def test_explicit_cmd_logs_dir(site, dbctl, capsys, tmp_path):
    share = tmp_path / "share"
    make_logs(share, {"alice": [1, 2]})
    make_logs(site.logs, {"alice": [2]})
    result = run(dict(site.args, purge_logs_above=1, cmd_logs_dir=str(share)), capsys)
    assert result["removed_log_dirs"] == [str(share / "alice" / "J2")]
    assert listing(site.logs) == ["alice/J2"]


def test_nonstandard_log_template_asks_for_cmd_logs_dir(site, dbctl, capsys):
    with open(os.path.join(site.config, "tractor.config"), "w") as handle:
        handle.write(f'{{"EngineOwner": "{ME}", "TractorDataDirectory": "{site.data}", '
                     '"SiteCmdLogServerStartup": "tractor-cmdlogger --filetemplate=/logs/%j-%t.log"}\n')
    result = run(dict(site.args, purge_logs_above=1), capsys)
    assert result["failed"] and "set cmd_logs_dir" in result["msg"] and "/logs/%j-%t.log" in result["msg"]


@pytest.mark.parametrize("bad", ["abc", "-1", -1, True, "1.5", "last-used", [1]])
def test_bad_threshold(site, dbctl, capsys, bad):
    result = run(dict(site.args, purge_logs_above=bad), capsys)
    assert result["failed"] and result["msg"].startswith("purge_logs_above must be last_used or a job ID")
    assert dbctl.calls == []


def test_removal_failure_is_reported(site, dbctl, capsys, monkeypatch):
    make_logs(site.logs, {"alice": [1, 2, 3]})

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(tractor_jobcounter.shutil, "rmtree", refuse)
    result = run(dict(site.args, purge_logs_above=1), capsys)
    assert result["failed"] and "could not remove" in result["msg"] and "EngineOwner" in result["msg"]
    assert result["removed_log_dirs"] == []


# -- helpers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [(None, None), ("last_used", "last_used"), (0, 0), (12, 12),
                                             ("12", 12), (" 7 ", 7)])
def test_parse_threshold(value, expected):
    assert parse_threshold(value) == expected


@pytest.mark.parametrize("value", [False, -3, "x", "1e3", "0x10", 2.5])
def test_parse_threshold_rejects(value):
    with pytest.raises(ValueError):
        parse_threshold(value)


def config_with(tmp_path, startup):
    install = tmp_path / "inst"
    (install / "config").mkdir(parents=True)
    text = '{"TractorDataDirectory": "/data", "EngineOwner": "t"'
    if startup is not None:
        text += ', "SiteCmdLogServerStartup": %r' % (startup,)
    (install / "config" / "tractor.config").write_text(text + "}")
    (tmp_path / "site").mkdir(exist_ok=True)
    return SiteConfig(str(install), str(tmp_path / "site"))


@pytest.mark.parametrize("startup, expected", [
    (None, "/data/cmd-logs"),
    ("", "/data/cmd-logs"),
    (STOCK_STARTUP, "/data/cmd-logs"),
    ("tractor-cmdlogger --filetemplate /net/logs/%u/J%j/T%t.log", "/net/logs"),
    ("'${TractorInstallDirectory}/bin/tractor-cmdlogger' --port=9180", "/data/cmd-logs"),
    ("tractor-cmdlogger --filetemplate='${TractorConfigDirectory}/../logs/%u/J%j/T%t.log'", "/cfg/../logs"),
])
def test_cmd_logs_dir_from_config(tmp_path, startup, expected):
    assert cmd_logs_dir_from_config(config_with(tmp_path, startup), "/inst", "/cfg") == expected


@pytest.mark.parametrize("startup", [
    "tractor-cmdlogger --filetemplate=/logs/%j/%t.log",
    "tractor-cmdlogger --filetemplate=${SomethingElse}/%u/J%j/T%t.log",
    "tractor-cmdlogger --filetemplate=relative/%u/J%j/T%t.log",
])
def test_cmd_logs_dir_from_config_rejects(tmp_path, startup):
    with pytest.raises(ValueError):
        cmd_logs_dir_from_config(config_with(tmp_path, startup), "/inst", "/cfg")


def test_list_job_dirs_sorts_numerically(tmp_path):
    make_logs(tmp_path, {"b": [10, 9], "a": [100, 2]})
    found, skipped = list_job_dirs(str(tmp_path))
    assert [(o, j) for o, j, _path in found] == [("a", 2), ("a", 100), ("b", 9), ("b", 10)]
    assert skipped == []
