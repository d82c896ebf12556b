"""Fault-injection fixtures: the `ansible` runner and farms of emulated engines (tests/tractor_farm.py).

`farm` belongs to one test; `round_farm` to a whole test module, for the modules in which one
playbook run carries several faults, each injected into an engine of its own, and each test then
checks its own engine.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tractor_ansible import Ansible
from tractor_farm import Farm
from tractor_sites import Site


@pytest.fixture(scope="session")
def ansible(owner) -> Ansible:
    return Ansible(owner.pw_name)


@pytest.fixture
def farm(world, prefix, installs, ansible, tmp_path_factory):
    farm = Farm(world, prefix, installs, ansible, tmp_path_factory)
    yield farm
    farm.cleanup()


class SiteMaker:
    """make_site for fixtures wider than one test."""

    def __init__(self, world, owner, installs):
        self.world, self.owner, self.installs = world, owner, installs
        self.sites: list[Site] = []

    def __call__(self) -> Site:
        base = tempfile.mkdtemp(prefix="site-", dir=self.world)
        os.chmod(base, 0o755)
        site = Site(base, self.owner, self.installs)
        self.sites.append(site)
        return site

    def cleanup(self):
        for site in self.sites:
            site.cleanup()


@pytest.fixture(scope="module")
def round_farm(world, owner, prefix, installs, ansible, tmp_path_factory):
    farm = Farm(world, prefix, installs, ansible, tmp_path_factory)
    farm.make_site = SiteMaker(world, owner, installs)
    yield farm
    farm.cleanup()
    farm.make_site.cleanup()


def round_modules(rootpath: Path) -> set[str]:
    """The test modules of this directory whose tests share one run (marked ``xdist_group``), as
    the path part of their node ids (relative to pytest's rootdir)."""
    found = set()
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        if "pytestmark = pytest.mark.xdist_group(" in path.read_text(encoding="utf-8"):
            try:
                found.add(path.relative_to(rootpath).as_posix())
            except ValueError:
                found.add(path.as_posix())
    return found


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist (make test: -n 2), keep each fault round on one worker.

    The modules marked ``xdist_group`` share one playbook run among their tests (a module-scoped
    fixture); xdist's default "load" distribution would split them over the workers, and each
    worker would repeat the run. ``--dist loadgroup`` is meant for this, but with pytest 9 it
    groups nothing: its workers rename a grouped test ``<nodeid>@<group>`` through an attribute
    that pytest 9 no longer reads, so the scheduler never sees a group. So this scheduler groups
    by module itself: the tests of a round module form one unit of work, every other test of the
    pytest run (the other suites too) is a unit of its own and is spread as "load" spreads it.
    It takes effect when tests/faults (or a file in it) is named on the command line, as `make
    test` does: xdist's controller collects nothing, so it reads only the conftest files of the
    paths it is given (with `pytest -n 2 tests`, the rounds would be split and run twice).
    """
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    grouped = round_modules(config.rootpath)

    class RoundScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in grouped else nodeid

    return RoundScheduling(config, log)
