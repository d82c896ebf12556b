# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What every renderfarm.tractor module shares: options, config, and the one choke point for changes."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import pwd
import re

from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_config import (
    SiteConfig, TractorConfigError, install_dir_for,
)


# The record of the jobs tractor_engine dispatching=paused paused (in TractorDataDirectory). Its job
# ids belong to one job database: tractor_db removes it when it destroys or replaces that database.
PAUSED_JOBS_FILE = '.renderfarm-tractor-paused-jobs.json'


def common_argument_spec():
    return dict(
        version=dict(type='str'),
        install_dir=dict(type='path'),
        config_dir=dict(type='path', required=True),
        engine=dict(type='str'),
        engine_user=dict(type='str', default='root'),
        engine_password=dict(type='str', no_log=True),
        engine_owner=dict(type='str'),
        timeout=dict(type='int', default=60),
    )


COMMON_REQUIRED_ONE_OF = [('version', 'install_dir')]

# A Tractor version names an install directory (<prefix>/Tractor-<version>): digits and dots, with
# perhaps a suffix, never a path separator, whitespace or "..".
VERSION_RE = re.compile(r'^[0-9]+(\.[0-9]+)*([._+-][A-Za-z0-9]+)*\Z')
OWNER_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_.-]{0,31}\Z')
ENGINE_HOST_RE = re.compile(r'^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)\Z')


def argument_problem(module):
    """Why the arguments cannot be acted on (a message), or None; checked before anything is read.

    Relative paths would resolve against whatever directory the module happens to run in; a
    version becomes part of a path; the engine address must be host:port; counters and timeouts
    must be positive.
    """
    params = module.params
    for name, spec in sorted(module.argument_spec.items()):
        value = params.get(name)
        if value is None:
            continue
        if spec.get('type') == 'path' or (spec.get('type') == 'list' and spec.get('elements') == 'path'):
            for item in (value if isinstance(value, list) else [value]):
                if '\x00' in item:
                    return '%s must not contain NUL bytes: %r' % (name, item)
                if not os.path.isabs(item):
                    return '%s must be an absolute path, not %s' % (name, item)
    version = params.get('version')
    if version is not None and (not VERSION_RE.match(version) or '..' in version):
        return 'version must be a Tractor version such as 2.4 (digits and dots), not %r' % (version,)
    engine = params.get('engine')
    if engine is not None:
        host, sep, port = engine.rpartition(':')
        if not sep or not ENGINE_HOST_RE.match(host) or not re.match(r'[0-9]{1,5}\Z', port) or not 0 < int(port) < 65536:
            return 'engine %r is not host:port (a host name or address and a port from 1 to 65535)' % (engine,)
    owner = params.get('engine_owner')
    if owner is not None and not OWNER_RE.match(owner):
        return 'engine_owner must be an account name (at most 32 letters, digits, _ . -), not %r' % (owner,)
    if 'timeout' in module.argument_spec and params.get('timeout') is not None and params['timeout'] < 1:
        return 'timeout must be at least 1 (seconds), not %d' % params['timeout']
    return None


def check_arguments(module):
    problem = argument_problem(module)
    if problem:
        module.fail_json(msg=problem)


class TractorModule(object):
    """Wraps AnsibleModule: resolves the install and site config, runs commands, records changes.

    Every change goes through ``change()``: in check mode it is recorded (``commands`` in the
    result) and skipped; otherwise it runs and is recorded.  Reads go through ``run()``.
    """

    def __init__(self, module):
        check_arguments(module)
        self.module = module
        self.params = module.params
        self.commands = []
        self.changed = False
        self.install_dir = self.params.get('install_dir') or install_dir_for(self.params['version'])
        self.config_dir = self.params['config_dir']
        if not os.path.isdir(self.config_dir):
            self.fail('config_dir %s does not exist: give the site configuration directory the engine '
                      'runs with (its --configdir)' % self.config_dir)
        if not os.path.isdir(self.install_dir):
            self.fail('Tractor install %s not found: install that version first, or set install_dir'
                      % self.install_dir)
        try:
            self.config = SiteConfig(self.install_dir, self.config_dir)
        except TractorConfigError as exc:
            self.fail(str(exc))
        self.owner = self.params.get('engine_owner') or self.config.engine_owner

    # -- results and failures ---------------------------------------------------------------------
    def fail(self, msg, **kwargs):
        kwargs.setdefault('commands', self.commands)
        self.module.fail_json(msg=msg, **kwargs)

    def exit(self, **kwargs):
        kwargs.setdefault('changed', self.changed)
        kwargs.setdefault('commands', self.commands)
        self.module.exit_json(**kwargs)

    # -- running commands ---------------------------------------------------------------------------
    def tool(self, name):
        return os.path.join(self.install_dir, 'bin', name)

    def as_owner(self, argv):
        """argv run as the EngineOwner: directly when we are it, through runuser when we are root."""
        if not self.owner:
            return argv
        me = pwd.getpwuid(os.geteuid()).pw_name
        if me == self.owner:
            return argv
        try:
            pwd.getpwnam(self.owner)
        except KeyError:
            self.fail('EngineOwner %r does not exist on this host: create the account or fix EngineOwner '
                      'in %s' % (self.owner, self.config.files.get('tractor.config')))
        if os.geteuid() == 0:
            runuser = self.module.get_bin_path('runuser')
            if runuser:
                return [runuser, '-u', self.owner, '--'] + list(argv)
            setpriv = self.module.get_bin_path('setpriv', required=True)
            entry = pwd.getpwnam(self.owner)
            return [setpriv, '--reuid=%d' % entry.pw_uid, '--regid=%d' % entry.pw_gid, '--init-groups', '--'] + list(argv)
        self.fail('%s must run as the EngineOwner %s, not as %s: run this task with become: true and '
                  'become_user: %s' % (os.path.basename(argv[0]), self.owner, me, self.owner))

    def run(self, argv, owner=True, data=None):
        """Run a read-only command (also in check mode); returns (rc, stdout, stderr)."""
        full = self.as_owner(argv) if owner else list(argv)
        return self.module.run_command(full, data=data, cwd='/')

    def change(self, argv, owner=True, data=None):
        """The choke point for every command that changes something.

        Records the command; in check mode nothing runs and (0, '', '') is returned.
        """
        self.commands.append(' '.join(argv))
        self.changed = True
        if self.module.check_mode:
            return 0, '', ''
        return self.run(argv, owner=owner, data=data)

    def record(self, description):
        """The choke point for changes the module makes itself (files, HTTP requests)."""
        self.commands.append(description)
        self.changed = True
        return not self.module.check_mode

    def fail_command(self, msg, argv, rc, out, err):
        last = [line for line in (err or out or '').splitlines() if line.strip()]
        detail = (': ' + last[-1].strip()) if last else ''
        self.fail('%s%s' % (msg, detail), rc=rc, stdout=out, stderr=err, cmd=' '.join(argv))
