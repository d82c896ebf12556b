"""Fixtures for the emulator's contract tests: real installs, real PostgreSQL, real processes.

PostgreSQL refuses to run as root, and tractor-dbctl refuses to run as anyone but EngineOwner
(fact sheet §1.3).  So when the tests run as root (CI does) every dbctl call runs as the
unprivileged account ``tractor`` -- created here if missing, as a site would create it -- and
otherwise as the current user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile

import pytest

from tractor_emulator import install as installer

OWNER_NAME = "tractor"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def owner() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(OWNER_NAME)
    except KeyError:
        subprocess.run(["useradd", "--system", "--create-home", "--shell", "/bin/sh", OWNER_NAME], check=True)
        return pwd.getpwnam(OWNER_NAME)


@pytest.fixture(scope="session")
def world(owner):
    """A directory every account can traverse (pytest's own tmp dirs are private to root)."""
    base = tempfile.mkdtemp(prefix="tractor-tests-", dir="/var/tmp")
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def prefix(world):
    path = os.path.join(world, "opt-pixar")
    os.makedirs(path)
    os.chmod(path, 0o755)
    return path


@pytest.fixture(scope="session")
def installs(prefix):
    """Lazily installed versions: installs('2.2') -> install root."""
    done: dict[str, str] = {}

    def get(version: str) -> str:
        if version not in done:
            done[version] = installer.install(version, prefix)
        return done[version]

    return get


class Site:
    """One engine's site: config dir, data dir, ports; runs the tools as EngineOwner."""

    def __init__(self, base: str, owner: pwd.struct_passwd, installs):
        self.base = base
        self.owner = owner
        self.installs = installs
        self.config_dir = os.path.join(base, "config")
        self.data_dir = os.path.join(base, "data")
        self.db_dir = os.path.join(self.data_dir, "psql")
        self.db_port = free_port()
        self.engine_port = free_port()
        for path in (self.config_dir, self.data_dir):
            os.makedirs(path)
            os.chown(path, owner.pw_uid, owner.pw_gid)
        self.write_config()

    def write_config(self, tractor_extra: str = "", db_extra: str = "") -> None:
        self.write("tractor.config", (
            "{\n"
            f'    "EngineOwner": "{self.owner.pw_name}",\n'
            f'    "TractorDataDirectory": "{self.data_dir}",\n'
            f'    "ListenerPort": {self.engine_port},\n'
            f"{tractor_extra}"
            "}\n"))
        self.write("db.config", (
            "{\n"
            f'    "DBConnection": {{"host": "localhost", "port": {self.db_port}, "dbname": "tractor"}},\n'
            f"{db_extra}"
            "}\n"))

    def write(self, name: str, text: str) -> None:
        path = os.path.join(self.config_dir, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(path, 0o644)

    def bin(self, version: str, tool: str) -> str:
        return os.path.join(self.installs(version), "bin", tool)

    def run(self, argv: list[str], as_owner: bool = True, env: dict | None = None, timeout: int = 120):
        kwargs = {}
        if as_owner and os.geteuid() == 0:
            kwargs = {"user": self.owner.pw_uid, "group": self.owner.pw_gid, "extra_groups": []}
        full_env = {"PATH": "/usr/bin:/bin", "HOME": self.owner.pw_dir if as_owner else os.environ.get("HOME", "/"),
                    "USER": self.owner.pw_name if as_owner else os.environ.get("USER", "root"), "LANG": "C.UTF-8"}
        full_env.update(env or {})
        return subprocess.run(argv, capture_output=True, text=True, cwd=self.base, env=full_env,
                              timeout=timeout, check=False, **kwargs)

    def dbctl(self, version: str, *args: str, **kwargs):
        return self.run([self.bin(version, "tractor-dbctl"), "--configdir", self.config_dir, *args], **kwargs)

    def cleanup(self) -> None:
        pg_ctl = None
        for candidate in sorted(os.listdir("/usr/lib/postgresql"), reverse=True) if os.path.isdir("/usr/lib/postgresql") else []:
            pg_ctl = os.path.join("/usr/lib/postgresql", candidate, "bin", "pg_ctl")
            break
        if pg_ctl and os.path.exists(os.path.join(self.db_dir, "postmaster.pid")):
            self.run([pg_ctl, "-D", self.db_dir, "stop", "-m", "immediate"])


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
