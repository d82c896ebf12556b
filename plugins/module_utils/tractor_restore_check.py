# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Proving that a backup archive restores: a scratch PostgreSQL on a copy of it.

RestoreCheck extracts the archive into a scratch directory, starts PostgreSQL on it (a free port,
localhost only, no unix socket, read-only transactions), reads ``param`` and counts the jobs, stops
it and removes the copy. find_pg_bindir() picks the PostgreSQL binaries to do it with.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import os
import re
import shutil
import socket
import tempfile

from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_files import ArchiveError
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_inspect import safe_extract

PG_BINDIR_ENV = 'TRACTOR_EMULATOR_PG_BINDIR'
DEBIAN_PG_GLOB = '/usr/lib/postgresql/*/bin'
# Files a restore check removes from its scratch copy: they describe the process that wrote them.
STALE_SERVER_FILES = ('postmaster.pid', 'postmaster.opts')


# -- PostgreSQL server binaries ---------------------------------------------------------------------
def pg_major(version_text):
    """'postgres (PostgreSQL) 15.5 (Debian 15.5-0+deb12u1)' or '9.3.25' -> '15' / '9.3'."""
    match = re.search(r'(\d+)\.(\d+)', version_text or '') or re.search(r'(\d+)', version_text or '')
    if not match:
        return None
    first = int(match.group(1))
    if first >= 10 or match.lastindex == 1:
        return str(first)
    return '%d.%s' % (first, match.group(2))


def pg_bindir_candidates(install_dir, override=None, environ=None, debian_glob=DEBIAN_PG_GLOB):
    """Where PostgreSQL server binaries are looked for, in order.

    An explicit override; ``$TRACTOR_EMULATOR_PG_BINDIR``; the bundled ``<install>/lib/psql/bin``
    (fact sheet §1.1); the newest ``/usr/lib/postgresql/<major>/bin`` first.  The emulator's
    tractor-dbctl looks in the same places (without the override).
    """
    environ = os.environ if environ is None else environ
    candidates = []
    if override:
        candidates.append(override)
    if environ.get(PG_BINDIR_ENV):
        candidates.append(environ[PG_BINDIR_ENV])
    if install_dir:
        candidates.append(os.path.join(install_dir, 'lib', 'psql', 'bin'))

    def major_key(path):
        try:
            return tuple(int(x) for x in path.rstrip('/').split('/')[-2].split('.'))
        except ValueError:
            return (0,)

    candidates.extend(sorted(glob.glob(debian_glob), key=major_key, reverse=True))
    seen = []
    for path in candidates:
        if path not in seen:
            seen.append(path)
    return seen


def is_pg_bindir(path):
    return all(os.access(os.path.join(path, tool), os.X_OK) for tool in ('pg_ctl', 'postgres', 'psql'))


def find_pg_bindir(install_dir, want_major=None, override=None, version_of=None, environ=None,
                   debian_glob=DEBIAN_PG_GLOB):
    """The first candidate directory with pg_ctl, postgres and psql (of major want_major if given).

    ``version_of(bindir)`` returns the ``postgres --version`` text (the caller runs it); it is
    only asked for directories whose name does not tell the major.  An explicit override is used
    or refused, never skipped.  Returns (bindir, major); raises ArchiveError naming every place
    looked at.
    """

    def major_of(path):
        match = re.match(r'^/usr/lib/postgresql/([0-9.]+)/bin/?$', path)
        if match:
            return match.group(1)
        if version_of is not None:
            return pg_major(version_of(path))
        return None

    if override:
        if not is_pg_bindir(override):
            raise ArchiveError('pg_bindir %s does not hold pg_ctl, postgres and psql' % override)
        major = major_of(override)
        if want_major and major != want_major:
            raise ArchiveError('pg_bindir %s holds PostgreSQL %s, but the archived cluster needs %s '
                               '(its PG_VERSION)' % (override, major or '?', want_major))
        return override, major
    looked = pg_bindir_candidates(install_dir, None, environ, debian_glob)
    usable = []
    for path in looked:
        if not is_pg_bindir(path):
            continue
        major = major_of(path) if want_major else None
        if want_major is None or major == want_major:
            return path, major
        usable.append('%s (PostgreSQL %s)' % (path, major or '?'))
    if want_major:
        raise ArchiveError(
            'no PostgreSQL %s server binaries found to start the archived cluster (its PG_VERSION is %s); '
            'looked in: %s; usable but of another major version: %s. Install PostgreSQL %s server '
            'binaries or set pg_bindir' % (want_major, want_major, ', '.join(looked) or '-',
                                           ', '.join(usable) or 'none', want_major))
    raise ArchiveError('no PostgreSQL server binaries (pg_ctl, postgres, psql) found; looked in: %s. '
                       'Install the PostgreSQL server package or set pg_bindir' % (', '.join(looked) or '-'))


def free_port(host='127.0.0.1'):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, 0))
        return sock.getsockname()[1]
    finally:
        sock.close()


def sh_quote(value):
    """Quote for /bin/sh: pg_ctl hands its -o options to the shell."""
    return "'" + str(value).replace("'", "'\"'\"'") + "'"


# -- restore check ------------------------------------------------------------------------------------
def parse_rows(text, separator='\x1f'):
    return [line.split(separator) for line in (text or '').splitlines() if line != '']


# What the restore check reads from the restored copy, in one query: tagged rows.
CHECK_QUERY = ("SELECT 'param', name::text, value::text FROM param "
               "UNION ALL SELECT 'live', count(*)::text, '' FROM ONLY job "
               "UNION ALL SELECT 'all', count(*)::text, '' FROM job "
               "UNION ALL SELECT 'server', current_setting('server_version'), ''")


class RestoreCheck(object):
    """Restore an archive into a scratch directory, start PostgreSQL on it, read it, clean up.

    ``runner(argv)`` runs a command as the EngineOwner and returns (rc, stdout, stderr) (PostgreSQL
    refuses root).  ``uid``/``gid``: the EngineOwner's, when this process is root and the scratch
    copy must be handed over.  ``commands`` lists every command run, for the module's result.
    """

    def __init__(self, archive, top, scratch_parent, bindir, runner, dbname='tractor', uid=None,
                 gid=None, timeout=60, port=None, progress=None):
        self.archive = archive
        self.top = top
        self.scratch_parent = scratch_parent
        self.bindir = bindir
        self.runner = runner
        self.dbname = dbname
        self.uid = uid
        self.gid = gid
        self.timeout = int(timeout)
        self.port = port
        self.commands = []
        self.scratch = None
        self.scratch_removed = None
        self.notes = []
        self.progress = progress

    def tool(self, name):
        return os.path.join(self.bindir, name)

    def run(self, argv):
        self.commands.append(' '.join(argv))
        return self.runner(argv)

    def run_checked(self, argv, what):
        rc, out, err = self.run(argv)
        if rc != 0:
            detail = (err or out or '').strip().splitlines()
            raise ArchiveError('%s failed (rc=%s)%s' % (what, rc, (': ' + detail[-1]) if detail else ''),
                               dict(rc=rc, stdout=out, stderr=err, cmd=' '.join(argv)))
        return out

    def server_options(self, data):
        """Options that keep the scratch server private and away from the original's files."""
        options = [
            '-p', str(self.port),
            '-c', 'listen_addresses=localhost',
            '-c', "unix_socket_directories=''",
            '-c', 'data_directory=%s' % sh_quote(data),
            '-c', 'hba_file=%s' % sh_quote(os.path.join(data, 'pg_hba.conf')),
            '-c', 'ident_file=%s' % sh_quote(os.path.join(data, 'pg_ident.conf')),
            '-c', "external_pid_file=''",
            '-c', 'logging_collector=off',
            '-c', 'archive_mode=off',
            '-c', 'default_transaction_read_only=on',
        ]
        return ' '.join(options)

    def psql(self, sql):
        conninfo = 'host=localhost port=%d user=root dbname=%s connect_timeout=10' % (self.port, self.dbname)
        argv = [self.tool('psql'), '-X', '-q', '-A', '-t', '-F', '\x1f', '-v', 'ON_ERROR_STOP=1',
                '-d', conninfo, '-c', sql]
        return parse_rows(self.run_checked(argv, 'psql on the restored copy (%s)' % sql))

    def run_check(self):
        """Returns dict(params, job_count, job_count_with_archive, pg_version, ...)."""
        self.scratch = tempfile.mkdtemp(prefix='.tractor-db-verify-', dir=self.scratch_parent)
        try:
            if self.uid is not None:
                os.chown(self.scratch, self.uid, -1 if self.gid is None else self.gid)
            os.chmod(self.scratch, 0o700)
            if self.progress is not None:
                self.progress.step('restore check: unpacking into %s' % self.scratch,
                                   total=os.path.getsize(self.archive))
            safe_extract(self.archive, self.scratch, self.top, self.uid, self.gid, progress=self.progress)
            data = os.path.join(self.scratch, self.top)
            if not os.path.isdir(data):
                raise ArchiveError('the archive did not restore a %s/ directory' % self.top)
            os.chmod(data, 0o700)
            for name in STALE_SERVER_FILES:
                stale = os.path.join(data, name)
                if os.path.lexists(stale):
                    os.unlink(stale)
                    if name == 'postmaster.pid':
                        self.notes.append('removed postmaster.pid from the scratch copy: the backup was taken '
                                          'while PostgreSQL ran')
            if self.progress is not None:
                self.progress.step('restore check: PostgreSQL on the scratch copy')
            return self._with_server(data)
        finally:
            self.cleanup()

    def _with_server(self, data):
        if self.port is None:
            self.port = free_port()
        log = os.path.join(self.scratch, 'postgres.log')
        start = [self.tool('pg_ctl'), '-D', data, '-l', log, '-w', '-t', str(self.timeout),
                 '-o', self.server_options(data), 'start']
        rc, out, err = self.run(start)
        started = rc == 0
        try:
            if not started:
                raise ArchiveError('PostgreSQL did not start on the restored copy (rc=%s): %s%s'
                                   % (rc, (err or out or '').strip(), self._log_tail(log)),
                                   dict(rc=rc, stdout=out, stderr=err, cmd=' '.join(start)))
            rows = self.psql(CHECK_QUERY)  # one psql run (each is a process and a connection)
        finally:
            self._stop(data, started)
        params, found = {}, {}
        for row in rows:
            if row[0] == 'param' and len(row) > 1:
                params[row[1]] = row[2] if len(row) > 2 else ''
            elif len(row) > 1:
                found[row[0]] = row[1]
        if 'live' not in found or 'all' not in found:
            raise ArchiveError('psql on the restored copy did not return the job counts: %r' % (rows[:5],))
        return dict(params=params, jidcounter=params.get('jidcounter'),
                    schema_version=params.get('schema-version'),
                    module_checksum=params.get('module-checksum'),
                    job_count=int(found['live']), job_count_with_archive=int(found['all']),
                    server_version=found.get('server'), port=self.port,
                    notes=list(self.notes))

    def _stop(self, data, started):
        if not os.path.exists(os.path.join(data, 'postmaster.pid')) and not started:
            return
        rc, out, err = self.run([self.tool('pg_ctl'), '-D', data, 'stop', '-m', 'fast', '-w',
                                 '-t', str(self.timeout)])
        if rc != 0 and os.path.exists(os.path.join(data, 'postmaster.pid')):
            self.run([self.tool('pg_ctl'), '-D', data, 'stop', '-m', 'immediate', '-w', '-t',
                      str(self.timeout)])

    @staticmethod
    def _log_tail(log, lines=5):
        try:
            with open(log) as handle:
                tail = [line.rstrip() for line in handle.readlines()[-lines:]]
        except (IOError, OSError):
            return ''
        return ('; server log: ' + ' | '.join(tail)) if tail else ''

    def cleanup(self):
        if self.scratch and os.path.isdir(self.scratch):
            shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch_removed = not (self.scratch and os.path.exists(self.scratch))
