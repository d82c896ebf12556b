# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the long states of tractor_db as an async job, printing their progress (documentation:
plugins/modules/tractor_db.py).

A backup of a large job database runs for minutes. Run as a plain module it shows nothing until
it ends, and it dies with the SSH connection. Here it runs detached on the host (ansible's own
async_wrapper, as ``async:`` would start it); every few seconds this plugin reads the module's
progress file and prints one line (``[prod] tractor_db backup: writing the archive: 412.0 MB of
1.2 GB (34 %), 42 s``) in the normal output, with no callback to install. If the controller goes
away, the job finishes on the host all the same.
"""

from __future__ import annotations

import json
import secrets
import shlex
import time

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_files import human_size
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_progress import describe

display = Display()

# The states that can run for minutes on a large job database.
LONG_STATES = frozenset(("copy", "backup", "verify", "restore"))
# Upper bound of one job on the host (async_wrapper kills it after this); a 20 GB backup with a
# restore check takes well under an hour on ordinary disks.
JOB_LIMIT_SECONDS = 6 * 3600


# Polls read the job's results file with one shell command (a cat, no module run): cheap enough
# to look often at first, as most runs on small databases end within a second or two, and the
# copy lies inside the engine's downtime. The finished result is then taken through async_status,
# as Ansible takes it. A progress line every PRINT_EVERY seconds while the job runs.
def poll_delay(elapsed):
    return 0.05 if elapsed < 2 else 0.25 if elapsed < 20 else 1.0


PRINT_EVERY = 5.0
# A job file not there yet: looked for again during this many seconds.
MISSING_JOB_GRACE = 10.0
# Keys async_status adds to the module's own result.
ASYNC_KEYS = ("ansible_job_id", "started", "finished", "results_file", "erased")


class ActionModule(ActionBase):

    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        state = self._task.args.get("state", "status")
        if self._task.async_val or self._task.check_mode or state not in LONG_STATES:
            # what the user asked for with async:, check mode, and the quick states: the plain way
            result.update(self._execute_module(task_vars=task_vars, wrap_async=self._task.async_val))
            if not self._task.async_val:
                self._remove_tmp_path(self._connection._shell.tmpdir)
            return result
        return self._run_with_progress(result, state, task_vars)

    def _run_with_progress(self, result, state, task_vars):
        async_dir = self._remote_expand_user(self.get_shell_option("async_dir", default="~/.ansible_async"))
        progress_file = self._connection._shell.join_path(
            async_dir, "renderfarm-tractor-progress-%s.json" % secrets.token_hex(8))
        module_args = dict(self._task.args, progress_file=progress_file)
        self._task.async_val = JOB_LIMIT_SECONDS
        try:
            started = self._execute_module(module_args=module_args, task_vars=task_vars, wrap_async=True)
        finally:
            self._task.async_val = 0
        jid = started.get("ansible_job_id")
        if started.get("failed") or not jid:
            result.update(started)
            return result
        host = task_vars.get("inventory_hostname", "?") if task_vars else "?"
        results_file = self._connection._shell.join_path(async_dir, jid)
        begun = time.monotonic()
        printed = begun
        while not self._job_ended(results_file, time.monotonic() - begun):
            if time.monotonic() - begun > JOB_LIMIT_SECONDS + 60:
                raise AnsibleError("the %s job %s on %s did not end within %d s"
                                   % (state, jid, host, JOB_LIMIT_SECONDS))
            if time.monotonic() - printed >= PRINT_EVERY:
                line = self._progress_line(progress_file)
                line = line or "running, %d s" % int(time.monotonic() - begun)
                display.display("[%s] tractor_db %s: %s" % (host, state, line))
                printed = time.monotonic()
            time.sleep(poll_delay(time.monotonic() - begun))
        status = self._execute_module(module_name="ansible.legacy.async_status", task_vars=task_vars,
                                      module_args=dict(jid=jid, _async_dir=async_dir))
        self._low_level_execute_command("rm -f %s" % shlex.quote(results_file), sudoable=True)
        for key in ASYNC_KEYS:
            status.pop(key, None)
        for key in ("stdout", "stderr", "stdout_lines", "stderr_lines"):
            if not status.get(key):
                status.pop(key, None)
        result.update(status)
        self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    def _read(self, path):
        """A small file on the host, or None (one shell command, as the become user when there is one)."""
        found = self._low_level_execute_command("cat %s" % shlex.quote(path), sudoable=True)
        if found.get("rc") != 0:
            return None
        return found.get("stdout")

    def _job_ended(self, results_file, elapsed):
        """async_wrapper writes {"started": 1, "finished": 0, ...} first, then the module's result."""
        text = self._read(results_file)
        if text is None:
            # still none after a while: the job is gone, and async_status says so, as Ansible does
            return elapsed > MISSING_JOB_GRACE
        try:
            data = json.loads(text)
        except ValueError:
            return False  # being written
        return not (isinstance(data, dict) and data.get("started") and not data.get("finished"))

    def _progress_line(self, path):
        """The module's progress as one line, or None when it cannot be read (not written yet)."""
        text = self._read(path)
        try:
            data = json.loads(text) if text else None
        except ValueError:
            return None
        return describe(data, human_size) if isinstance(data, dict) else None
