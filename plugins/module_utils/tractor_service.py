# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which install a service starts, and how to make it start another one (fact sheet 7.3).

Pixar's unit and init script texts are not public, and sites write their own.  So the module
does not rely on any variable name: it finds the ``.../bin/tractor-engine`` the service runs and
steers that, through a mechanism the service manager itself defines.

* systemd: a drop-in (``<unit>.d/50-renderfarm-tractor-install.conf``) that resets ``ExecStart``
  and sets it to the unit's own command line with the engine binary of the chosen install.
  ``systemctl show -p ExecStart`` then proves what systemd will run.
* SysV: an init script can only be steered when it runs ``$VAR/bin/tractor-engine`` (or
  ``${VAR}``, ``${VAR:-default}``) and reads the settings file, where ``VAR`` is then set.  A
  script that names an install literally cannot be steered: the module refuses before the stop.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

DROPIN_NAME = '50-renderfarm-tractor-install.conf'
# <prefix>/bin/tractor-engine, where <prefix> is a literal path, $VAR, ${VAR} or ${VAR:-default}
# ($$ is the escaped $ of a unit file).
ENGINE_REF_RE = re.compile(
    r'(?P<prefix>(?:\$\$|\$)\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::?-[^}]*)?\}'
    r'|(?:\$\$|\$)(?P<plain>[A-Za-z_][A-Za-z0-9_]*)'
    r'|(?P<literal>/[^\s\'"$;{}]*?))'
    r'/bin/tractor-engine(?![A-Za-z0-9_.-])')
DROPIN_TEXT = """\
# Written by renderfarm.tractor.tractor_engine: the Tractor install this service starts.
# Remove this file (and run systemctl daemon-reload) to go back to the unit's own ExecStart.
[Service]
ExecStart=
ExecStart=%s
"""


class ServiceError(Exception):
    pass


def engine_refs(text):
    """The tractor-engine binaries a command line or script names: [(prefix text, variable or None)]."""
    return [(m.group('prefix'), m.group('braced') or m.group('plain')) for m in ENGINE_REF_RE.finditer(text or '')]


def unit_exec_start(cat_text):
    """The ExecStart lines in force in `systemctl cat` output (unit, then drop-ins; an empty one resets)."""
    lines = []
    section = None
    for raw in (cat_text or '').splitlines():
        line = raw.strip()
        if line.startswith('[') and line.endswith(']'):
            section = line[1:-1]
            continue
        if section != 'Service' or not line.startswith('ExecStart') or line.startswith('#'):
            continue
        key, sep, value = line.partition('=')
        if not sep or key.strip() != 'ExecStart':
            continue
        value = value.strip()
        if value:
            lines.append(value)
        else:
            lines = []
    return lines


def rewrite_exec_start(cat_text, install_dir):
    """The ExecStart line that runs <install_dir>/bin/tractor-engine with the unit's own options."""
    lines = unit_exec_start(cat_text)
    if len(lines) != 1:
        raise ServiceError('the unit has %d ExecStart lines in force; the module can only steer one that runs '
                           'tractor-engine' % len(lines))
    line = lines[0]
    refs = engine_refs(line)
    if len(refs) != 1:
        raise ServiceError('its ExecStart (%s) names %s, so the module cannot tell which install it starts'
                           % (line, 'no .../bin/tractor-engine' if not refs else 'more than one tractor-engine'))
    return ENGINE_REF_RE.sub(lambda m: install_dir.rstrip('/') + '/bin/tractor-engine', line, count=1)


def dropin_text(exec_start):
    return DROPIN_TEXT % exec_start


def show_runs(show_text, install_dir):
    """Does `systemctl show -p ExecStart` output run <install_dir>/bin/tractor-engine?"""
    binary = install_dir.rstrip('/') + '/bin/tractor-engine'
    return bool(re.search(re.escape(binary) + r'(?![A-Za-z0-9_.-])', show_text or ''))


def sysv_install_variable(script_text, settings_path, install_dir=None):
    """The variable an init script takes the install from; None when it names install_dir itself
    (nothing to change); ServiceError saying why it cannot be steered."""
    refs = engine_refs('\n'.join(line for line in (script_text or '').splitlines()
                                 if not line.lstrip().startswith('#')))
    variables = sorted(set(var for _prefix, var in refs if var))
    literals = sorted(set(prefix for prefix, var in refs if not var))
    if literals and not variables and install_dir and literals == [install_dir.rstrip('/')]:
        return None
    if literals:
        raise ServiceError('the init script runs %s/bin/tractor-engine itself, so it always starts that install'
                           % literals[0])
    if len(variables) != 1:
        raise ServiceError('the init script names %s, so the module cannot tell which install it starts'
                           % ('no .../bin/tractor-engine' if not variables else
                              'the engine through several variables (%s)' % ', '.join(variables)))
    # It must read the settings file: its path, or at least its name (a script may take the path
    # from a variable with that file as default).
    if settings_path not in script_text and os.path.basename(settings_path) not in script_text:
        raise ServiceError('the init script does not mention %s, so setting %s there may not reach it'
                           % (settings_path, variables[0]))
    return variables[0]


# ---------------------------------------------------------------------------------------------
# Settings files and units: which variables they set (pure functions)
# ---------------------------------------------------------------------------------------------
ASSIGNMENT_RE = re.compile(r'^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$')
UNIT_ENV_RE = re.compile(r'^\s*Environment\s*=\s*(.*)$')
SAFE_VALUE_RE = re.compile(r'^[A-Za-z0-9_./:@%+,=-]*\Z')
# Characters a settings file cannot hold safely: the SysV scripts source it with a shell (which
# expands $ and ` even in double quotes) and a line break would start a new assignment.
UNSAFE_SETTING_RE = re.compile(r'[\x00\r\n$`"\\]')


def _unquote(value):
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in ('"', "'"):
        inner = value[1:-1]
        return inner.replace('\\"', '"') if value[0] == '"' else inner
    # an unquoted value ends at an unescaped comment
    return re.split(r'\s+#', value, maxsplit=1)[0].strip()


def parse_settings(text):
    """VAR=value lines of a sysconfig file (shell or systemd EnvironmentFile syntax) -> dict."""
    values = {}
    for line in (text or '').splitlines():
        if line.lstrip().startswith('#'):
            continue
        match = ASSIGNMENT_RE.match(line)
        if match:
            values[match.group(1)] = _unquote(match.group(2))
    return values


def parse_unit_environment(text):
    """Environment="A=b" lines of a systemd unit -> dict."""
    values = {}
    for line in (text or '').splitlines():
        match = UNIT_ENV_RE.match(line)
        if not match:
            continue
        for item in re.findall(r'"[^"]*"|\S+', match.group(1)):
            item = item.strip('"')
            if '=' in item:
                key, value = item.split('=', 1)
                values[key] = value
    return values


def quote_value(value):
    if SAFE_VALUE_RE.match(value):
        return value
    return '"%s"' % value.replace('\\', '\\\\').replace('"', '\\"')


def update_settings(text, wanted):
    """Set VAR=value assignments in a settings file's text; returns the new text.

    The last active assignment of each variable is rewritten in place (it is the one that wins),
    missing ones are appended; comments and every other line stay as they are.
    """
    lines = (text or '').splitlines()
    last = {}
    for index, line in enumerate(lines):
        if line.lstrip().startswith('#'):
            continue
        match = ASSIGNMENT_RE.match(line)
        if match and match.group(1) in wanted:
            last[match.group(1)] = index
    appended = []
    for name in sorted(wanted):
        new_line = '%s=%s' % (name, quote_value(wanted[name]))
        if name in last:
            lines[last[name]] = new_line
        else:
            appended.append(new_line)
    if appended:
        lines.append('# Set by renderfarm.tractor.tractor_engine: the install and site config the engine runs.')
        lines.extend(appended)
    return '\n'.join(lines) + '\n'


def log_option(options):
    """The --log file in an options string ('--log=/x' or '--log /x'), or None."""
    words = (options or '').split()
    for index, word in enumerate(words):
        if word.startswith('--log='):
            return _unquote(word.split('=', 1)[1])
        if word == '--log' and index + 1 < len(words):
            return _unquote(words[index + 1])
    return None


def choose_service_manager(requested, systemd_booted, unit_path, init_script, init_script_ok):
    """(name, reason) of the service manager to use."""
    if requested != 'auto':
        return requested, 'requested'
    if systemd_booted and unit_path:
        return 'systemd', 'systemd is running and %s is installed' % unit_path
    if init_script_ok:
        return 'sysv', 'init script %s exists' % init_script
    why = []
    why.append('systemd is not the init system' if not systemd_booted else 'no systemd unit installed')
    why.append('no executable init script %s' % init_script)
    return 'direct', ', '.join(why)
