"""Shared fixtures: real Tractor installs (emulator), real PostgreSQL, real processes.

When the tests run as root (CI does), the tools run as the unprivileged account ``tractor``,
created here if missing, as a site would create it (tests/tractor_sites.py).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile

import pytest

# The shared helpers (tractor_sites, tractor_ansible, ...) live beside this file. pytest puts this
# directory on sys.path itself; `ansible-test units` (make lint) imports conftest files through
# ansible's collection loader instead, which does not.
if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tractor_emulator import install as installer  # noqa: E402  pylint: disable=wrong-import-position
from tractor_sites import OWNER_NAME, Site  # noqa: E402  pylint: disable=wrong-import-position

@pytest.fixture(scope="session")
def owner() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(OWNER_NAME)
    except KeyError:
        # Under pytest-xdist two workers may race here; whichever loses finds the account made.
        subprocess.run(["useradd", "--system", "--create-home", "--shell", "/bin/sh", OWNER_NAME], check=False)
        return pwd.getpwnam(OWNER_NAME)


@pytest.fixture(scope="session", autouse=True)
def dbctl_lock_per_worker(worker_id):
    """tractor-dbctl serialises itself with a lock file in /tmp (§1.3); parallel test workers are
    separate 'machines' and get one each (inherited by every tool the tests start)."""
    if worker_id != "master":
        os.environ["TRACTOR_DBCTL_LOCKFILE"] = f"/tmp/tractor-dbctl-{worker_id}.lock"
    yield


@pytest.fixture(scope="session")
def world(owner):
    """A directory every account can traverse (pytest's own tmp dirs are private to root)."""
    base = tempfile.mkdtemp(prefix="tractor-tests-", dir="/var/tmp")
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def initdb_template_cache(world, owner):
    """New clusters are copies of one initdb run (with a system identifier of their own: INVENTED,
    emulator/README.md) rather than an initdb each: seconds per engine site saved. The tools the
    tests start inherit the setting (tests/tractor_sites.py passes it through its clean
    environments); it lives in this session's world and goes with it."""
    cache = os.path.join(world, "initdb-cache")
    os.makedirs(cache)
    os.chown(cache, owner.pw_uid, owner.pw_gid)
    os.environ["TRACTOR_EMULATOR_INITDB_CACHE"] = cache
    yield cache
    os.environ.pop("TRACTOR_EMULATOR_INITDB_CACHE", None)


@pytest.fixture(scope="session")
def prefix(world):
    path = os.path.join(world, "opt-pixar")
    os.makedirs(path)
    os.chmod(path, 0o755)
    return path


@pytest.fixture(scope="session")
def installs(prefix, initdb_template_cache):
    """Lazily installed versions: installs('2.2') -> install root."""
    done: dict[str, str] = {}

    def get(version: str) -> str:
        if version not in done:
            done[version] = installer.install(version, prefix)
        return done[version]

    return get


@pytest.fixture
def make_site(world, owner, installs, request):
    sites: list[Site] = []

    def make() -> Site:
        base = tempfile.mkdtemp(prefix="site-", dir=world)
        os.chmod(base, 0o755)
        site = Site(base, owner, installs)
        sites.append(site)
        return site

    yield make
    for site in sites:
        site.cleanup()


@pytest.fixture
def site(make_site) -> Site:
    return make_site()

