"""The collection as its users meet it: changelog, Galaxy import, execution environment.

  python tests/lint/collection_checks.py changelog -- RELEASE-COMMAND
                                                     antsibull-changelog lint; CHANGELOG.rst is
                                                     what changelog.yaml generates; RELEASE-COMMAND
                                                     (`make changelog`'s) works on a copy, and
                                                     what it would add is shown
  python tests/lint/collection_checks.py galaxy      build the tarball, check it is lean, import it
                                                     with galaxy-importer (no warning, no error)
  python tests/lint/collection_checks.py ee          install the built tarball; ansible-builder
                                                     introspect finds meta/ee-*.txt, and
                                                     ansible-builder create accepts
                                                     meta/execution-environment.yml

Run with .venv's Python from anywhere (``make lint`` does). Everything that is built goes to a
temporary directory; nothing in the checkout changes. No network: galaxy-importer runs with
tests/lint/galaxy-importer.cfg (no container, offline ansible-lint), and ansible-builder create
only writes a build context.
"""

from __future__ import annotations

import argparse
import difflib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import yaml

import run_ansible_test  # beside this file: the copy of the checkout that ansible-test gets

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
IMPORTER_DIR = ROOT / ".cache" / "galaxy-importer"  # `make lint` installs galaxy-importer here
IMPORTER_CONFIG = ROOT / "tests" / "lint" / "galaxy-importer.cfg"
# What a built collection may hold at its top level; everything else is for development only.
SHIPPABLE_TOP = {"MANIFEST.json", "FILES.json", "README.md", "CHANGELOG.rst", "COPYING", "meta", "changelogs",
                 "plugins", "roles", "playbooks", "docs"}


def env(**extra: str) -> dict[str, str]:
    """The caller's environment without ANSIBLE_* (the repository's ansible.cfg decides), venv first on PATH."""
    result = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    result["PATH"] = "%s:%s" % (BIN, result.get("PATH", os.defpath))
    result.update(extra)
    return result


def run(argv: list[str], cwd: Path = ROOT, **extra: str) -> subprocess.CompletedProcess:
    print("$ " + " ".join(str(a) for a in argv), flush=True)
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env(**extra), capture_output=True, text=True,
                          check=False)


def must(result: subprocess.CompletedProcess, what: str) -> str:
    if result.returncode != 0:
        sys.stdout.write(result.stdout + result.stderr)
        raise SystemExit("%s failed (rc=%d)" % (what, result.returncode))
    return result.stdout


def build(out: Path) -> Path:
    meta = yaml.safe_load((ROOT / "galaxy.yml").read_text(encoding="utf-8"))
    must(run([BIN / "ansible-galaxy", "collection", "build", "--output-path", out]), "ansible-galaxy collection build")
    tarball = out / ("%s-%s-%s.tar.gz" % (meta["namespace"], meta["name"], meta["version"]))
    if not tarball.is_file():
        raise SystemExit("ansible-galaxy collection build wrote no %s" % tarball.name)
    return tarball


# --- changelog ------------------------------------------------------------------------------------

def released_fragments(changes: dict) -> set[str]:
    return {name for release in (changes.get("releases") or {}).values() for name in release.get("fragments", [])}


def check_changelog(release: list[str]) -> int:
    """The fragments and changelog.yaml lint clean, CHANGELOG.rst is what changelog.yaml generates,
    and `make changelog` would work. Fragments not yet in a release are fine (they are listed):
    merging a branch's fragment must not break `make lint`; `make changelog` folds them in before
    a release is tagged (README, "Release notes")."""
    must(run([BIN / "antsibull-changelog", "lint"]), "antsibull-changelog lint (fragments and configuration)")
    must(run([BIN / "antsibull-changelog", "lint-changelog-yaml", "changelogs/changelog.yaml"]),
         "antsibull-changelog lint-changelog-yaml")
    if not release:
        raise SystemExit("collection_checks.py changelog: give the release command after --")
    changes = yaml.safe_load((ROOT / "changelogs" / "changelog.yaml").read_text(encoding="utf-8"))
    fragments = sorted(p.name for p in (ROOT / "changelogs" / "fragments").iterdir()
                       if p.suffix in (".yml", ".yaml"))
    pending = [name for name in fragments if name not in released_fragments(changes)]
    with tempfile.TemporaryDirectory(prefix="renderfarm-tractor-changelog-") as tmp:
        # antsibull-changelog asks ansible-doc for the collection's plugins: a copy inside an
        # ansible_collections tree, as the checkout would be installed.
        copy = Path(tmp) / "ansible_collections" / "renderfarm" / "tractor"
        run_ansible_test.stage(copy)
        # 1. CHANGELOG.rst is generated from changelog.yaml, not edited by hand.
        must(run([BIN / "antsibull-changelog", "generate"], cwd=copy), "antsibull-changelog generate")
        current = (ROOT / "CHANGELOG.rst").read_text(encoding="utf-8") if (ROOT / "CHANGELOG.rst").is_file() else ""
        generated = (copy / "CHANGELOG.rst").read_text(encoding="utf-8")
        if current != generated:
            sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), generated.splitlines(True),
                                                       "CHANGELOG.rst", "CHANGELOG.rst (generated)", n=1))
            print("CHANGELOG.rst differs from what changelogs/changelog.yaml generates: run `make changelog` "
                  "(or `antsibull-changelog generate`) and commit the result; do not edit CHANGELOG.rst by hand")
            return 1
        # 2. `make changelog` works with the fragments as they are now; show what it would change.
        must(run([BIN / release[0]] + release[1:], cwd=copy), " ".join(release))
        after = (copy / "CHANGELOG.rst").read_text(encoding="utf-8")
    if pending or after != current:
        print("not yet in CHANGELOG.rst (`make changelog` adds them before a release): %s"
              % (", ".join(pending) or "edits of released fragments"))
        sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), after.splitlines(True), "CHANGELOG.rst",
                                                   "CHANGELOG.rst (after make changelog)", n=0))
    print("changelog clean: %d fragment(s), %d not yet released; CHANGELOG.rst generated from changelog.yaml"
          % (len(fragments), len(pending)))
    return 0


# --- galaxy -------------------------------------------------------------------------------------

def check_galaxy() -> int:
    if not (IMPORTER_DIR / "galaxy_importer").is_dir():
        raise SystemExit("galaxy-importer is not installed in %s: run `make lint`" % IMPORTER_DIR)
    with tempfile.TemporaryDirectory(prefix="renderfarm-tractor-galaxy-") as tmp:
        work = Path(tmp)
        tarball = build(work)
        with tarfile.open(tarball) as tar:
            names = tar.getnames()
        extra = sorted({n.split("/", 1)[0] for n in names} - SHIPPABLE_TOP)
        if extra:
            print("the tarball ships development files: %s (add them to galaxy.yml build_ignore)" % ", ".join(extra))
            return 1
        top = ", ".join(sorted({n.split("/", 1)[0] for n in names}))
        print("%s: %d files, %d bytes, top level: %s" % (tarball.name, len(names), tarball.stat().st_size, top))
        # galaxy-importer writes importer_result.json into its working directory: the temporary one.
        result = run([sys.executable, "-m", "galaxy_importer.main", tarball], cwd=work,
                     PYTHONPATH=str(IMPORTER_DIR), GALAXY_IMPORTER_CONFIG=str(IMPORTER_CONFIG))
        output = result.stdout + result.stderr
        sys.stdout.write(output)
        complaints = [line for line in output.splitlines() if line.startswith(("WARNING", "ERROR", "CRITICAL"))]
        if result.returncode != 0 or complaints or "Importer processing completed successfully" not in output:
            print("galaxy-importer: the import %s" % ("failed" if result.returncode else "was not clean"))
            return 1
    return 0


# --- execution environment --------------------------------------------------------------------------

def check_ee() -> int:
    with tempfile.TemporaryDirectory(prefix="renderfarm-tractor-ee-") as tmp:
        work = Path(tmp)
        tarball = build(work)
        collections = work / "collections"
        must(run([BIN / "ansible-galaxy", "collection", "install", "--offline", "-p", collections, tarball], cwd=work),
             "ansible-galaxy collection install of the tarball")
        installed = collections / "ansible_collections" / "renderfarm" / "tractor"
        # Reader 1: an execution environment that installs the collection gets its packages.
        introspected = must(run([BIN / "ansible-builder", "introspect", "--sanitize", collections], cwd=work),
                            "ansible-builder introspect")
        print(introspected)
        wanted_system = [line.split("#", 1)[0].strip()
                         for line in (installed / "meta" / "ee-bindep.txt").read_text(encoding="utf-8").splitlines()]
        missing = [line for line in wanted_system if line and line not in introspected]
        if missing:
            print("ansible-builder introspect did not find: %s" % ", ".join(missing))
            return 1
        # Reader 2: the definition itself, with paths relative to the collection root.
        (installed / "execution-environment.yml").symlink_to(Path("meta") / "execution-environment.yml")
        context = work / "context"
        must(run([BIN / "ansible-builder", "create", "--file", installed / "execution-environment.yml",
                  "--context", context, "--output-filename", "Containerfile", "-v3"], cwd=work),
             "ansible-builder create")
        for name in ("Containerfile", "_build/requirements.yml", "_build/requirements.txt", "_build/bindep.txt"):
            if not (context / name).is_file():
                print("ansible-builder create wrote no %s" % name)
                return 1
        print("ansible-builder create: build context with %s" % ", ".join(
            sorted(str(p.relative_to(context)) for p in context.rglob("*") if p.is_file())))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("check", choices=("changelog", "galaxy", "ee"))
    parser.add_argument("release", nargs="*", help="changelog: the release command of `make changelog`")
    args = parser.parse_args()
    if args.check == "changelog":
        return check_changelog(args.release)
    return {"galaxy": check_galaxy, "ee": check_ee}[args.check]()


if __name__ == "__main__":
    sys.exit(main())
