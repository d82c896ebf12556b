"""Two controllers race for one engine's lock.

Each controller is an ansible-playbook in its own UTS namespace (its own host name, as two AWX job
containers or two CI runners have), so neither can check the other's process: between them only
the lease counts. The engine side is one site's TractorDataDirectory on this machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tractor_ansible import REPO, ansible_env, venv_tool

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="UTS namespaces (unshare --uts) need root")

PLAYBOOK = """\
- name: A controller that takes the engine's lock and holds it
  hosts: localhost
  gather_facts: false
  vars:
    run: "{{ lookup('renderfarm.tractor.tractor_run') }}"
  tasks:
    - name: Wait for the start signal
      ansible.builtin.wait_for:
        path: "{{ go_file }}"
        timeout: 600
    - name: Take the lock
      renderfarm.tractor.tractor_lock:
        path: "{{ lock_path }}"
        run_id: "{{ run.run_id }}"
        controller_host: "{{ run.controller_host }}"
        controller_pid: "{{ run.controller_pid }}"
        controller_started: "{{ run.started }}"
        controller_user: "{{ run.user }}"
        purpose: race
        lease: "{{ lease }}"
        break_run_id: "{{ break_run_id | default(omit) }}"
      register: took
    - name: Say that this controller proceeds
      ansible.builtin.copy:
        content: "{{ took | to_json }}"
        dest: "{{ out_dir }}/{{ run.controller_host }}.json"
        mode: "0644"
    - name: Hold the lock until told to stop
      ansible.builtin.wait_for:
        path: "{{ out_dir }}/release"
        timeout: 600
"""


class Controller:
    """One ansible-playbook in a UTS namespace whose host name is ``name``."""

    def __init__(self, tmp_path, name, lock_path, lease, break_run_id=None):
        self.name, self.out_dir = name, tmp_path
        extra = dict(go_file=str(tmp_path / "go"), lock_path=lock_path, out_dir=str(tmp_path), lease=lease)
        if break_run_id:
            extra["break_run_id"] = break_run_id
        argv = [venv_tool("ansible-playbook"), str(tmp_path / "race.yml"), "-i", "localhost,", "-c", "local",
                "-e", "ansible_python_interpreter=/usr/bin/python3", "-e", json.dumps(extra)]
        script = 'hostname "$0" && exec "$@"'
        self.proc = subprocess.Popen(["unshare", "--uts", "sh", "-c", script, name] + argv, cwd=REPO,
                                     env=ansible_env({"ANSIBLE_STDOUT_CALLBACK": "default"}), text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)

    def proceeds(self):
        return (self.out_dir / f"{self.name}.json").exists()

    def result(self):
        with open(self.out_dir / f"{self.name}.json", encoding="utf-8") as handle:
            return json.load(handle)

    def finished(self):
        return self.proc.poll() is not None

    def output(self):
        return self.proc.communicate(timeout=600)[0]

    def kill(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)


def settle(controllers, timeout=600):
    """Wait until each controller has either taken the lock or ended; return the ones that proceed."""
    deadline = time.monotonic() + timeout
    while not all(c.proceeds() or c.finished() for c in controllers):
        assert time.monotonic() < deadline, "controllers did not settle:\n" + "\n".join(
            c.name for c in controllers if not (c.proceeds() or c.finished()))
        time.sleep(0.2)
    return [c for c in controllers if c.proceeds()]


def race(tmp_path, names, lock_path, lease, break_run_id=None):
    for stale in ("go", "release"):
        if (tmp_path / stale).exists():
            (tmp_path / stale).unlink()
    controllers = [Controller(tmp_path, name, lock_path, lease, break_run_id) for name in names]
    (tmp_path / "go").write_text("")
    return controllers, settle(controllers)


def read(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def test_two_controllers_one_engine(tmp_path, site):
    (tmp_path / "race.yml").write_text(PLAYBOOK)
    lock_path = os.path.join(site.data_dir, ".renderfarm-tractor.lock")

    # Two controllers at once, with a lease far longer than the test: exactly one proceeds; the
    # other is refused and told who holds the engine and how to break it.
    controllers, winners = race(tmp_path, ["ctl-a", "ctl-b"], lock_path, lease=3600)
    assert len(winners) == 1, [c.output() for c in controllers]
    holder = winners[0]
    loser = next(c for c in controllers if c is not holder)
    holding = read(lock_path)
    assert holding["controller_host"] == holder.name and holding["run_id"].startswith(holder.name + "-")
    refusal = loser.output()
    assert loser.proc.returncode != 0 and "engine locked by another run: run " + holding["run_id"] in refusal
    assert f"from controller {holder.name}, user " in refusal and "lease until" in refusal
    assert "-e tractor_lock_break=" + holding["run_id"] in refusal

    # The holder is killed: from another host nobody can see that its process is gone, so the lock
    # stays live until its lease ends. A controller started after that takes it over.
    holder.kill()
    assert read(lock_path)["run_id"] == holding["run_id"]
    second, winners = race(tmp_path, ["ctl-c"], lock_path, lease=10)
    assert not winners and "engine locked by another run" in second[0].output()
    short, winners = race(tmp_path, ["ctl-d"], lock_path, lease=3600, break_run_id=holding["run_id"])
    assert winners, short[0].output()  # broken by naming the dead run's id
    broken = winners[0].result()
    assert broken["outcome"] == "taken over" and broken["previous"]["broken"] is True
    (tmp_path / "release").write_text("")
    assert winners[0].proc.wait(timeout=600) == 0

    # A lock with a short lease, its holder killed: once the lease has ended, the next controller
    # takes it over without any option, and says why.
    os.unlink(lock_path)
    controllers, winners = race(tmp_path, ["ctl-e"], lock_path, lease=10)
    assert winners
    expires = read(lock_path)["expires"]
    winners[0].kill()
    while time.time() <= expires + 1:  # the lease's own end, read from the lock
        time.sleep(0.5)
    controllers, winners = race(tmp_path, ["ctl-f"], lock_path, lease=3600)
    assert winners, controllers[0].output()
    took = winners[0].result()
    assert took["outcome"] == "taken over" and "its lease expired" in took["previous"]["stale_reason"]
    assert took["previous"]["controller_host"] == "ctl-e"

    # Two breakers naming the live holder's run id at once: exactly one wins.
    live = read(lock_path)["run_id"]
    breakers, winners = race(tmp_path, ["ctl-g", "ctl-h"], lock_path, lease=3600, break_run_id=live)
    assert len(winners) == 1, [c.output() for c in breakers]
    loser = next(c for c in breakers if c is not winners[0])
    assert f"You asked to break run {live}, which does not hold it" in loser.output()
    assert read(lock_path)["controller_host"] == winners[0].name
    (tmp_path / "release").write_text("")
    for controller in breakers + controllers:
        controller.proc.wait(timeout=600)
