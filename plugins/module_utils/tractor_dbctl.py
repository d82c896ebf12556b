# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Running tractor-dbctl and reading what it says.

tractor-dbctl writes its progress and errors to stderr and only --show-params, --set-job-counter,
--exec-sql and --log-filename to stdout.  It exits 0 when an operation finished (including
--status of a stopped server and a --set-job-counter that changed nothing), 2 for any refusal or
failure, 1 for an uncaught error.  It must run as the EngineOwner and always needs --configdir.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

RC_OK = 0
RC_ERROR = 2
RC_CRASH = 1

# tractor-dbctl's own words for the states modules decide on.
RUNNING_RE = re.compile(r'^A postgresql server is running on the data directory', re.M)
NOT_RUNNING_RE = re.compile(r'^A postgresql server is NOT running on the data directory', re.M)
REACHABLE_RE = re.compile(r'^The postgresql server is reachable through port (\d+)', re.M)
DB_EXISTS_RE = re.compile(r'^The database (\S+) exists\.', re.M)
COUNTER_SET_RE = re.compile(r'The job counter will continue from (\d+)\.')
COUNTER_NOT_SET = 'The job counter was not updated.'
UPGRADE_STEP_RE = re.compile(r'^Applying upgrade (\d+) of (\d+): (.*)$', re.M)
UPGRADE_FROM_TO_RE = re.compile(r'^Upgrading database schema from version (\S+) to version (\S+)\.$', re.M)
NO_UPGRADE_RE = re.compile(r'^No upgrades are required to be compatible with schema version (\S+)\.$', re.M)
PENDING_UPGRADE_RE = re.compile(
    r'^The following upgrades need to be applied to upgrade the schema from version (\S+) to (\S+):$', re.M)


def parse_status(stderr):
    """--status output -> dict(running, reachable, database_exists)."""
    running = bool(RUNNING_RE.search(stderr or ''))
    if not running and not NOT_RUNNING_RE.search(stderr or ''):
        raise ValueError('unrecognised tractor-dbctl --status output: %r' % (stderr,))
    return dict(running=running, reachable=bool(REACHABLE_RE.search(stderr or '')),
                database_exists=bool(DB_EXISTS_RE.search(stderr or '')))


def parse_params(stdout):
    """--show-params output ('name = value' lines) -> dict."""
    params = {}
    for line in (stdout or '').splitlines():
        if ' = ' in line:
            name, value = line.split(' = ', 1)
            params[name.strip()] = value.strip()
    return params


def parse_upgrade(stderr):
    """The schema upgrade a --start-for-engine/--upgrade applied: dict or None."""
    match = UPGRADE_FROM_TO_RE.search(stderr or '')
    if not match:
        return None
    return dict(from_version=match.group(1), to_version=match.group(2),
                steps=[m.group(3) for m in UPGRADE_STEP_RE.finditer(stderr)])


def parse_check_upgrade(stderr):
    """--check-upgrade output -> dict(required, from_version, to_version, steps)."""
    text = stderr or ''
    match = PENDING_UPGRADE_RE.search(text)
    if match:
        rest = text[match.end():]
        steps = [line.strip() for line in rest.splitlines() if line.strip()]
        return dict(required=True, from_version=match.group(1), to_version=match.group(2), steps=steps)
    match = NO_UPGRADE_RE.search(text)
    if match:
        return dict(required=False, from_version=match.group(1), to_version=match.group(1), steps=[])
    raise ValueError('unrecognised tractor-dbctl --check-upgrade output: %r' % (stderr,))


class Dbctl(object):
    """tractor-dbctl of one install, for one site config dir, run as the EngineOwner."""

    def __init__(self, tm):
        self.tm = tm

    def argv(self, operation, *args):
        return [self.tm.tool('tractor-dbctl'), '--configdir', self.tm.config_dir, operation] + list(args)

    def _check(self, argv, rc, out, err, what):
        if rc != RC_OK:
            hint = {
                RC_CRASH: ' (tractor-dbctl crashed; does the data directory %s exist?)' % self.tm.config.db_data_dir,
            }.get(rc, '')
            self.tm.fail_command('tractor-dbctl %s failed%s' % (what, hint), argv, rc, out, err)
        return out, err

    def read(self, operation, *args):
        """A read-only operation; fails the module on a non-zero exit."""
        argv = self.argv(operation, *args)
        rc, out, err = self.tm.run(argv)
        return self._check(argv, rc, out, err, operation)

    def change(self, operation, *args):
        """A changing operation through the module's choke point (skipped in check mode)."""
        argv = self.argv(operation, *args)
        rc, out, err = self.tm.change(argv)
        return self._check(argv, rc, out, err, operation)

    def status(self):
        out, err = self.read('--status')
        try:
            return parse_status(err)
        except ValueError as exc:
            self.tm.fail(str(exc))

    def params(self):
        out, err = self.read('--show-params')
        return parse_params(out)
