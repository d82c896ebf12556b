# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Job-database backup archives: writing, checking, and proving that they restore.

The archive format is the one ``tractor-dbctl --backup FILE`` writes (fact sheet §1.5): a gzip'd
tar whose single top-level entry is ``basename(DBDataDir)`` (``psql/``), so ``tractor-dbctl
--restore FILE`` (``tar xfz FILE -C <parent of DBDataDir>``) restores it.

* ParallelGzipWriter compresses the tar stream in blocks, each block an independent gzip member,
  in a thread pool (zlib releases the GIL), and writes the members in order.  A file of
  concatenated members is a valid gzip file for ``gzip -d``, ``tar xz`` and Python's gzip module.
* AtomicFile writes to a temporary name in the destination directory and renames it into place
  only on commit(); anything else removes the temporary file.
* inspect_archive() decompresses everything and walks the tar (one pass, sha256 on the way).
* restore_check() extracts a copy to a scratch directory, starts PostgreSQL on it (free port,
  localhost only, no unix socket), reads ``param`` and counts jobs, stops it and removes the copy.

Only the standard library: this runs on the managed host under Python 3.8 or later.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import errno
import glob
import grp
import gzip
import hashlib
import json
import os
import pwd
import re
import shutil
import socket
import stat
import struct
import sys
import tarfile
import tempfile
import time
import zlib

try:
    from concurrent.futures import ThreadPoolExecutor
except ImportError:  # pragma: no cover - Python 2 is not supported by this collection
    ThreadPoolExecutor = None

SHA256_SUFFIX = '.sha256'
MANIFEST_SUFFIX = '.manifest.json'
MANIFEST_FORMAT = 'renderfarm.tractor/job-db-backup'
MANIFEST_FORMAT_VERSION = 1
DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024
READ_CHUNK = 1024 * 1024
TAR_COPY_BUFSIZE = 1024 * 1024
PG_BINDIR_ENV = 'TRACTOR_EMULATOR_PG_BINDIR'
DEBIAN_PG_GLOB = '/usr/lib/postgresql/*/bin'
SHA256_LINE_RE = re.compile(r'^([0-9a-fA-F]{64}) [ *](.+)$')
# Files a restore check removes from its scratch copy: they describe the process that wrote them.
STALE_SERVER_FILES = ('postmaster.pid', 'postmaster.opts')
MAX_PROBLEMS = 20


class ArchiveError(Exception):
    """The archive cannot be read, is damaged, or does not restore.  ``info`` has what was learnt."""

    def __init__(self, msg, info=None):
        super(ArchiveError, self).__init__(msg)
        self.info = info or {}


def utc_now():
    """'2024-05-01T12:00:00Z'."""
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())


def sidecar_paths(archive):
    """(<archive>.sha256, <archive>.manifest.json)."""
    return archive + SHA256_SUFFIX, archive + MANIFEST_SUFFIX


def dir_size(path):
    """Bytes of all regular files below path (what a tar of it holds, without headers)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def free_bytes(path):
    """Free bytes for an unprivileged user on the filesystem holding path."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def same_filesystem(a, b):
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False


def human_size(num):
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if abs(num) < 1024 or unit == 'TiB':
            return ('%d %s' % (num, unit)) if unit == 'B' else ('%.1f %s' % (num, unit))
        num /= 1024.0
    return str(num)  # pragma: no cover


def file_sha256(path, chunk=READ_CHUNK):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        while True:
            block = handle.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


# -- sidecar files ----------------------------------------------------------------------------------
def format_sha256_line(digest, archive):
    """The line `sha256sum` writes (and `sha256sum -c` reads in the archive's directory)."""
    return '%s  %s\n' % (digest, os.path.basename(archive))


def parse_sha256_file(text, archive=None):
    """sha256sum output -> hex digest.  With archive, the line naming its basename wins."""
    found = []
    for line in (text or '').splitlines():
        match = SHA256_LINE_RE.match(line.strip())
        if match:
            found.append((match.group(1).lower(), match.group(2)))
    if not found:
        raise ValueError('no "<sha256>  <file name>" line')
    if archive is not None:
        base = os.path.basename(archive)
        for digest, name in found:
            if os.path.basename(name) == base:
                return digest
        if len(found) > 1:
            raise ValueError('no line names %s' % base)
    return found[0][0]


def read_sidecars(archive):
    """(sha256 from <archive>.sha256 or None, manifest dict or None).  Raises ArchiveError on junk."""
    sha_path, manifest_path = sidecar_paths(archive)
    digest = manifest = None
    if os.path.exists(sha_path):
        try:
            with open(sha_path) as handle:
                digest = parse_sha256_file(handle.read(), archive)
        except (IOError, OSError, ValueError) as exc:
            raise ArchiveError('cannot read the checksum file %s: %s' % (sha_path, exc))
    if os.path.exists(manifest_path):
        try:
            with open(manifest_path) as handle:
                manifest = json.load(handle)
        except (IOError, OSError, ValueError) as exc:
            raise ArchiveError('cannot read the manifest %s: %s' % (manifest_path, exc))
        if not isinstance(manifest, dict):
            raise ArchiveError('the manifest %s does not hold a JSON object' % manifest_path)
    return digest, manifest


def write_text_atomic(path, text, uid=None, gid=None, mode=0o600):
    """Write a small file via a temporary name + fsync + rename."""
    with AtomicFile(path, uid=uid, gid=gid, mode=mode) as out:
        out.write(text.encode('utf-8'))
        out.commit()


# -- atomic output ----------------------------------------------------------------------------------
class AtomicFile(object):
    """A new file in the destination directory under a temporary name.

    ``finish()`` flushes, fsyncs and closes it; ``commit()`` (finishing first if needed) renames
    it to the final name and fsyncs the directory.  Leaving the ``with`` block without commit()
    (an error, a check that failed) removes the temporary file.  Mode and owner are set on the
    open descriptor, before any data is written.
    """

    def __init__(self, final_path, uid=None, gid=None, mode=0o600, suffix=''):
        self.final_path = final_path
        self.directory = os.path.dirname(os.path.abspath(final_path))
        self.uid = uid
        self.gid = gid
        self.mode = mode
        self.suffix = suffix
        self.path = None
        self.handle = None
        self.committed = False

    def __enter__(self):
        fd, self.path = tempfile.mkstemp(prefix='.%s.tmp-' % os.path.basename(self.final_path),
                                         suffix=self.suffix, dir=self.directory)
        try:
            os.fchmod(fd, self.mode)
            if self.uid is not None:
                os.fchown(fd, self.uid, -1 if self.gid is None else self.gid)
        except OSError:
            os.close(fd)
            os.unlink(self.path)
            raise
        self.handle = os.fdopen(fd, 'wb')
        return self

    def write(self, data):
        return self.handle.write(data)

    def flush(self):
        self.handle.flush()

    def finish(self):
        if self.handle is not None:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            self.handle = None

    def commit(self):
        self.finish()
        os.rename(self.path, self.final_path)
        self.committed = True
        fsync_dir(self.directory)

    def discard(self):
        if self.handle is not None:
            try:
                self.handle.close()
            except (IOError, OSError):
                pass
            self.handle = None
        if not self.committed and self.path and os.path.lexists(self.path):
            os.unlink(self.path)

    def __exit__(self, exc_type, exc, tb):
        self.discard()
        return False


def fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- writing ----------------------------------------------------------------------------------------
def gzip_member(pieces, level):
    """One complete gzip member (header, deflate stream, CRC32 and size trailer) of the bytes-like
    ``pieces`` (one, or a list of them, compressed in order without joining them first)."""
    if isinstance(pieces, (bytes, bytearray, memoryview)):
        pieces = (pieces,)
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    out = [compressor.compress(piece) for piece in pieces]
    out.append(compressor.flush())
    return b''.join(out)


class HashingSink(object):
    """Writes to ``raw`` and keeps the sha256 and size of everything written."""

    def __init__(self, raw):
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.sha256.update(data)
        self.size += len(data)
        self.raw.write(data)
        return len(data)


class ParallelGzipWriter(object):
    """A write-only file object: the bytes written to it come out gzip'd on ``raw``.

    The input is cut into ``block_size`` blocks; each block becomes an independent gzip member,
    compressed by one of ``workers`` threads; members are written to ``raw`` in input order.  At
    most ``2 * workers`` blocks are in flight, so memory stays bounded.  Any exception from a
    worker is raised by the next write() or close().
    """

    def __init__(self, raw, level=6, workers=1, block_size=DEFAULT_BLOCK_SIZE):
        if not 0 <= level <= 9:
            raise ValueError('compression level must be 0-9, not %r' % (level,))
        if block_size < 1:
            raise ValueError('block size must be positive')
        self.raw = raw
        self.level = level
        self.workers = max(1, int(workers))
        self.block_size = block_size
        # Input waiting for a full block: views of the written chunks, handed to a worker as they
        # are. zlib reads them in place, so no byte is copied before it is compressed (joining
        # them cost the writing thread a copy of every byte, taken from the compressing threads).
        self.chunks = []
        self.buffered = 0
        self.pending = collections.deque()
        self.members = 0
        self.bytes_in = 0
        self.closed = False
        self.pool = ThreadPoolExecutor(max_workers=self.workers) if self.workers > 1 else None

    def writable(self):
        return True

    def _submit(self, block):
        if self.pool is None:
            self.raw.write(gzip_member(block, self.level))
            self.members += 1
            return
        self.pending.append(self.pool.submit(gzip_member, block, self.level))
        while len(self.pending) > 2 * self.workers:
            self._drain_one()

    def _drain_one(self):
        self.raw.write(self.pending.popleft().result())
        self.members += 1

    def write(self, data):
        if self.closed:
            raise ValueError('write to a closed ParallelGzipWriter')
        # A bytes object is immutable and can be kept; anything else the caller may reuse.
        view = memoryview(data if isinstance(data, bytes) else bytes(data)).cast('B')
        size = len(view)
        self.bytes_in += size
        while len(view):
            piece = view[:self.block_size - self.buffered]
            self.chunks.append(piece)
            self.buffered += len(piece)
            view = view[len(piece):]
            if self.buffered == self.block_size:  # blocks of exactly block_size: the output
                self._submit(self.chunks)         # does not depend on how the input was cut
                self.chunks = []
                self.buffered = 0
        return size

    def flush(self):
        pass

    def close(self):
        if self.closed:
            return
        try:
            if self.buffered or self.members + len(self.pending) == 0:
                self._submit(self.chunks)
                self.chunks = []
                self.buffered = 0
            while self.pending:
                self._drain_one()
        finally:
            self.closed = True
            self.abort()

    def abort(self):
        """Stop the workers without writing what is left (used on errors)."""
        for future in self.pending:
            future.cancel()
        self.pending.clear()
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None


def write_tar_stream(src_dir, out, arcname=None):
    """Tar src_dir (as top-level entry ``arcname``) into the file object out, in stream mode.

    Sockets, FIFOs and device files are left out (tar would complain about them; a stopped
    PostgreSQL cluster holds none).  Returns dict(members, file_bytes, skipped).
    """
    arcname = arcname or os.path.basename(os.path.normpath(src_dir))
    counts = dict(members=0, file_bytes=0, skipped=[])
    # Not tarfile's stream mode ('w|'): it re-buffers everything in 10 KiB records. Plain 'w'
    # writes headers and file data straight through (it only needs tell()), and copybufsize
    # hands the compressor file data in large pieces; the bytes written are the same.
    # GNU format, as GNU tar (tractor-dbctl's `tar cfz`) writes by default: whole-second mtimes
    # in the header. The POSIX format added an extended header to every file for the fraction.
    tar = tarfile.open(fileobj=_PositionWriter(out), mode='w', format=tarfile.GNU_FORMAT,
                       copybufsize=TAR_COPY_BUFSIZE)
    try:
        _add_tree(tar, src_dir, arcname, counts, {})
    finally:
        tar.close()
    return counts


class _PositionWriter(object):
    """write() to out, and tell() how much was written (all tarfile's 'w' mode asks of a file)."""

    def __init__(self, out):
        self.out = out
        self.position = 0

    def write(self, data):
        self.out.write(data)
        self.position += len(data)
        return len(data)

    def tell(self):
        return self.position


def _tar_info(tar, path, arcname, names):
    """tar.gettarinfo(path, arcname), with the owner and group names looked up once per id.

    gettarinfo asks the account database for every file; a job database has thousands of files
    and one owner. Regular files with one link, directories and symbolic links are described
    here exactly as gettarinfo does; anything else (hard links, devices, sockets) by gettarinfo.
    """
    st = os.lstat(path)
    mode = st.st_mode
    if not (stat.S_ISDIR(mode) or stat.S_ISLNK(mode) or (stat.S_ISREG(mode) and st.st_nlink == 1)):
        return tar.gettarinfo(path, arcname)
    info = tarfile.TarInfo(arcname)
    info.mode = stat.S_IMODE(mode)
    info.uid, info.gid, info.mtime = st.st_uid, st.st_gid, st.st_mtime
    for key, ident, lookup in (('u', st.st_uid, _user_name), ('g', st.st_gid, _group_name)):
        if (key, ident) not in names:
            names[key, ident] = lookup(ident)
    info.uname, info.gname = names['u', st.st_uid], names['g', st.st_gid]
    if stat.S_ISREG(mode):
        info.type, info.size = tarfile.REGTYPE, st.st_size
    elif stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
    else:
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
    return info


def _user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ''


def _group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return ''


def _add_tree(tar, path, arcname, counts, names):
    info = _tar_info(tar, path, arcname, names)
    if info is None:
        counts['skipped'].append(arcname)
        return
    if info.isreg():
        with open(path, 'rb') as handle:
            tar.addfile(info, handle)
        counts['file_bytes'] += info.size
    else:
        tar.addfile(info)
    counts['members'] += 1
    if info.isdir():
        for name in sorted(os.listdir(path)):
            _add_tree(tar, os.path.join(path, name), arcname + '/' + name, counts, names)


def write_archive(src_dir, raw, level=6, workers=1, block_size=DEFAULT_BLOCK_SIZE, arcname=None):
    """Parallel-gzip'd tar of src_dir onto raw.  Returns dict(sha256, size, members, ...)."""
    sink = HashingSink(raw)
    writer = ParallelGzipWriter(sink, level=level, workers=workers, block_size=block_size)
    try:
        counts = write_tar_stream(src_dir, writer, arcname=arcname)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    counts.update(sha256=sink.sha256.hexdigest(), size=sink.size, gzip_members=writer.members,
                  tar_bytes=writer.bytes_in)
    return counts


# -- reading ----------------------------------------------------------------------------------------
class HashingReader(object):
    """A read-only file object over raw that keeps the sha256 and size of everything read."""

    def __init__(self, raw):
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self):
        return True

    def read(self, size=-1):
        data = self.raw.read(size)
        self.sha256.update(data)
        self.size += len(data)
        return data

    def drain(self):
        while self.read(READ_CHUNK):
            pass


def member_problems(member, top):
    """Why a tar member must not be extracted (list of strings, empty when it is fine)."""
    problems = []
    name = member.name
    if name.startswith('/') or re.match(r'^[A-Za-z]:', name):
        problems.append('%s: absolute path' % name)
    parts = [p for p in name.split('/') if p not in ('', '.')]
    if '..' in parts:
        problems.append('%s: ".." in the path' % name)
    if top is not None and parts and parts[0] != top:
        problems.append('%s: outside the top-level directory %s/' % (name, top))
    if member.issym() or member.islnk():
        target = member.linkname
        base = parts[:-1] if member.issym() else []
        link_parts = [p for p in target.split('/') if p not in ('', '.')]
        if target.startswith('/'):
            problems.append('%s: link to the absolute path %s' % (name, target))
        else:
            depth = len(base)
            for part in target.split('/'):
                if part == '..':
                    depth -= 1
                elif part not in ('', '.'):
                    depth += 1
                if depth < (1 if member.issym() else 0):
                    problems.append('%s: link %s leads outside the archive' % (name, target))
                    break
            else:
                if member.islnk() and top is not None and link_parts and link_parts[0] != top:
                    problems.append('%s: hard link to %s, outside %s/' % (name, target, top))
    elif not (member.isreg() or member.isdir()):
        problems.append('%s: special file (device, FIFO or socket)' % name)
    return problems


def system_identifier(pg_control):
    """PostgreSQL's database system identifier: the first field (uint64) of global/pg_control."""
    if not pg_control or len(pg_control) < 8:
        return None
    return str(struct.unpack('=Q', pg_control[:8])[0])


def data_dir_identity(db_dir):
    """What identifies one extraction of a cluster: sysid + PG_VERSION's inode and ctime.

    PostgreSQL never rewrites PG_VERSION, so its inode and ctime change only when the directory
    is re-created (initdb, tar extraction, chown).  None when the directory holds no cluster.
    """
    try:
        st = os.stat(os.path.join(db_dir, 'PG_VERSION'))
        with open(os.path.join(db_dir, 'global', 'pg_control'), 'rb') as handle:
            sysid = system_identifier(handle.read(8))
    except (IOError, OSError):
        return None
    return dict(system_identifier=sysid, pg_version_inode=st.st_ino,
                pg_version_ctime_ns=getattr(st, 'st_ctime_ns', int(st.st_ctime * 1e9)))


def file_identity(path):
    """What changes whenever a file's content may have changed: device, inode, size, and the
    modification and status-change times in nanoseconds (the ctime cannot be set back by a user)."""
    st = os.stat(path)
    return dict(dev=st.st_dev, ino=st.st_ino, size=st.st_size, mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns)


def inspect_archive_identified(path, top=None):
    """inspect_archive(), plus the file's identity (file_identity) when it did not change during
    the read, so that a later step of the same run can recognise the unchanged file; else None."""
    before = file_identity(path)
    info = inspect_archive(path, top=top)
    info['identity'] = before if file_identity(path) == before else None
    return info


def inspect_archive(path, top=None):
    """Decompress and walk the whole archive, in one pass.

    Returns dict(sha256, size, members, file_bytes, top_level, pg_version, system_identifier,
    postmaster_pid, problems).  ``problems`` lists structural faults (more than one top-level
    entry, absolute or '..' paths, links out of the tree, no PG_VERSION or global/): such an
    archive must not be restored.  Raises ArchiveError when the file cannot be decompressed or is
    not a tar; its ``info`` still holds the sha256 of the whole file.
    """
    info = dict(path=path, sha256=None, size=None, members=0, file_bytes=0, top_level=None,
                pg_version=None, system_identifier=None, postmaster_pid=False, problems=[])
    tops = set()
    names = set()
    try:
        raw = open(path, 'rb')
    except (IOError, OSError) as exc:
        raise ArchiveError('cannot read %s: %s' % (path, exc), info)
    with raw:
        reader = HashingReader(raw)
        error = None
        try:
            gz = gzip.GzipFile(fileobj=reader, mode='rb')
            tar = tarfile.open(fileobj=gz, mode='r|')
            for member in tar:
                info['members'] += 1
                parts = [p for p in member.name.split('/') if p not in ('', '.')]
                if parts:
                    tops.add(parts[0])
                # a wrong top-level directory is reported once, below, not for every member
                found = [p for p in member_problems(member, top) if 'outside the top-level directory' not in p]
                if found and len(info['problems']) < MAX_PROBLEMS:
                    info['problems'].extend(found[:MAX_PROBLEMS - len(info['problems'])])
                rel = '/'.join(parts[1:])
                names.add(rel + ('/' if member.isdir() else ''))
                if member.isreg():
                    handle = tar.extractfile(member)
                    first = handle.read(min(member.size, 64))
                    while handle.read(READ_CHUNK):
                        pass
                    info['file_bytes'] += member.size
                    if rel == 'PG_VERSION':
                        info['pg_version'] = first.decode('ascii', 'replace').strip()
                    elif rel == 'global/pg_control':
                        info['system_identifier'] = system_identifier(first)
                    elif rel == 'postmaster.pid':
                        info['postmaster_pid'] = True
            tar.close()
            while gz.read(READ_CHUNK):  # the rest of the gzip stream: its CRCs are checked at the end
                pass
        except (IOError, OSError, EOFError, zlib.error, tarfile.TarError, ValueError, struct.error) as exc:
            error = exc
        try:
            reader.drain()
        except (IOError, OSError):
            pass
        info['sha256'] = reader.sha256.hexdigest()
        info['size'] = reader.size
        if error is not None:
            raise ArchiveError('%s is damaged or not a gzip-compressed tar archive (%s: %s)'
                               % (path, type(error).__name__, error), info)
    if len(tops) == 1:
        info['top_level'] = tops.pop()
    elif not tops:
        info['problems'].append('the archive is empty')
    else:
        info['problems'].append('more than one top-level entry: %s' % ', '.join(sorted(tops)))
    if top is not None and info['top_level'] not in (None, top):
        info['problems'].append('the top-level directory is %s/, not %s/ (basename of DBDataDir): '
                                'tractor-dbctl --restore would unpack it beside the data directory'
                                % (info['top_level'], top))
    if info['members'] and 'PG_VERSION' not in names:
        info['problems'].append('no PG_VERSION: not a PostgreSQL data directory')
    if info['members'] and not any(n == 'global/' or n.startswith('global/') for n in names):
        info['problems'].append('no global/ directory: not a complete PostgreSQL data directory')
    return info


def safe_extract(path, dest, top=None, uid=None, gid=None):
    """Extract the archive below dest, refusing anything member_problems() objects to.

    Directories are created 0700, files keep their owner bits only (PostgreSQL wants 0600/0700);
    with uid/gid every created path is chowned to them (a root process preparing files for the
    EngineOwner).  Returns the number of members extracted.
    """
    count = 0
    dirs = []
    chown = uid is not None

    def own(target, follow=True):
        if chown:
            (os.chown if follow else os.lchown)(target, uid, -1 if gid is None else gid)

    try:
        with gzip.open(path, 'rb') as gz:
            tar = tarfile.open(fileobj=gz, mode='r|')
            for member in tar:
                problems = member_problems(member, top)
                if problems:
                    raise ArchiveError('refusing to extract %s: %s' % (path, '; '.join(problems)))
                parts = [p for p in member.name.split('/') if p not in ('', '.')]
                if not parts:
                    continue
                target = os.path.join(dest, *parts)
                parent = os.path.dirname(target)
                if not os.path.isdir(parent):
                    os.makedirs(parent, 0o700)
                if member.isdir():
                    if not os.path.isdir(target):
                        os.mkdir(target, 0o700)
                    own(target)
                    dirs.append((target, member.mtime))
                elif member.isreg():
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0),
                                 0o600)
                    with os.fdopen(fd, 'wb') as out:
                        source = tar.extractfile(member)
                        shutil.copyfileobj(source, out, READ_CHUNK)
                    os.chmod(target, (member.mode & 0o700) | 0o600)
                    own(target)
                    os.utime(target, (member.mtime, member.mtime))
                elif member.issym():
                    os.symlink(member.linkname, target)
                    own(target, follow=False)
                elif member.islnk():
                    link_parts = [p for p in member.linkname.split('/') if p not in ('', '.')]
                    os.link(os.path.join(dest, *link_parts), target)
                count += 1
            tar.close()
    except ArchiveError:
        raise
    except (IOError, OSError, EOFError, zlib.error, tarfile.TarError, ValueError) as exc:
        raise ArchiveError('cannot extract %s into %s (%s: %s)' % (path, dest, type(exc).__name__, exc))
    for target, mtime in reversed(dirs):
        os.utime(target, (mtime, mtime))
    return count


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
                 gid=None, timeout=60, port=None):
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
            safe_extract(self.archive, self.scratch, self.top, self.uid, self.gid)
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


# -- manifest -------------------------------------------------------------------------------------------
def build_manifest(archive, inspection, method, source, engine, params_source, verification, tools,
                   created=None):
    """The JSON written beside the archive.  Values not read from the data are None, never guessed."""
    verification = verification or {}
    return dict(
        format=MANIFEST_FORMAT,
        format_version=MANIFEST_FORMAT_VERSION,
        archive=os.path.basename(archive),
        archive_size=inspection['size'],
        sha256=inspection['sha256'],
        method=method,
        created=created or utc_now(),
        engine_version=engine.get('version'),
        engine_build=engine.get('build'),
        schema_version=verification.get('schema_version'),
        module_checksum=verification.get('module_checksum'),
        jidcounter=verification.get('jidcounter'),
        job_count=verification.get('job_count'),
        job_count_with_archive=verification.get('job_count_with_archive'),
        params=verification.get('params'),
        params_source=params_source,
        pg_version=inspection.get('pg_version'),
        system_identifier=inspection.get('system_identifier'),
        top_level=inspection.get('top_level'),
        members=inspection.get('members'),
        uncompressed_bytes=inspection.get('file_bytes'),
        source=source,
        verified=verification.get('level'),
        tools=tools,
    )


def compare_manifest(manifest, inspection, verification=None):
    """Disagreements between a manifest and what was read from the archive (list of strings)."""
    problems = []
    if not manifest:
        return problems
    for key, actual in (('sha256', inspection.get('sha256')), ('archive_size', inspection.get('size'))):
        expected = manifest.get(key)
        if expected is not None and actual is not None and expected != actual:
            problems.append('%s is %s, the manifest says %s' % (key, actual, expected))
    if verification:
        for key in ('jidcounter', 'schema_version', 'module_checksum', 'job_count'):
            expected = manifest.get(key)
            actual = verification.get(key)
            if expected is not None and actual is not None and str(expected) != str(actual):
                problems.append('%s read from the restored copy is %s, the manifest says %s'
                                % (key, actual, expected))
    return problems


def python_version():
    return '%d.%d.%d' % sys.version_info[:3]


def is_no_space(exc):
    return isinstance(exc, (IOError, OSError)) and getattr(exc, 'errno', None) in (errno.ENOSPC, errno.EDQUOT)
