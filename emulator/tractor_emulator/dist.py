"""Build the artifacts a site deploys: a tarball named like Pixar's RPMs, and a .deb.

``dist(version, out_dir)`` writes, for e.g. 2.2:

* ``Tractor-2.2_1715407-linuxEmulated_py3.x86_64.tar.gz`` -- named after the real RPMs
  (``Tractor-2.2_1715407-linuxRHEL6_gcc44icc150.x86_64.rpm``, fact sheet §0), holding the single
  top-level directory ``Tractor-2.2/``; ``tar xzf F -C /opt/pixar`` gives the §7.1 layout;
* ``pixar-tractor-2.2_2.2.1715407_all.deb`` -- installs ``/opt/pixar/Tractor-2.2`` (§7.1).  One
  package name per MAJOR.MINOR so that several versions co-install, as they do in /opt/pixar
  (§7.1, §8 "multiple engines").

Both hold the tree ``install.install()`` writes, with the service files of lib/SystemServices
pointing at /opt/pixar/Tractor-<V> (§7.3).  Owners are 0/0 and the output is reproducible: names
sorted, every mtime set to the version's build date (or SOURCE_DATE_EPOCH when set).
The .deb is built with ``dpkg-deb --build --root-owner-group``, so building works as root and
as an unprivileged user alike.

INVENTED (not Pixar's): the package name, version scheme, dependencies, Description and the prerm
script of the .deb, and the "linuxEmulated_py3" platform part of the tarball name (versions.py).
"""

from __future__ import annotations

import calendar
import gzip
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import time

from . import install as installer
from . import services, versions

INSTALL_PREFIX = "/opt/pixar"  # §7.1

DEB_DEPENDS = "python3 (>= 3.9), postgresql-15 | postgresql, tar, gzip"
DEB_MAINTAINER = "renderfarm.tractor maintainers <renderfarm.tractor@example.invalid>"

DEB_CONTROL = """\
Package: {package}
Version: {deb_version}
Architecture: all
Maintainer: {maintainer}
Installed-Size: {installed_kib}
Depends: {depends}
Section: misc
Priority: optional
Description: Pixar Tractor {version} stand-in from the renderfarm.tractor emulator
 This is the renderfarm.tractor emulator, not Pixar's product: a small Python
 program that stands in for Pixar Tractor {version} (build {build}) so that the
 renderfarm.tractor Ansible collection can be tested without the proprietary
 software. It contains no Pixar code.
 .
 It installs to {install_dir} with the layout of a real Tractor install
 (bin/, config/, lib/SystemServices/) and uses the host's Python 3 and
 PostgreSQL server binaries.
"""

# INVENTED: Python may write __pycache__ into lib/python when the tools run as root; dpkg does not
# know those files, so remove them before dpkg removes the package's own files.
DEB_PRERM = """\
#!/bin/sh
set -e
case "$1" in
    remove|upgrade|deconfigure)
        find '{install_dir}/lib/python' -depth -type d -name __pycache__ -exec rm -rf {{}} + \\
            2>/dev/null || true
        ;;
esac
exit 0
"""


def tarball_name(info: versions.TractorVersion) -> str:
    return f"{info.rpm_stem}.x86_64.tar.gz"


def deb_package(info: versions.TractorVersion) -> str:
    return f"pixar-tractor-{info.version}"


def deb_version(info: versions.TractorVersion) -> str:
    return f"{info.version}.{info.build}"


def deb_name(info: versions.TractorVersion) -> str:
    return f"{deb_package(info)}_{deb_version(info)}_all.deb"


def source_epoch(info: versions.TractorVersion) -> int:
    """mtime of every archived file: SOURCE_DATE_EPOCH, else the build date (UTC)."""
    env = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if env.isdigit():
        return int(env)
    return calendar.timegm(time.strptime(info.build_date, "%b %d %Y %H:%M:%S"))


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def _stage_install(info: versions.TractorVersion, prefix: str) -> str:
    """install() into ``prefix``; service files name /opt/pixar/Tractor-<V>; return the root."""
    root = installer.install(info.version, prefix)
    target = f"{INSTALL_PREFIX}/{installer.install_dir_name(info.version)}"
    services.write_system_services(root, info, target_root=target)
    return root


def _walk_sorted(top: str):
    """(relative path, absolute path) of ``top`` and everything below it, in sorted order."""
    yield "", top
    for name in sorted(os.listdir(top)):
        path = os.path.join(top, name)
        if os.path.isdir(path) and not os.path.islink(path):
            for rel, sub in _walk_sorted(path):
                yield (os.path.join(name, rel) if rel else name), sub
        else:
            yield name, path


def _normalise_tree(top: str, epoch: int) -> None:
    """Modes 0755/0644 (0755 for executables) and one mtime, bottom-up so dirs keep theirs."""
    entries = list(_walk_sorted(top))
    for rel, path in reversed(entries):
        if os.path.islink(path) or not (os.path.isdir(path) or os.path.isfile(path)):
            raise ValueError(f"unexpected non-regular file in the install tree: {path}")
        mode = os.stat(path).st_mode
        if os.path.isdir(path) or mode & 0o111:
            os.chmod(path, 0o755)
        else:
            os.chmod(path, 0o644)
        os.utime(path, (epoch, epoch))


def _write_tarball(root: str, path: str, epoch: int) -> None:
    top = os.path.basename(root)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=epoch) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for rel, abs_path in _walk_sorted(root):
            info = tar.gettarinfo(abs_path, arcname=os.path.join(top, rel) if rel else top)
            info.uid = info.gid = 0
            info.uname = info.gname = ""  # numeric owner, like tar --numeric-owner
            info.mtime = epoch
            if info.isreg():
                with open(abs_path, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    os.replace(tmp, path)


def _installed_kib(top: str) -> int:
    total = 0
    for _rel, path in _walk_sorted(top):
        total += 1 if os.path.isdir(path) else (os.path.getsize(path) + 1023) // 1024
    return total


def _write_deb(info: versions.TractorVersion, stage: str, path: str, epoch: int) -> None:
    install_dir = f"{INSTALL_PREFIX}/{installer.install_dir_name(info.version)}"
    debian = os.path.join(stage, "DEBIAN")
    os.makedirs(debian)
    payload = os.path.join(stage, INSTALL_PREFIX.lstrip("/"))
    control = DEB_CONTROL.format(
        package=deb_package(info), deb_version=deb_version(info), maintainer=DEB_MAINTAINER,
        installed_kib=_installed_kib(payload), depends=DEB_DEPENDS, version=info.version,
        build=info.build, install_dir=install_dir,
    )
    sums = []
    for rel, abs_path in _walk_sorted(os.path.join(stage, "opt")):
        if os.path.isfile(abs_path):
            with open(abs_path, "rb") as handle:
                digest = hashlib.md5(handle.read()).hexdigest()  # dpkg's md5sums format
            sums.append(f"{digest}  opt/{rel}\n")
    for name, text, mode in (("control", control, 0o644), ("md5sums", "".join(sums), 0o644),
                             ("prerm", DEB_PRERM.format(install_dir=install_dir), 0o755)):
        with open(os.path.join(debian, name), "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(os.path.join(debian, name), mode)
    _normalise_tree(stage, epoch)
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch))
    tmp = f"{path}.tmp"
    result = subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", stage, tmp],
        capture_output=True, text=True, env=env, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"dpkg-deb failed (exit {result.returncode}): {result.stderr.strip()}")
    os.replace(tmp, path)


def dist(version: str, out_dir: str) -> dict:
    """Write the tarball and the .deb of ``version`` into ``out_dir``.

    Returns ``{"version", "build", "tarball", "tarball_sha256", "deb", "deb_sha256",
    "deb_package", "deb_version"}`` with absolute paths.
    """
    info = versions.get(version)
    if shutil.which("dpkg-deb") is None:
        raise RuntimeError("dpkg-deb is needed to build the .deb (apt-get install dpkg)")
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    epoch = source_epoch(info)
    tarball = os.path.join(out_dir, tarball_name(info))
    deb = os.path.join(out_dir, deb_name(info))
    scratch = tempfile.mkdtemp(prefix=f"tractor-dist-{info.version}-")
    try:
        tree = os.path.join(scratch, "tarball")
        root = _stage_install(info, tree)
        _normalise_tree(root, epoch)
        _write_tarball(root, tarball, epoch)

        stage = os.path.join(scratch, "deb")
        _stage_install(info, os.path.join(stage, INSTALL_PREFIX.lstrip("/")))
        _write_deb(info, stage, deb, epoch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "version": info.version,
        "build": info.build,
        "tarball": tarball,
        "tarball_sha256": sha256(tarball),
        "deb": deb,
        "deb_sha256": sha256(deb),
        "deb_package": deb_package(info),
        "deb_version": deb_version(info),
    }
