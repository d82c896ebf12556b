"""The tractor_report action plugin: validation, atomic idempotent writes, check mode.

Importing an action plugin imports ansible's controller code, which switches module_utils into
controller mode for the whole process; the fixture imports it late and switches back afterwards so
that the module tests that follow run as they would alone.
"""

from __future__ import annotations

import os
import stat
from types import SimpleNamespace

import pytest


@pytest.fixture(scope="module")
def report():
    from ansible.module_utils import _internal
    saved = {name: getattr(_internal, name) for name in
             ("is_controller", "get_controller_serialize_map", "import_controller_module")
             if hasattr(_internal, name)}
    from ansible_collections.renderfarm.tractor.plugins.action import tractor_report
    yield tractor_report
    for name, value in saved.items():
        setattr(_internal, name, value)


def run_action(report, path, files, check_mode=False):
    """ActionModule.run with just enough of a task around it (ActionBase.run and the argument
    spec check are replaced by the tests that call this)."""
    action = report.ActionModule.__new__(report.ActionModule)
    action._task = SimpleNamespace(check_mode=check_mode, args={"path": path, "files": files})
    return action.run(task_vars={})


def test_writes_files_and_directories(report, tmp_path):
    target = tmp_path / "run-1"
    entries = report.plan(str(target), {"engines/e1.json": "{}\n", "report.md": "# r\n"})
    written = report.write(entries)
    assert sorted(written) == ["engines/e1.json", "report.md"]
    assert (target / "engines" / "e1.json").read_text() == "{}\n"
    assert stat.S_IMODE((target / "report.md").stat().st_mode) == 0o644
    assert stat.S_IMODE((target / "engines").stat().st_mode) == 0o755
    assert not list(target.rglob(".tractor_report.*"))


def test_second_write_changes_nothing(report, tmp_path):
    files = {"report.json": "{\"a\": 1}\n"}
    report.write(report.plan(str(tmp_path), files))
    before = os.stat(tmp_path / "report.json").st_ino
    entries = report.plan(str(tmp_path), files)
    assert [needed for *_x, needed in entries] == [False]
    assert report.write(entries) == []
    assert os.stat(tmp_path / "report.json").st_ino == before
    changed = report.plan(str(tmp_path), {"report.json": "{\"a\": 2}\n"})
    assert report.write(changed) == ["report.json"]
    assert (tmp_path / "report.json").read_text() == "{\"a\": 2}\n"


@pytest.mark.parametrize("path, files, message", [
    ("relative/dir", {"a": "x"}, "absolute"),
    ("{tmp}", {}, "names no file"),
    ("{tmp}", {"../escape": "x"}, "stay inside"),
    ("{tmp}", {"/etc/passwd": "x"}, "stay inside"),
    ("{tmp}", {"a/../..": "x"}, "stay inside"),
    ("{tmp}", {"a.json": {"not": "text"}}, "must be a string"),
    ("{tmp}/file", {"a": "x"}, "not a directory"),
    ("{tmp}", {"sub": "x"}, "not a regular file"),
])
def test_bad_input_fails_and_writes_nothing(report, tmp_path, path, files, message):
    (tmp_path / "file").write_text("x")
    (tmp_path / "sub").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    good_and_bad = dict(files)
    if files:
        good_and_bad["zz-good.txt"] = "y"  # a valid file beside the bad one is not written either
    with pytest.raises(report.ReportError, match=message):
        report.plan(path.format(tmp=tmp_path), good_and_bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_check_mode_writes_nothing(report, tmp_path, monkeypatch):
    monkeypatch.setattr(report.ActionBase, "run", lambda self, tmp=None, task_vars=None: {})
    monkeypatch.setattr(report.ActionModule, "validate_argument_spec",
                        lambda self, argument_spec: (None, self._task.args))
    target = tmp_path / "run"
    result = run_action(report, str(target), {"report.md": "x"}, check_mode=True)
    assert result["changed"] is True and result["written"] == ["report.md"]
    assert not target.exists()
    result = run_action(report, str(target), {"report.md": "x"})
    assert result["changed"] is True and (target / "report.md").read_text() == "x"
    result = run_action(report, str(target), {"report.md": "x"}, check_mode=True)
    assert result["changed"] is False and result["unchanged"] == ["report.md"]


def test_failure_is_reported_not_raised(report, tmp_path, monkeypatch):
    monkeypatch.setattr(report.ActionBase, "run", lambda self, tmp=None, task_vars=None: {})
    monkeypatch.setattr(report.ActionModule, "validate_argument_spec",
                        lambda self, argument_spec: (None, self._task.args))
    result = run_action(report, "not/absolute", {"a": "x"})
    assert result["failed"] is True and "absolute" in result["msg"] and result["changed"] is False
