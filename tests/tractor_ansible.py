"""Running the collection for real: real ansible(-playbook) runs of the collection against emulated engines.

Each module call is a real ``ansible localhost -m renderfarm.tractor.<module>`` run from the
repository root (so ansible.cfg puts this checkout on the collections path), with the module
executed by the system Python, optionally through ``become_user`` -- as a site runs it. The
``ansible``/``ansible-playbook`` process is a fork of a pre-imported controller
(tests/ansible_zygote.py says why and when) unless TRACTOR_TESTS_ANSIBLE_ZYGOTE=0.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
# "localhost | SUCCESS =>", "localhost | CHANGED =>", "localhost | FAILED! =>" (the minimal callback).
RESULT_RE = re.compile(r"^localhost \| (\w+)!?(?: \| rc=\d+)? =>", re.M)


def venv_tool(name: str) -> str:
    candidate = REPO / ".venv" / "bin" / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not installed: run `make venv`")
    return found


def ansible_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.update({
        "ANSIBLE_STDOUT_CALLBACK": "minimal",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
        "ANSIBLE_PIPELINING": "1",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        "PATH": f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
    })
    env.pop("ANSIBLE_CONFIG", None)
    env.update(extra or {})
    return env


class _Zygote:
    """One tests/ansible_zygote.py server per test process, started on first use."""

    CLIS = ("ansible", "ansible-playbook")

    def __init__(self, env: dict):
        self.env = env
        self.lock = threading.Lock()
        self.python = venv_tool("python")
        self.proc = subprocess.Popen([self.python, str(REPO / "tests" / "ansible_zygote.py")], cwd=REPO,
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    @staticmethod
    def _settings(env: dict) -> dict:
        # What ansible-core reads when it is imported: its ANSIBLE_* settings and HOME (~/.ansible).
        return {k: v for k, v in env.items() if k.startswith("ANSIBLE_") or k == "HOME"}

    def serves(self, argv: list[str], env: dict) -> bool:
        """Whether a fork of this server makes the run a fresh argv process in env would make."""
        return (self.proc.poll() is None and os.path.basename(argv[0]) in self.CLIS
                and os.path.dirname(argv[0]) == os.path.dirname(self.python)
                and self._settings(env) == self._settings(self.env))

    def run(self, argv: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory(prefix="ansible-run-") as tmp, self.lock:
            out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
            request = {"argv": argv, "env": env, "cwd": str(REPO), "stdout": out, "stderr": err, "timeout": timeout}
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            answer = self.proc.stdout.readline()
            if not answer:
                raise RuntimeError(f"the ansible zygote (pid {self.proc.pid}) died; see the test's stderr")
            rc = json.loads(answer)["rc"]
            stdout = open(out, encoding="utf-8", errors="replace").read()
            stderr = open(err, encoding="utf-8", errors="replace").read()
        if rc is None:
            raise subprocess.TimeoutExpired(argv, timeout, output=stdout, stderr=stderr)
        return subprocess.CompletedProcess(argv, rc, stdout, stderr)


_ZYGOTE: dict[int, _Zygote] = {}  # by pid: a forked test process must not share its parent's


def run_ansible(argv: list[str], env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """``subprocess.run(argv)`` of ansible or ansible-playbook from the repository root, output
    captured as text; run as a fork of tests/ansible_zygote.py when that is the same run (see there)."""
    full_env = ansible_env(env)
    if os.environ.get("TRACTOR_TESTS_ANSIBLE_ZYGOTE", "1") != "0":
        zygote = _ZYGOTE.get(os.getpid())
        if zygote is None:
            zygote = _ZYGOTE[os.getpid()] = _Zygote(ansible_env())
        if zygote.serves(argv, full_env):
            return zygote.run(argv, full_env, timeout)
    return subprocess.run(argv, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout, check=False)


class Ansible:
    """Runs modules and playbooks of renderfarm.tractor for real."""

    def __init__(self, owner_name: str):
        self.owner_name = owner_name

    def module(self, name: str, args: dict, check: bool = False, diff: bool = False,
               become: bool = False, env: dict | None = None, timeout: int = 300) -> dict:
        argv = [venv_tool("ansible"), "localhost", "-c", "local",
                "-e", "ansible_python_interpreter=/usr/bin/python3",
                "-m", f"renderfarm.tractor.{name}", "-a", json.dumps(args)]
        if check:
            argv.append("--check")
        if diff:
            argv.append("--diff")
        if become and os.geteuid() == 0:
            argv += ["--become", "--become-user", self.owner_name, "--become-method", "su"]
        proc = run_ansible(argv, env, timeout)
        matches = list(RESULT_RE.finditer(proc.stdout))
        if not matches:
            raise AssertionError(f"no module result in ansible output (rc={proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        last = matches[-1]
        result = json.loads(proc.stdout[last.end():])
        result["_status"] = last.group(1)
        # The callback leaves "failed" out of the JSON it prints; put it back so that a failed
        # module never passes for an unchanged one.
        if last.group(1) in ("FAILED", "UNREACHABLE"):
            result["failed"] = True
        result["_output"] = proc.stdout[:last.start()]
        result["_stderr"] = proc.stderr  # the module's warnings ("[WARNING]: ...") are printed there
        return result

    def playbook(self, playbook: str, extra_vars: dict | None = None, check: bool = False,
                 diff: bool = False, inventory: str | None = None, env: dict | None = None,
                 args: list[str] | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
        argv = [venv_tool("ansible-playbook"), playbook]
        argv += ["-i", inventory] if inventory else ["-i", "localhost,", "-c", "local",
                                                      "-e", "ansible_python_interpreter=/usr/bin/python3"]
        if extra_vars:
            argv += ["-e", json.dumps(extra_vars)]
        if check:
            argv.append("--check")
        if diff:
            argv.append("--diff")
        argv += args or []
        return run_ansible(argv, env, timeout)


def changed(result: dict) -> bool:
    assert not result.get("failed"), json.dumps(result, indent=2)
    return bool(result.get("changed"))
