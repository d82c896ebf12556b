# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: tractor_run
short_description: Identify the current ansible-playbook run, for the per-engine lock
version_added: 1.0.0
description:
  - Returns the controller's host name, the user running the playbook, the process id of the
    C(ansible-playbook) process and a run id built from them and its start time.
  - The same run gets the same values in every task and on every host, so the roles can recognise
    their own lock; a later run, or a run that died, gets different ones, so its lock can be told
    apart and, when its process is gone, recognised as stale.
author:
  - renderfarm.tractor contributors (@renderfarm)
'''

EXAMPLES = r'''
- name: Show who is running
  ansible.builtin.debug:
    msg: "{{ lookup('renderfarm.tractor.tractor_run') }}"
'''

RETURN = r'''
_raw:
  description:
    - One dictionary with C(run_id), C(controller_host), C(controller_pid), C(user) and C(started)
      (the process's start time in clock ticks since boot, field 22 of C(/proc/PID/stat); C(0) where
      there is no C(/proc)).
  type: list
  elements: dict
'''

import getpass
import os
import socket

from ansible.plugins.lookup import LookupBase

from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_lease import process_start


def _controller_process():
    """pid and start time of the ansible-playbook process (workers are forked from it)."""
    pid = os.getppid()
    # the same reading the lock applies when it checks whether this process still runs
    return pid, process_start(pid) or '0'


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        pid, started = _controller_process()
        host = socket.gethostname()
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # a uid without a passwd entry (some containers)
            user = str(os.getuid())
        return [dict(run_id='%s-%d-%s' % (host, pid, started), controller_host=host,
                     controller_pid=pid, started=started, user=user)]
