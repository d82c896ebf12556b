"""A pre-imported ansible controller for the test harness: each run is a fork of it.

Every ``ansible`` or ``ansible-playbook`` process spends about a CPU second importing ansible-core
before it does anything; the suites start hundreds of them and the machine they run on has two
cores, so that import was a large share of ``make test``. This server imports the two CLIs once
and forks a child per run, which then runs exactly what the ``ansible``/``ansible-playbook``
scripts run (``<CLI>.cli_executor(argv)``) with the run's own argv, environment, working directory
and stdin/stdout/stderr -- the same code path, just not re-imported. It is how ansible-core
itself starts its task workers (forks of the controller that exit with ``os._exit``).

ansible-core reads its configuration (``ANSIBLE_*`` variables, ansible.cfg, ``~/.ansible``) when
it is imported, so a server only runs requests whose ``ANSIBLE_*`` variables, HOME, working
directory and venv are the ones it was started with; tractor_ansible.run_ansible() starts a plain process for any other
(and for everything when TRACTOR_TESTS_ANSIBLE_ZYGOTE=0). Background runs that tests interrupt
(signals to a process group) are always plain processes.

Never shipped (tests/ is not part of the collection); runs on the venv's Python:
``python tests/ansible_zygote.py`` with requests as JSON lines on stdin, one JSON line per answer.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback


def _run_child(request: dict) -> None:
    """In the forked child: become the requested ansible run, then exit with its code."""
    code = 250
    try:
        sys.stdout = sys.__stdout__  # the server pointed it at stderr
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        stdin = os.open(os.devnull, os.O_RDONLY)
        stdout = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        stderr = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(stdin, 0)
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        for fd in (stdin, stdout, stderr):
            os.close(fd)
        argv = list(request["argv"])
        sys.argv = argv
        cli = CLIS[os.path.basename(argv[0])]
        try:
            cli.cli_executor(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 -- whatever happened must reach the test, then exit
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _wait(pid: int, timeout: float) -> int | None:
    """The child's exit code (negative: killed by that signal), None after a timeout (then killed)."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def serve() -> None:
    answers = sys.stdout
    sys.stdout = sys.stderr  # nothing ansible prints at import may corrupt the answers
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _run_child(request)
        rc = _wait(pid, request["timeout"])
        answers.write(json.dumps({"rc": rc, "pid": pid}) + "\n")
        answers.flush()


if __name__ == "__main__":
    from ansible.cli.adhoc import AdHocCLI
    from ansible.cli.playbook import PlaybookCLI

    CLIS = {"ansible": AdHocCLI, "ansible-playbook": PlaybookCLI}
    serve()
