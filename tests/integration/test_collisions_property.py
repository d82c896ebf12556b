"""Property test of the preflight's collision verdict against the kernel's own answer.

Each generated site is a fresh directory tree with real directories, symlinks (one into a
subdirectory) and a bind mount, and two to four engines on one machine whose configuration
directory, TractorDataDirectory and DBDataDir are spelled through those names, with ``..``,
``.``, trailing slashes and not-yet-existing tails, and ports drawn from small pools. The verdict
is what the preflight computes: tractor_info's description of each path, then the
tractor_collisions filter. The reference knows nothing of either: it creates every directory
(``mkdir -p``) and asks the kernel for device and inode. Both must name the same pairs.

Runs as root (bind mounts), like the rest of the integration suite. TRACTOR_PROPERTY_SEED and
TRACTOR_PROPERTY_SITES change the seed and the number of sites (at least 200 in ``make test``).
"""

from __future__ import annotations

import itertools
import os
import random
import re
import shutil
import subprocess
import tempfile

import sys
from pathlib import Path

# The collection as the unit tests import it (the link `make venv` creates), without ansible's loader.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.renderfarm.tractor.plugins.filter import tractor as filters  # noqa: E402
from ansible_collections.renderfarm.tractor.plugins.modules import tractor_info  # noqa: E402

SEED = int(os.environ.get("TRACTOR_PROPERTY_SEED", "20261206"))
SITES = int(os.environ.get("TRACTOR_PROPERTY_SITES", "240"))
KEYS = (("config_dir", "config directory"), ("data_dir", "TractorDataDirectory"), ("db_data_dir", "DBDataDir"))
PORTS = (("listener_port", "engine port", (80, 8080)), ("db_port", "PostgreSQL port", (9876, 9877, 9878)),
         ("cmdlog_port", "command-log server port", (9180, 9181, 9182)))
PROBLEM_RE = re.compile(r"^(e\d) and (e\d) on \S+ (?:share the (.+?) /|use the same (.+?) \d+$)")


def build_tree(root: str) -> list[str]:
    """Real directories r0-r2 (each with a/ and b/), symlinks l0 -> r0 and l1 -> r1/a, and m0, a
    bind mount of r2. Returns the names a path may start with."""
    for real in ("r0", "r1", "r2"):
        for sub in ("a", "b"):
            os.makedirs(os.path.join(root, real, sub))
    os.symlink(os.path.join(root, "r0"), os.path.join(root, "l0"))
    os.symlink(os.path.join(root, "r1", "a"), os.path.join(root, "l1"))
    os.makedirs(os.path.join(root, "m0"))
    subprocess.run(["mount", "--bind", os.path.join(root, "r2"), os.path.join(root, "m0")], check=True)
    return ["r0", "r1", "r2", "l0", "l1", "m0"]


def spell(rng: random.Random, root: str, starts: list[str]) -> str:
    """A path to one of the tree's directories (or below it), spelled the way a hand-written
    config might: through a symlink or the bind mount, with '..', '.', a trailing slash."""
    parts = [root, rng.choice(starts)]
    for _ in range(rng.randint(0, 2)):
        if rng.random() < 0.25:
            parts += [rng.choice(["a", "b", "zz"]), ".."]  # into a directory (or a missing one) and back
        if rng.random() < 0.15:
            parts.append(".")
        parts.append(rng.choice(["a", "b", "new", "psql"]))
    path = os.path.join(*parts)
    return path + "/" if rng.random() < 0.2 else path


def engine(rng: random.Random, root: str, starts: list[str]) -> dict:
    paths = {key: spell(rng, root, starts) for key, _ in KEYS}
    ports = {key: rng.choice(pool) for key, _, pool in PORTS}
    return dict(paths=paths, ports=ports)


def verdict(engines: dict) -> set:
    """The preflight's answer: {(frozenset of two engines, what they share)}."""
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        mounts = tractor_info.parse_mountinfo(handle.read())
    hostvars = {}
    for name, spec in engines.items():
        info = dict(paths={key: tractor_info.describe_path(path, mounts) for key, path in spec["paths"].items()},
                    config=dict(spec["ports"]), machine=dict(id="machine-1", hostname="render01"))
        hostvars[name] = dict(preflight_info=info, ansible_host="render01", tractor_service_manager="direct")
    found = set()
    for me in engines:
        for problem in filters.tractor_collisions(hostvars, list(engines), me):
            match = PROBLEM_RE.match(problem)
            assert match, problem
            found.add((frozenset(match.group(1, 2)), match.group(3) or match.group(4)))
    return found


def reference(engines: dict) -> set:
    """The kernel's answer: create every directory, then compare device and inode."""
    inode = {}
    for name, spec in engines.items():
        for key, path in spec["paths"].items():
            os.makedirs(path, exist_ok=True)
            st = os.stat(path)
            inode[name, key] = (st.st_dev, st.st_ino)
    expected = set()
    for a, b in itertools.combinations(engines, 2):
        for key, label in KEYS:
            if inode[a, key] == inode[b, key]:
                expected.add((frozenset((a, b)), label))
        for key, label, _ in PORTS:
            if engines[a]["ports"][key] == engines[b]["ports"][key]:
                expected.add((frozenset((a, b)), label))
    return expected


def test_collision_verdict_equals_the_kernels_answer():
    assert SITES >= 200 or "TRACTOR_PROPERTY_SITES" in os.environ
    rng = random.Random(SEED)
    shared_dirs = through_other_names = 0
    for number in range(SITES):
        root = tempfile.mkdtemp(prefix=f"site{number}-", dir="/var/tmp")
        try:
            starts = build_tree(root)
            engines = {f"e{i}": engine(rng, root, starts) for i in range(rng.randint(2, 4))}
            before = verdict(engines)
            after = reference(engines)
            assert before == after, (SEED, number, engines, sorted(before - after), sorted(after - before))
            for pair, label in after:
                if label in dict(KEYS).values():
                    shared_dirs += 1
                    a, b = sorted(pair)
                    key = {v: k for k, v in KEYS}[label]
                    if os.path.realpath(engines[a]["paths"][key]) != os.path.realpath(engines[b]["paths"][key]):
                        through_other_names += 1
        finally:
            subprocess.run(["umount", os.path.join(root, "m0")], check=False)
            shutil.rmtree(root)
    # the generator really produced the hard cases: shared directories, some of them only the same
    # through the bind mount (different realpath strings)
    assert shared_dirs >= SITES // 4 and through_other_names >= SITES // 20, (shared_dirs, through_other_names)
