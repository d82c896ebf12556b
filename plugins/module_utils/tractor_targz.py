# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Writing a backup archive: a tar of ``DBDataDir`` compressed in parallel.

The archive is what ``tractor-dbctl --backup FILE`` writes (fact sheet 1.5): a gzip'd tar whose
single top-level entry is ``basename(DBDataDir)`` (``psql/``), so ``tractor-dbctl --restore FILE``
restores it. ParallelGzipWriter compresses the tar stream in blocks, each block an independent
gzip member, in a thread pool (zlib releases the GIL), and writes the members in order. A file of
concatenated members is a valid gzip file for ``gzip -d``, ``tar xz`` and Python's gzip module.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import grp
import hashlib
import os
import pwd
import stat
import tarfile
import time
import zlib

try:
    from concurrent.futures import ThreadPoolExecutor
except ImportError:  # pragma: no cover - Python 2 is not supported by this collection
    ThreadPoolExecutor = None

DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024
TAR_COPY_BUFSIZE = 1024 * 1024


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


def write_tar_stream(src_dir, out, arcname=None, progress=None, max_rate=None):
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
    tar = tarfile.open(fileobj=_PositionWriter(out, progress, max_rate), mode='w', format=tarfile.GNU_FORMAT,
                       copybufsize=TAR_COPY_BUFSIZE)
    try:
        _add_tree(tar, src_dir, arcname, counts, {})
    finally:
        tar.close()
    return counts


class _PositionWriter(object):
    """write() to out, and tell() how much was written (all tarfile's 'w' mode asks of a file);
    the tar bytes written are the progress of the archive write. With ``max_rate`` (bytes per
    second) it sleeps as needed to read the source no faster than that."""

    def __init__(self, out, progress=None, max_rate=None, clock=time.monotonic, sleep=time.sleep):
        self.out = out
        self.position = 0
        self.progress = progress
        self.max_rate = max_rate
        self.clock = clock
        self.sleep = sleep
        self.started = clock()

    def write(self, data):
        self.out.write(data)
        self.position += len(data)
        if self.progress is not None:
            self.progress.set(self.position)
        if self.max_rate:
            ahead = self.position / float(self.max_rate) - (self.clock() - self.started)
            if ahead > 0:
                self.sleep(ahead)
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


def write_archive(src_dir, raw, level=6, workers=1, block_size=DEFAULT_BLOCK_SIZE, arcname=None, progress=None,
                  max_rate=None):
    """Parallel-gzip'd tar of src_dir onto raw.  Returns dict(sha256, size, members, ...)."""
    sink = HashingSink(raw)
    writer = ParallelGzipWriter(sink, level=level, workers=workers, block_size=block_size)
    try:
        counts = write_tar_stream(src_dir, writer, arcname=arcname, progress=progress, max_rate=max_rate)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    counts.update(sha256=sink.sha256.hexdigest(), size=sink.size, gzip_members=writer.members,
                  tar_bytes=writer.bytes_in)
    return counts
