# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading Tractor's tractor.config and db.config the way tractor-dbctl does.

* Both files are Python literals (True/False, '#' comments), read with ast.literal_eval; JSON's
  true/false/null are an error there, as they are for tractor-dbctl.
* The stock file of the install is read first and the site file's keys are laid over it with a
  top-level update: a nested dict such as DBConnection is replaced whole, not merged.
* Only ${TractorDataDirectory} is expanded, and only inside DBDataDir.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ast
import os

DEFAULT_PREFIX = '/opt/pixar'
DB_CONNECTION_DEFAULTS = {'host': 'localhost', 'port': 9876, 'dbname': 'tractor'}
REQUIRED_KEYS = {
    'tractor.config': ('TractorDataDirectory', 'EngineOwner'),
    'db.config': ('DBStartup', 'DBUseExisting', 'DBAutoUpgrade', 'DBInit', 'DBShutdown',
                  'DBConnection', 'DBArchiving', 'DBDataDir'),
}
# Fallbacks tractor-dbctl uses when a db.config key is absent.
DB_FLAG_FALLBACKS = {'DBStartup': False, 'DBUseExisting': False, 'DBAutoUpgrade': True,
                     'DBInit': False, 'DBShutdown': False, 'DBArchiving': False}


class TractorConfigError(Exception):
    pass


def install_dir_for(version, prefix=DEFAULT_PREFIX):
    """The documented install location of a version: /opt/pixar/Tractor-<version>."""
    return os.path.join(prefix, 'Tractor-%s' % version)


def comment_start(line):
    """Index of the '#' that starts a comment in one line of bytes (outside '...' and "..."), or None."""
    quote = None
    index = 0
    while index < len(line):
        char = line[index:index + 1]
        if quote:
            if char == b'\\':
                index += 1
            elif char == quote:
                quote = None
        elif char in (b'"', b"'"):
            quote = char
        elif char == b'#':
            return index
        index += 1
    return None


def decode_config(path, data):
    """The text of a config file read as bytes.

    dbctl reads tractor.config and db.config with ``ast.literal_eval`` (fact sheet 2.1); the
    Python 2.7 of Tractor's installs accepts any byte there (a Latin-1 letter in a comment of a
    hand-edited file is common). A byte that is not UTF-8 in a comment is therefore accepted (the
    comment is dropped anyway); one inside a value is an error that names the file and line.
    """
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError:
        pass
    lines = []
    for number, line in enumerate(data.split(b'\n'), 1):
        try:
            lines.append(line.decode('utf-8'))
        except UnicodeDecodeError as exc:
            lines.append(without_comment(path, number, line, exc.start))
    return '\n'.join(lines)


def without_comment(path, number, line, bad):
    """A line whose byte at `bad` is not UTF-8, decoded up to its comment; an error when the byte is in a value."""
    hash_at = comment_start(line)
    if hash_at is None or bad < hash_at:
        raise TractorConfigError(
            '%s line %d: byte 0x%02x (column %d) is not UTF-8 and stands inside a value, not in a comment; '
            'save the file as UTF-8' % (path, number, line[bad], bad + 1))
    return line[:hash_at].decode('utf-8') + '#'


def load_literal(path):
    try:
        with open(path, 'rb') as handle:
            data = handle.read()
    except (IOError, OSError) as exc:
        raise TractorConfigError('cannot read %s: %s' % (path, exc))
    text = decode_config(path, data)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise TractorConfigError(
            'cannot parse %s: %s. tractor.config and db.config are Python literals: '
            'write True/False, not true/false' % (path, exc))
    if not isinstance(value, dict):
        raise TractorConfigError('%s does not hold a dictionary' % path)
    return value


class SiteConfig(object):
    """The merged stock + site tractor.config and db.config of one engine."""

    def __init__(self, install_dir, config_dir, planned=None):
        """``planned``: {'tractor.config': dict, 'db.config': dict} read in place of the site files
        of ``config_dir`` (a site configuration about to be written; the directory need not exist)."""
        self.install_dir = install_dir
        self.config_dir = config_dir
        self.stock_dir = os.path.join(install_dir, 'config')
        self.planned = planned
        self.files = {}
        self.tractor = self._merge('tractor.config')
        self.db = self._merge('db.config')

    def _merge(self, name):
        merged = {}
        used = []
        stock = os.path.join(self.stock_dir, name)
        if os.path.exists(stock):
            merged.update(load_literal(stock))
            used.append(stock)
        site = os.path.join(self.config_dir, name)
        if self.planned is not None:
            # Laid over the stock file as the site file would be, with the same top-level update.
            merged.update(self.planned.get(name) or {})
        elif os.path.exists(site):
            merged.update(load_literal(site))
            used.append(site)
        self.files[name] = used
        return merged

    def missing_keys(self):
        missing = []
        for name, values in (('tractor.config', self.tractor), ('db.config', self.db)):
            for key in REQUIRED_KEYS[name]:
                if key not in values:
                    missing.append('%s (%s)' % (key, name))
        return missing

    @property
    def data_dir(self):
        return str(self.tractor.get('TractorDataDirectory', '/var/spool/tractor'))

    @property
    def db_data_dir(self):
        return str(self.db.get('DBDataDir', '${TractorDataDirectory}/psql')).replace(
            '${TractorDataDirectory}', self.data_dir)

    @property
    def engine_owner(self):
        return str(self.tractor.get('EngineOwner') or '')

    @property
    def db_connection(self):
        conn = dict(DB_CONNECTION_DEFAULTS)
        conn.update(self.db.get('DBConnection') or {})
        return conn

    def db_flag(self, key):
        return bool(self.db.get(key, DB_FLAG_FALLBACKS.get(key, False)))

    @property
    def listener(self):
        """(host, port) from ListenerPort: an int, or an 'iface:port' string."""
        value = self.tractor.get('ListenerPort', 80)
        if isinstance(value, str) and ':' in value:
            host, port = value.rsplit(':', 1)
            return host, int(port)
        return '', int(value)

    def client_address(self, override=None):
        """host:port a client on this host connects to: the override (the engine option), else the
        ListenerPort's interface, with a wildcard listener (all interfaces) reached at localhost."""
        if override:
            return override
        host, port = self.listener
        if host in ('', '0.0.0.0', '*', '::', '[::]'):
            host = 'localhost'
        return '%s:%d' % (host, port)

    @property
    def cmd_logs_dir(self):
        return os.path.join(self.data_dir, 'cmd-logs')
