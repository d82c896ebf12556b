#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: tractor_jobcounter
short_description: Read and raise the Tractor job ID counter, and remove command logs of job IDs that will be reused
version_added: 1.0.0
description:
  - Reads C(jidcounter), the B(last used) job ID, from the job database with
    C(tractor-dbctl --show-params). The next job spooled gets C(jidcounter + 1), because the
    database increments the counter before it hands out a job ID.
  - With O(value), raises the counter with C(tractor-dbctl --set-job-counter), so that job IDs
    continue after O(value) (step 8 of the Upgrading runbook's downgrade procedure).
    C(tractor-dbctl) only ever raises the counter; a lower value is refused (see O(on_lower)).
  - With O(purge_logs_above), removes the command-log directories C(cmd-logs/<owner>/J<jid>)
    of job IDs above a threshold (step 7 of the downgrade procedure). A reused job ID would
    otherwise append its output to the logs of the former job with the same ID.
  - The job database server must be running whenever the counter is read, that is for
    O(value), for O(purge_logs_above=last_used) and when neither option is given. Start it with
    C(tractor-dbctl --start-for-engine) or M(renderfarm.tractor.tractor_db) with C(state=started).
options:
  value:
    description:
      - Make job IDs continue after this number, with C(tractor-dbctl --set-job-counter).
      - Applied only when it is higher than the current counter. Equal to it is no change.
      - What happens when it is lower is decided by O(on_lower).
    type: int
  on_lower:
    description:
      - What to do when O(value) is lower than the current counter. C(tractor-dbctl) refuses to
        lower the counter (it says C(The job counter was not updated) and still exits 0), because
        job IDs up to the counter are in use.
      - V(fail) fails the task without running C(tractor-dbctl --set-job-counter), and says which
        values would be accepted.
      - V(ignore) treats O(value) as a minimum that is already met. The counter is left as it is
        and the task reports no change.
    type: str
    choices: [fail, ignore]
    default: fail
  purge_logs_above:
    description:
      - Remove the command-log directories of every job ID above this one.
      - V(last_used) means the job counter, after O(value) has been applied (in check mode, after it
        would have been applied). Those are exactly the job IDs the engine will hand out next.
      - A non-negative number removes the logs of job IDs above that number. The job database is
        then not needed, unless O(value) is given too.
      - Only directories named exactly C(J<digits>) directly inside C(<cmd_logs_dir>/<owner>/) are
        removed, each with everything in it. Symbolic links are never followed or removed; other
        files and directories are left alone.
      - The task must run as the EngineOwner, who owns the logs, or as root.
    type: raw
  cmd_logs_dir:
    description:
      - The directory holding the command logs, C(<cmd_logs_dir>/<owner>/J<jid>/T<tid>.log).
      - Defaults to the directory in the C(--filetemplate) of C(SiteCmdLogServerStartup) in the
        merged C(tractor.config), when that template has the standard C(.../%u/J%j/T%t.log) form,
        and to C(<TractorDataDirectory>/cmd-logs) otherwise.
      - Set it when blades write the logs themselves (C(CmdOutputLogging=logfile=...) in
        C(blade.config)), for example to a network share.
    type: path
extends_documentation_fragment:
  - renderfarm.tractor.tractor
  - renderfarm.tractor.tractor.attributes
attributes:
  check_mode:
    support: full
    details:
      - The counter is read; the C(--set-job-counter) command and the log directories that would be
        removed are reported without running or removing anything.
  diff_mode:
    support: full
    details:
      - Shows the job counter and the command-log directories above the purge threshold, before
        and after.
  idempotent:
    support: full
  action_group:
    description: Use C(group/renderfarm.tractor.tractor) in C(module_defaults) to set the shared options once.
    support: full
    membership:
      - renderfarm.tractor.tractor
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
notes:
  - C(tractor-dbctl) runs as the EngineOwner; run the task as that account (C(become_user)) or as
    root, and the module switches to the EngineOwner for C(tractor-dbctl).
  - The runbook raises the counter and removes logs while the engine is stopped (downgrade steps
    7 and 8). With an engine running, jobs spooled meanwhile move the counter on; a
    C(--set-job-counter) that C(tractor-dbctl) then refuses fails the task.
seealso:
  - module: renderfarm.tractor.tractor_db
  - name: Tractor documentation, Upgrading (downgrade steps 6 to 9)
    description: Backing up, downgrading, and job IDs after a restore.
    link: https://rmanwiki.pixar.com/display/TRA/Upgrading
author:
  - renderfarm.tractor contributors (@renderfarm)
'''

EXAMPLES = r'''
- name: Read the job counter (the last used job ID)
  renderfarm.tractor.tractor_jobcounter:
    version: "2.2"
    config_dir: /opt/pixar/config
  register: counter

- name: Show the job ID the next job gets
  ansible.builtin.debug:
    msg: "next job: {{ counter.next_jid }}"

# Downgrade, runbook steps 7 and 8, after the database was restored and started.
- name: Remove the logs of job IDs the engine will hand out again
  renderfarm.tractor.tractor_jobcounter:
    version: "2.2"
    config_dir: /opt/pixar/config
    purge_logs_above: last_used
  become: true
  become_user: tractor

- name: Or keep them, by making job IDs continue after those of the newer engine
  renderfarm.tractor.tractor_jobcounter:
    version: "2.2"
    config_dir: /opt/pixar/config
    value: "{{ jidcounter_before_downgrade }}"
    on_lower: ignore

- name: Set the shared options once for every module of the collection
  module_defaults:
    group/renderfarm.tractor.tractor:
      version: "2.2"
      config_dir: /opt/pixar/config
  block:
    - name: Raise the counter to 20000 and remove the logs of job IDs above it
      renderfarm.tractor.tractor_jobcounter:
        value: 20000
        purge_logs_above: last_used
'''

RETURN = r'''
jidcounter:
  description:
    - The job counter (the last used job ID) before and after the task; in check mode, C(after) is
      the predicted value.
    - V(null) when the counter was not read (only a numeric O(purge_logs_above) was given).
  returned: always
  type: dict
  contains:
    before:
      description: The counter when the task started.
      type: int
      sample: 1041
    after:
      description: The counter when the task ended.
      type: int
      sample: 20000
next_jid:
  description:
    - The job ID the next spooled job gets, C(jidcounter.after + 1). V(null) when the counter was not read.
  returned: always
  type: int
  sample: 20001
cmd_logs_dir:
  description: The command-log directory that was searched, symbolic links resolved.
  returned: when O(purge_logs_above) is set
  type: str
  sample: /var/spool/tractor/cmd-logs
purge_threshold:
  description: The job ID above which command logs were (or would be) removed.
  returned: when O(purge_logs_above) is set
  type: int
  sample: 20000
removed_log_dirs:
  description:
    - The C(J<jid>) directories removed, or in check mode those that would be removed, sorted by
      owner and job ID.
  returned: always
  type: list
  elements: str
  sample: [/var/spool/tractor/cmd-logs/alice/J20001, /var/spool/tractor/cmd-logs/bob/J20002]
skipped_symlinks:
  description: Symbolic links in the command-log tree that looked like owner or job directories and were left alone.
  returned: when O(purge_logs_above) is set
  type: list
  elements: str
  sample: []
commands:
  description:
    - What the task changed, or would change in check mode; C(tractor-dbctl) command lines and
      C(remove <dir>) entries.
  returned: always
  type: list
  elements: str
  sample:
    - /opt/pixar/Tractor-2.2/bin/tractor-dbctl --configdir /opt/pixar/config --set-job-counter 20000
    - remove /var/spool/tractor/cmd-logs/alice/J20001
diff:
  description:
    - The job counter (when O(value) is given) and the C(<owner>/J<jid>) directories above the purge
      threshold (when O(purge_logs_above) is given), before and after.
  returned: in diff mode
  type: dict
  sample:
    before: {jidcounter: 1041, cmd_logs_above_20000: [alice/J20001]}
    after: {jidcounter: 20000, cmd_logs_above_20000: []}
msg:
  description: A one-line summary.
  returned: always
  type: str
  sample: job counter raised from 1041 to 20000; removed 1 command-log directory above job 20000
'''

import os
import pwd
import re
import shlex
import shutil

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_common import (
    COMMON_REQUIRED_ONE_OF, TractorModule, common_argument_spec,
)
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_dbctl import (
    COUNTER_NOT_SET, COUNTER_SET_RE, RC_CRASH, RC_OK, Dbctl, parse_params,
)

LAST_USED = 'last_used'
# Only these are job log directories: J and ASCII digits, nothing else.
JOB_DIR_RE = re.compile(r'J([0-9]+)')
# The cmdlogger's standard file template ends in this (fact sheet section 3).
LOG_TEMPLATE_TAIL = '/%u/J%j/T%t.log'
DB_NOT_RUNNING_RE = re.compile(r'server is not running', re.I)


def parse_threshold(value):
    """purge_logs_above -> None, 'last_used' or an int >= 0; ValueError for anything else."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError('a boolean')
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        if text == LAST_USED:
            return LAST_USED
        if not re.match(r'[0-9]+\Z', text):
            raise ValueError(repr(value))
        number = int(text)
    if number < 0:
        raise ValueError('negative')
    return number


def cmd_logs_dir_from_config(config, install_dir, config_dir):
    """Where tractor-cmdlogger writes: the --filetemplate of SiteCmdLogServerStartup, if standard.

    Returns the directory, or raises ValueError when the template is there but not of the form
    <dir>/%u/J%j/T%t.log (the module cannot know where J<jid> directories are then).
    """
    startup = config.tractor.get('SiteCmdLogServerStartup')
    if not startup:
        return config.cmd_logs_dir
    try:
        words = shlex.split(str(startup))
    except ValueError:
        return config.cmd_logs_dir
    template = None
    for index, word in enumerate(words):
        if word.startswith('--filetemplate='):
            template = word.split('=', 1)[1]
        elif word == '--filetemplate' and index + 1 < len(words):
            template = words[index + 1]
    if template is None:
        return config.cmd_logs_dir
    for macro, replacement in (('${TractorDataDirectory}', config.data_dir),
                               ('${TractorInstallDirectory}', install_dir),
                               ('${TractorConfigDirectory}', config_dir)):
        template = template.replace(macro, replacement)
    base = template[:-len(LOG_TEMPLATE_TAIL)] if template.endswith(LOG_TEMPLATE_TAIL) else None
    if not base or '$' in base or '%' in base or not os.path.isabs(base):
        raise ValueError(template)
    return base


def list_job_dirs(root):
    """J<digits> directories directly under root/<owner>/, never through a symbolic link.

    Returns (found, skipped): found is a sorted list of (owner, jid, path); skipped lists symbolic
    links that stand where an owner or job directory would be.
    """
    found, skipped = [], []
    with os.scandir(root) as owners:
        owner_entries = sorted(owners, key=lambda entry: entry.name)
    for owner in owner_entries:
        if owner.is_symlink():
            skipped.append(owner.path)
            continue
        if not owner.is_dir(follow_symlinks=False):
            continue
        with os.scandir(owner.path) as jobs:
            job_entries = list(jobs)
        for job in job_entries:
            match = JOB_DIR_RE.fullmatch(job.name)
            if not match:
                continue
            if job.is_symlink():
                skipped.append(job.path)
                continue
            if job.is_dir(follow_symlinks=False):
                found.append((owner.name, int(match.group(1)), job.path))
    found.sort(key=lambda item: (item[0], item[1]))
    skipped.sort()
    return found, skipped


class JobCounter(object):

    def __init__(self, module):
        self.module = module
        self.params = module.params
        try:
            self.threshold = parse_threshold(self.params['purge_logs_above'])
        except ValueError:
            module.fail_json(msg='purge_logs_above must be last_used or a job ID (a whole number, 0 or more), '
                                 'not %r' % (self.params['purge_logs_above'],))
        if self.params['value'] is not None and self.params['value'] < 0:
            module.fail_json(msg='value must be 0 or more, not %d' % self.params['value'])
        self.tm = TractorModule(module)
        self.dbctl = Dbctl(self.tm)
        self.result = dict(jidcounter=None, next_jid=None, removed_log_dirs=[])
        self.diff_before = {}
        self.diff_after = {}
        self.messages = []

    # -- the counter ------------------------------------------------------------------------------
    def read_counter(self):
        argv = self.dbctl.argv('--show-params')
        rc, out, err = self.tm.run(argv)
        if rc != RC_OK:
            detail = dict(rc=rc, stdout=out, stderr=err, cmd=' '.join(argv))
            if DB_NOT_RUNNING_RE.search(err or ''):
                self.tm.fail('Cannot read the job counter: the job database server (data directory %s) is not '
                             'running. Start it with tractor-dbctl --start-for-engine (runbook step 6) or '
                             'renderfarm.tractor.tractor_db state=started, then run this task again.'
                             % self.tm.config.db_data_dir, **detail)
            hint = ''
            if rc == RC_CRASH:
                hint = ' (tractor-dbctl crashed; does the data directory %s exist?)' % self.tm.config.db_data_dir
            self.tm.fail_command('tractor-dbctl --show-params failed%s' % hint, argv, rc, out, err)
        params = parse_params(out)
        try:
            return int(params['jidcounter'])
        except (KeyError, ValueError):
            self.tm.fail('tractor-dbctl --show-params printed no jidcounter: is the tractor database built? '
                         '(tractor-dbctl --start-for-engine builds it)',
                         rc=rc, stdout=out, stderr=err, cmd=' '.join(argv))

    def set_counter(self, before):
        value = self.params['value']
        if value == before:
            self.messages.append('job counter is already %d' % before)
            return before
        if value < before:
            if self.params['on_lower'] == 'ignore':
                self.messages.append('job counter %d is already above value %d; left as it is' % (before, value))
                return before
            self.tm.fail('value %d is lower than the job counter %d (the last used job ID). tractor-dbctl '
                         '--set-job-counter only raises the counter and would refuse with "The job counter was '
                         'not updated": job IDs up to %d are in use. Give a value of %d or more, leave value out, '
                         'or set on_lower=ignore to accept a counter that is already higher.'
                         % (value, before, before, before + 1),
                         jidcounter=dict(before=before, after=before), next_jid=before + 1)
        argv = self.dbctl.argv('--set-job-counter', str(value))
        rc, out, err = self.tm.change(argv)
        if not self.module.check_mode:
            if rc != RC_OK:
                self.tm.fail_command('tractor-dbctl --set-job-counter failed', argv, rc, out, err)
            if COUNTER_NOT_SET in (out or ''):
                now = self.read_counter()
                self.tm.fail('tractor-dbctl refused to set the job counter to %d: "%s" The counter was %d when '
                             'read and is %d now; jobs were spooled meanwhile. Stop the engine (runbook step 3) and '
                             'run this task again with a value above %d.'
                             % (value, COUNTER_NOT_SET, before, now, now),
                             rc=rc, stdout=out, stderr=err, cmd=' '.join(argv),
                             jidcounter=dict(before=before, after=now), next_jid=now + 1)
            match = COUNTER_SET_RE.search(out or '')
            if not match or int(match.group(1)) != value:
                self.tm.fail('tractor-dbctl --set-job-counter %d gave an unexpected answer; check the counter with '
                             'tractor-dbctl --show-params' % value,
                             rc=rc, stdout=out, stderr=err, cmd=' '.join(argv))
        self.messages.append('job counter %s from %d to %d'
                             % ('would be raised' if self.module.check_mode else 'raised', before, value))
        return value

    # -- the command logs -------------------------------------------------------------------------
    def logs_root(self):
        configured = self.params['cmd_logs_dir']
        if not configured:
            try:
                configured = cmd_logs_dir_from_config(self.tm.config, self.tm.install_dir, self.tm.config_dir)
            except ValueError as exc:
                self.tm.fail('SiteCmdLogServerStartup in %s writes command logs to %s, which is not of the form '
                             '<dir>%s: set cmd_logs_dir to the directory holding the <owner>/J<jid> directories'
                             % (', '.join(self.tm.config.files.get('tractor.config') or []) or 'tractor.config',
                                exc, LOG_TEMPLATE_TAIL))
        return os.path.realpath(configured)

    def check_user(self):
        if os.geteuid() == 0 or not self.tm.owner:
            return
        me = pwd.getpwuid(os.geteuid()).pw_name
        if me != self.tm.owner:
            self.tm.fail('Removing command logs needs the EngineOwner %s or root, not %s: run this task with '
                         'become: true (and become_user: %s)' % (self.tm.owner, me, self.tm.owner))

    def purge(self, threshold):
        root = self.logs_root()
        self.result.update(cmd_logs_dir=root, purge_threshold=threshold, skipped_symlinks=[])
        key = 'cmd_logs_above_%d' % threshold
        if not os.path.lexists(root):
            self.messages.append('no command logs (%s does not exist)' % root)
            self.diff_before[key] = self.diff_after[key] = []
            return
        if not os.path.isdir(root):
            self.tm.fail('cmd_logs_dir %s is not a directory' % root)
        self.check_user()
        try:
            found, skipped = list_job_dirs(root)
        except OSError as exc:
            self.tm.fail('cannot list the command logs in %s: %s. Run this task as the EngineOwner %s or root.'
                         % (root, exc, self.tm.owner or '(see EngineOwner)'))
        if skipped:
            self.result['skipped_symlinks'] = skipped
            self.module.warn('left symbolic links in %s alone: %s' % (root, ', '.join(skipped)))
        doomed = [(owner, jid, path) for owner, jid, path in found if jid > threshold]
        self.diff_before[key] = ['%s/J%d' % (owner, jid) for owner, jid, _path in doomed]
        removed = self.result['removed_log_dirs']
        for owner, jid, path in doomed:
            if self.tm.record('remove %s' % path):
                try:
                    shutil.rmtree(path)
                except OSError as exc:
                    self.tm.fail('could not remove %s: %s. Run this task as the EngineOwner %s or root; removed so '
                                 'far: %d' % (path, exc, self.tm.owner or '(see EngineOwner)', len(removed)),
                                 removed_log_dirs=removed)
            removed.append(path)
        self.diff_after[key] = []
        if doomed:
            self.messages.append('%s %d command-log director%s above job %d'
                                 % ('would remove' if self.module.check_mode else 'removed', len(doomed),
                                    'y' if len(doomed) == 1 else 'ies', threshold))
        else:
            self.messages.append('no command logs above job %d' % threshold)

    # -- the task ---------------------------------------------------------------------------------
    def run(self):
        value = self.params['value']
        needs_counter = value is not None or self.threshold == LAST_USED or self.threshold is None
        if needs_counter:
            before = self.read_counter()
            after = before
            if value is not None:
                after = self.set_counter(before)
                self.diff_before['jidcounter'] = before
                self.diff_after['jidcounter'] = after
            else:
                self.messages.append('job counter is %d' % before)
            self.result.update(jidcounter=dict(before=before, after=after), next_jid=after + 1)
        if self.threshold is not None:
            threshold = self.result['jidcounter']['after'] if self.threshold == LAST_USED else self.threshold
            self.purge(threshold)
        if self.module._diff:
            header = 'job counter and command logs of %s' % self.tm.config_dir
            self.result['diff'] = dict(before=self.diff_before, after=self.diff_after,
                                       before_header=header, after_header=header)
        self.tm.exit(msg='; '.join(self.messages), **self.result)


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        value=dict(type='int'),
        on_lower=dict(type='str', choices=['fail', 'ignore'], default='fail'),
        purge_logs_above=dict(type='raw'),
        cmd_logs_dir=dict(type='path'),
    )
    module = AnsibleModule(argument_spec=argument_spec, required_one_of=COMMON_REQUIRED_ONE_OF,
                           supports_check_mode=True)
    JobCounter(module).run()


if __name__ == '__main__':
    main()
