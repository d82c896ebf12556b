"""Security properties of the collection: file modes and owners, private scratch space, no shell,
credentials never logged.
"""

from __future__ import annotations

import ast
import json
import os
import pwd
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tractor_ansible import REPO, ansible_env, venv_tool
from tractor_farm import Watcher, engine_processes, wait_for
from tractor_sites import EngineProc

PLUGINS = REPO / "plugins"
SECRET = "S3cr3t-tractor-pw-7f3a9c"  # a password that must never be written anywhere


def stop_engine(site):
    for pid in engine_processes(site):
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not engine_processes(site), 120, "the engine to exit")


# -- backups, manifests and scratch directories ----------------------------------------------------
def test_backups_and_manifests_are_0600_owned_by_the_engine_owner_and_scratch_dirs_private(farm, site, ansible):
    farm.add("prod", site, "2.2")
    farm.launch(("prod", "2.2"))
    EngineProc(site, None).spool({"title": "j", "tasks": [{"title": "t", "argv": ["true"]}]})
    stop_engine(site)
    dest = os.path.join(site.base, "backups")
    os.makedirs(dest, mode=0o755)
    os.chown(dest, site.owner.pw_uid, site.owner.pw_gid)
    archive = os.path.join(dest, "db.tgz")

    def watch_scratch(w):
        """Record the mode and owner of every temporary file and scratch directory while they exist."""
        w.seen = {}
        while not w.finished.is_set():
            for name in os.listdir(dest):
                if name.startswith(".") and name not in w.seen:
                    try:
                        st = os.lstat(os.path.join(dest, name))
                    except FileNotFoundError:
                        continue
                    w.seen[name] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid)
            w.finished.wait(0.005)

    watcher = Watcher("scratch", watch_scratch)
    watcher.start()
    result = ansible.module("tractor_db", {"install_dir": site.installs("2.2"), "config_dir": site.config_dir,
                                           "state": "backup", "path": archive, "verify": "restore"})
    watcher.finish()
    assert not result.get("failed"), result
    assert result["verification"]["scratch_removed"] is True
    for path in (archive, archive + ".sha256", archive + ".manifest.json"):
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o600, path
        assert st.st_uid == site.owner.pw_uid, (path, pwd.getpwuid(st.st_uid).pw_name)
    scratch = {n: v for n, v in watcher.seen.items() if n.startswith(".tractor-db-verify-")}
    temporary = {n: v for n, v in watcher.seen.items() if ".tmp-" in n}
    assert scratch, f"the scratch directory of the restore check was never seen: {watcher.seen}"
    assert temporary, f"the temporary archive was never seen: {watcher.seen}"
    for name, (kind, mode, uid) in scratch.items():
        assert kind == stat.S_IFDIR and mode & 0o077 == 0, (name, oct(mode))      # private to its owner
    for name, (kind, mode, uid) in temporary.items():
        # mkstemp creates it 0600 as root; it is then handed to the EngineOwner (fchown): never
        # readable by anyone else.
        assert kind == stat.S_IFREG and mode == 0o600 and uid in (0, site.owner.pw_uid), (name, oct(mode), uid)
    assert sorted(os.listdir(dest)) == ["db.tgz", "db.tgz.manifest.json", "db.tgz.sha256"]


# -- no shell ---------------------------------------------------------------------------------------
SHELL_CALLS = {"system", "popen", "getoutput", "getstatusoutput", "spawnl", "spawnlp", "execl", "execlp"}
COMMAND_CALLS = {"run_command", "run", "Popen", "call", "check_call", "check_output"}


def shell_problems(path: Path) -> list[str]:
    """Shell use in one Python file: shell=True, use_unsafe_shell, os.system/popen and friends,
    and commands given as a string instead of an argv list."""
    problems = []
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
        where = f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path.name}:{node.lineno}"
        for keyword in node.keywords:
            if keyword.arg in ("shell", "use_unsafe_shell") and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is False):
                problems.append(f"{where}: {name}({keyword.arg}=...)")
        if owner in ("os", "commands", "subprocess") and name in SHELL_CALLS:
            problems.append(f"{where}: {owner}.{name}()")
        if name in COMMAND_CALLS and node.args and owner != "self":
            first = node.args[0]
            if isinstance(first, (ast.Constant, ast.JoinedStr, ast.BinOp)) and not (
                    isinstance(first, ast.Constant) and not isinstance(first.value, str)):
                problems.append(f"{where}: {name}() with a command string")
    return problems


def test_no_shell_anywhere_in_plugins():
    files = sorted(PLUGINS.rglob("*.py"))
    assert len(files) >= 10
    problems = [p for f in files for p in shell_problems(f)]
    assert problems == []
    text = "\n".join(f.read_text(encoding="utf-8") for f in files)
    for pattern in (r"shell\s*=\s*True", r"use_unsafe_shell\s*=\s*True", r"\bos\.system\(", r"\bos\.popen\(",
                    r"ansible\.builtin\.shell", r"/bin/sh -c"):
        assert not re.search(pattern, text), pattern


def test_the_shell_checker_finds_shell_use(tmp_path):
    """The checker itself: it must flag each form it claims to find."""
    sample = tmp_path / "shell_sample.py"
    sample.write_text("import os, subprocess\n"
                      "def f(module, x):\n"
                      "    subprocess.run('ls ' + x, shell=True)\n"
                      "    module.run_command('tar cf %s' % x, use_unsafe_shell=True)\n"
                      "    os.system('id')\n"
                      "    subprocess.check_output(f'echo {x}')\n"
                      "    module.run_command(['tar', 'cf', x])\n", encoding="utf-8")
    found = shell_problems(sample)
    assert len(found) == 6, found  # shell=True, string, use_unsafe_shell, string, os.system, f-string


# -- credentials --------------------------------------------------------------------------------------
def module_specs():
    """{module: argument_spec} of every module, captured from a real AnsibleModule construction."""
    sys.path.insert(0, str(REPO / ".collections"))
    from unittest import mock
    from ansible.module_utils import basic
    import importlib

    specs = {}

    class Captured(Exception):
        pass

    def capture(self, argument_spec, *args, **kwargs):
        specs[current] = argument_spec
        raise Captured()

    for path in sorted((PLUGINS / "modules").glob("tractor_*.py")):
        current = path.stem
        module = importlib.import_module(f"ansible_collections.renderfarm.tractor.plugins.modules.{current}")
        if not hasattr(module, "main"):
            # the documentation of an action plugin (tractor_report): its arguments are checked below
            continue
        with mock.patch.object(basic.AnsibleModule, "__init__", capture):
            try:
                module.main()
            except Captured:
                pass
    return specs


def test_credentials_are_no_log():
    specs = module_specs()
    assert set(specs) == {"tractor_db", "tractor_engine", "tractor_info", "tractor_jobcounter", "tractor_lock"}
    for name, spec in specs.items():
        for option, definition in spec.items():
            if re.search(r"pass(word)?|secret|token|credential|key$", option):
                assert definition.get("no_log") is True, f"{name}: {option} is not no_log"
    # tractor_report runs on the controller (plugins/action) and takes no credential at all
    from ansible_collections.renderfarm.tractor.plugins.action.tractor_report import ARGUMENT_SPEC
    assert not [option for option in ARGUMENT_SPEC if re.search(r"pass(word)?|secret|token|credential|key$", option)]
    assert all(specs[m]["engine_password"]["no_log"] is True
               for m in ("tractor_db", "tractor_engine", "tractor_info", "tractor_jobcounter"))


def test_the_engine_password_is_never_written_anywhere(farm, site, ansible, tmp_path):
    """A module given engine_password, run with -vvv and a log file: the password appears in no
    output, no Ansible log, no engine log and no file the run wrote or touched."""
    farm.add("prod", site, "2.2")
    farm.launch(("prod", "2.2"))
    engine = EngineProc(site, None)
    jid = engine.spool({"title": "j", "tasks": [{"title": "t", "argv": ["true"]}]})
    site.start_blade("2.2", "blade")
    engine.wait_tasks(jid, lambda ts: ts[0]["state"] == "done", timeout=60)
    log = tmp_path / "ansible.log"
    args = {"install_dir": site.installs("2.2"), "config_dir": site.config_dir, "service_manager": "direct",
            "engine_password": SECRET, "dispatching": "paused", "retry_active": True}
    argv = [venv_tool("ansible"), "localhost", "-c", "local", "-e", "ansible_python_interpreter=/usr/bin/python3",
            "-m", "renderfarm.tractor.tractor_engine", "-a", json.dumps(args), "-vvv"]
    proc = subprocess.run(argv, cwd=REPO, env=ansible_env({"ANSIBLE_LOG_PATH": str(log)}), capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert '"state": "running"' in proc.stdout  # the module ran, with the password among its arguments
    places = {"stdout": proc.stdout, "stderr": proc.stderr}
    for root in (tmp_path, site.base, REPO / "tractor-reports", farm.base):
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != "psql"]
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    places[path] = open(path, encoding="utf-8", errors="replace").read()
                except OSError:
                    pass
    assert log.exists() and "tractor_engine" in log.read_text(encoding="utf-8")
    leaks = [where for where, text in places.items() if SECRET in text]
    assert leaks == []
    # PostgreSQL's own log and the job database see nothing either.
    psql_logs = [os.path.join(dp, f) for dp, _, fs in os.walk(site.db_dir) for f in fs if "log" in dp or f == "logfile"]
    assert not [p for p in psql_logs if SECRET in open(p, encoding="utf-8", errors="replace").read()]
