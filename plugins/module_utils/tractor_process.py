# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Engine processes as /proc shows them: pid files, command lines, liveness, log tails.

One copy for every module: tractor_engine finds and watches engines with it, tractor_lock asks
whether the run that holds a lock is still alive.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import re

# An install path on a command line: /opt/pixar/Tractor-2.2/bin/tractor-engine
CMDLINE_VERSION_RE = re.compile(r'Tractor-(\d+\.\d+(?:\.\d+)?)(?:/|$)')
LOG_TAIL_LINES = 25


def is_engine_argv(argv):
    return any(os.path.basename(arg) == 'tractor-engine' for arg in argv or [])


def argv_config_dir(argv):
    """The --configdir of a tractor-engine command line, or None."""
    argv = list(argv or [])
    for index, arg in enumerate(argv):
        for option in ('--configdir', '--config-dir', '-c'):
            if arg == option and index + 1 < len(argv):
                return argv[index + 1]
            if option != '-c' and arg.startswith(option + '='):
                return arg.split('=', 1)[1]
    return None


def version_from_argv(argv):
    """The version in an install path on a command line (/opt/pixar/Tractor-2.2/...), or None."""
    for arg in argv or []:
        match = CMDLINE_VERSION_RE.search(arg)
        if match:
            return match.group(1)
    return None


def tail_file(path, lines=LOG_TAIL_LINES):
    if not path:
        return []
    try:
        # O_NOFOLLOW: the log lives in a directory the EngineOwner controls; never read through a link
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0))
    except (IOError, OSError) as exc:
        return ['(%s is a symbolic link; not read)' % path] if exc.errno == errno.ELOOP else []
    with os.fdopen(fd, 'rb') as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 64 * 1024))
        data = handle.read().decode('utf-8', 'replace')
    return [line for line in data.splitlines() if line.strip()][-lines:]


def read_pidfile(path):
    try:
        with open(path) as handle:
            text = handle.read().strip()
    except (IOError, OSError, TypeError):
        return None
    return int(text) if text.isdigit() else None


def read_cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            data = handle.read()
    except (IOError, OSError):
        return None
    return [part.decode('utf-8', 'replace') for part in data.split(b'\0') if part]


def pid_alive(pid):
    """True while the process exists and is not a zombie."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError as exc:
        if exc.errno != errno.EPERM:
            return False
    try:
        with open('/proc/%d/stat' % pid) as handle:
            state = handle.read().rsplit(')', 1)[1].split()[0]
    except (IOError, OSError, IndexError):
        return True
    return state not in ('Z', 'X')


def find_engine_pids(config_dir):
    """Processes running `tractor-engine --configdir <config_dir>`."""
    wanted = os.path.realpath(config_dir)
    found = []
    try:
        entries = os.listdir('/proc')
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        argv = read_cmdline(int(entry))
        if not argv or not is_engine_argv(argv):
            continue
        configdir = argv_config_dir(argv)
        if configdir and os.path.realpath(configdir) == wanted and pid_alive(int(entry)):
            found.append(int(entry))
    return sorted(found)
