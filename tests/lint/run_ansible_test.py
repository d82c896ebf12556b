"""Run ``ansible-test sanity`` or ``ansible-test units`` on this checkout, offline but for PyPI.

  python tests/lint/run_ansible_test.py sanity [--exclude PATH ...]
  python tests/lint/run_ansible_test.py units

Run it with the Python of the venv whose ansible-core is under test (``make lint`` runs it with
.venv, ansible-core 2.21 on Python 3.12, and .venv-2.19, ansible-core 2.19 on Python 3.11); that
Python is the one ansible-test tests with (``--python X.Y``, no ``--venv``/``--docker``).

Why not simply ``cd .collections/ansible_collections/renderfarm/tractor && ansible-test ...``:
ansible-test needs the collection to *be* at ``.../ansible_collections/<namespace>/<name>/``, and
that path is only a symlink to this checkout. ansible-test reads the physical working directory
(this checkout, with no ``ansible_collections`` above it) and refuses; ``ANSIBLE_TEST_CONTENT_ROOT``
gets sanity past that, but ``ansible-test units`` still fails, because pytest resolves the test
files to their physical paths, outside the collection tree ansible-test put on its path. So this
copies the files ansible-test would test -- those git knows, tracked or not ignored, as its git
source provider lists them -- into ``ansible_collections/renderfarm/tractor`` under a temporary
directory (outside the checkout, so that no ``.git`` above it changes what ansible-test sees), runs
ansible-test there and removes the copy. Paths in the output are relative to the collection root,
so they are this checkout's paths.

Sanity: ansible-test runs each sanity test in a virtualenv of its own, with its own exact pins
(ansible_test/_data/requirements/sanity.*.txt), installed from PyPI; pip_bootstrap.py supplies the
pip bootstrap it would download from ci-files.testing.ansible.com, which is unreachable here.
Every sanity test runs: no --skip-test, and tests/sanity/ignore-<version>.txt must be empty.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pip_bootstrap  # beside this file

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE, NAME = "renderfarm", "tractor"


def git_files() -> list[str]:
    """The files ansible-test's git source provider would test: tracked or untracked-not-ignored, not deleted."""
    def names(*args: str) -> set[str]:
        out = subprocess.run(["git", "ls-files", "-z"] + list(args), cwd=ROOT, capture_output=True, check=True).stdout
        return {name for name in out.decode("utf-8").split("\0") if name}

    return sorted(names("--cached", "--others", "--exclude-standard") - names("--deleted"))


def stage(dest: Path) -> None:
    for name in git_files():
        source = ROOT / name
        if not os.path.lexists(source):
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            os.symlink(os.readlink(source), target)
        else:
            shutil.copy2(source, target)


def check_ignore_files() -> list[str]:
    problems = []
    for path in sorted((ROOT / "tests" / "sanity").glob("ignore-*.txt")):
        if path.read_text(encoding="utf-8").strip():
            problems.append("%s is not empty: fix the findings instead of ignoring them" % path.relative_to(ROOT))
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("command", choices=("sanity", "units"))
    parser.add_argument("--exclude", action="append", default=[], help="sanity: a path to leave out (repeatable)")
    args = parser.parse_args()

    python = "%d.%d" % sys.version_info[:2]
    tool = Path(sys.executable).parent / "ansible-test"
    argv = [str(tool), args.command, "--python", python, "--color", "no"]
    if args.command == "sanity":
        problems = check_ignore_files()
        if problems:
            print("\n".join(problems))
            return 1
        pip_bootstrap.main()

    with tempfile.TemporaryDirectory(prefix="renderfarm-tractor-ansible-test-") as tmp:
        content = Path(tmp) / "ansible_collections" / NAMESPACE / NAME
        stage(content)
        # ansible-test refuses to exclude a path it does not know (an empty or git-ignored one)
        argv += [arg for path in args.exclude if os.path.lexists(content / path) for arg in ("--exclude", path)]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "PYTHONPATH"))}
        print("ansible-test %s on Python %s (%s), in a copy of the checkout at %s"
              % (args.command, python, tool.parent.parent.name, content), flush=True)
        print("$ " + " ".join(argv), flush=True)
        return subprocess.run(argv, cwd=content, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
