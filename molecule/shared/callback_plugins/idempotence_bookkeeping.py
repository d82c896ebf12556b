# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Molecule's stdout callback: the default one, with the time on each task banner, plus a
narrow, loud allowance for bookkeeping.

Molecule's idempotence step fails when the re-run's PLAY RECAP shows `changed=N` for any host.
A re-run of this collection's playbooks on engines that need nothing still reports changes that
are bookkeeping of the run itself, not changes of the engine host:

* the per-engine lock is taken and released again (module renderfarm.tractor.tractor_lock,
  roles/preflight/tasks/main.yml "Take the per-engine lock", roles/preflight/tasks/unlock.yml);
* the run's report is written on the controller (role renderfarm.tractor.report).

Only during Molecule's idempotence run (recognised by its --skip-tags
molecule-idempotence-notest) and only for the tasks named in $MOLECULE_IDEMPOTENCE_TOLERATE
(comma-separated `action:<FQCN>` or `role:<FQCN>` entries; molecule/config.yml sets it), this
callback prints each such change with a "tolerated" note and leaves it out of the recap's
`changed` count. Any other change still fails the idempotence step, and the scenarios'
`verify ../shared/tests/rerun` proves on the hosts that the re-run left them exactly as they
were. Empty the variable once the roles report those tasks as unchanged.
"""

from __future__ import annotations

DOCUMENTATION = r"""
    name: idempotence_bookkeeping
    type: stdout
    short_description: default output; tolerates listed bookkeeping changes in Molecule's idempotence run
    description:
      - The default stdout callback. During Molecule's idempotence run (ansible-playbook called with
        --skip-tags containing molecule-idempotence-notest), changes of the tasks listed in
        E(MOLECULE_IDEMPOTENCE_TOLERATE) are printed with a note and not counted in the recap.
    extends_documentation_fragment:
      - default_callback
      - result_format_callback
    requirements:
      - set as stdout in configuration
"""

import os
import time
from collections import defaultdict

from ansible import context
from ansible.playbook.task_include import TaskInclude
from ansible.plugins.callback.default import CallbackModule as DefaultCallback

MARKER_TAG = "molecule-idempotence-notest"


def _rules():
    rules = []
    for entry in os.environ.get("MOLECULE_IDEMPOTENCE_TOLERATE", "").split(","):
        kind, _, name = entry.strip().partition(":")
        if kind in ("action", "role") and name:
            rules.append((kind, name))
    return rules


def _idempotence_run():
    skip = context.CLIARGS.get("skip_tags") or ()
    if isinstance(skip, str):
        skip = (skip,)
    return any(MARKER_TAG in str(tag) for tag in skip)


class CallbackModule(DefaultCallback):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "idempotence_bookkeeping"

    def __init__(self):
        super().__init__()
        self._tolerated = defaultdict(set)  # host -> task uuids whose change is tolerated
        self._rules = None
        self._active = None

    def _match(self, task):
        if self._active is None:
            self._active = _idempotence_run()
            self._rules = _rules()
        if not self._active:
            return None
        action = getattr(task, "resolved_action", None) or task.action
        role = task._role.get_name() if task._role else ""
        for kind, name in self._rules:
            if kind == "action" and action == name:
                return "action %s" % name
            if kind == "role" and role and (role == name or name.endswith("." + role) or role.endswith("." + name)):
                return "role %s" % name
        return None

    def _print_task_banner(self, task):
        # The time of day on every task banner: where a scenario spends its time.
        super()._print_task_banner(task)
        self._display.display("  started %s" % time.strftime("%H:%M:%S"))

    def v2_runner_on_ok(self, result):
        super().v2_runner_on_ok(result)
        if isinstance(result.task, TaskInclude) or not result.result.get("changed", False):
            return
        reason = self._match(result.task)
        if reason:
            host = result.host.get_name()
            self._tolerated[host].add(result.task._uuid)
            self._display.display("  [idempotence] tolerated for %s: bookkeeping of the run (%s), "
                                  "not a change of the host" % (host, reason))

    def v2_playbook_on_stats(self, stats):
        for host, tasks in self._tolerated.items():
            if host in stats.changed:
                stats.changed[host] = max(0, stats.changed[host] - len(tasks))
        if self._tolerated:
            self._display.banner("IDEMPOTENCE: TOLERATED BOOKKEEPING")
            for host in sorted(self._tolerated):
                self._display.display("%s: %d task(s) left out of the changed count (MOLECULE_IDEMPOTENCE_TOLERATE)"
                                      % (host, len(self._tolerated[host])))
        super().v2_playbook_on_stats(stats)
