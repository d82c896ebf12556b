"""The harness's forked ansible runs (tests/ansible_zygote.py) are the runs a fresh process makes."""

from __future__ import annotations

import json
import subprocess

import pytest

from tractor_ansible import REPO, _Zygote, ansible_env, venv_tool

LOCAL = ["localhost", "-c", "local", "-i", "localhost,", "-e", "ansible_python_interpreter=/usr/bin/python3"]


def both(argv):
    """(a fresh process's run, a forked run) of argv."""
    fresh = subprocess.run(argv, cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=300,
                           check=False)
    zygote = _Zygote(ansible_env())
    try:
        assert zygote.serves(argv, ansible_env())
        forked = zygote.run(argv, ansible_env(), 300)
    finally:
        zygote.proc.stdin.close()
        zygote.proc.wait(30)
    return fresh, forked


def test_a_forked_run_prints_and_exits_as_a_fresh_process():
    argv = [venv_tool("ansible"), *LOCAL, "-m", "ansible.builtin.command", "-a", "echo from-the-module"]
    fresh, forked = both(argv)
    assert fresh.returncode == forked.returncode == 0, (fresh, forked)
    assert "from-the-module" in fresh.stdout and "from-the-module" in forked.stdout

    # a failing module: the same exit code (2) and message
    argv = [venv_tool("ansible"), *LOCAL, "-m", "ansible.builtin.command", "-a", "/nonexistent/tool"]
    fresh, forked = both(argv)
    assert fresh.returncode == forked.returncode == 2, (fresh, forked)
    assert "No such file or directory" in fresh.stdout + fresh.stderr
    assert "No such file or directory" in forked.stdout + forked.stderr


def test_a_forked_playbook_sees_the_run_environment_and_variables(tmp_path):
    playbook = tmp_path / "play.yml"
    playbook.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                        "    - ansible.builtin.debug:\n"
                        "        msg: \"{{ lookup('ansible.builtin.env', 'HARNESS_PROBE') }} {{ extra }}\"\n")
    argv = [venv_tool("ansible-playbook"), str(playbook), "-c", "local", "-i", "localhost,",
            "-e", json.dumps({"extra": "from-extra-vars"})]
    zygote = _Zygote(ansible_env())
    try:
        proc = zygote.run(argv, ansible_env({"HARNESS_PROBE": "from-the-environment"}), 300)
    finally:
        zygote.proc.stdin.close()
        zygote.proc.wait(30)
    assert proc.returncode == 0, proc
    assert "from-the-environment from-extra-vars" in proc.stdout


def test_other_ansible_settings_or_tools_are_not_forked():
    zygote = _Zygote(ansible_env())
    try:
        argv = [venv_tool("ansible"), *LOCAL, "-m", "ansible.builtin.ping"]
        assert zygote.serves(argv, ansible_env())
        assert not zygote.serves(argv, ansible_env({"ANSIBLE_PIPELINING": "0"}))
        assert not zygote.serves(argv, ansible_env({"HOME": "/nonexistent"}))
        assert not zygote.serves([venv_tool("ansible-inventory"), "--list"], ansible_env())
        assert not zygote.serves(["/usr/bin/ansible", *argv[1:]], ansible_env())
    finally:
        zygote.proc.stdin.close()
        zygote.proc.wait(30)
    assert not zygote.serves(argv, ansible_env())  # a server that is gone serves nothing


def test_a_run_past_its_timeout_is_killed_and_reported_as_subprocess_does():
    playbook = [venv_tool("ansible"), *LOCAL, "-m", "ansible.builtin.command", "-a", "sleep 20"]
    zygote = _Zygote(ansible_env())
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            zygote.run(playbook, ansible_env(), 3)
        # the server goes on serving
        assert zygote.run([venv_tool("ansible"), *LOCAL, "-m", "ansible.builtin.ping"], ansible_env(), 300).returncode == 0
    finally:
        zygote.proc.stdin.close()
        zygote.proc.wait(30)
