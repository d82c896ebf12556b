"""The collection's own layout: metadata, ansible's view of it, and what its tarball ships.

Runs the ansible-galaxy of the venv pytest runs in (``make venv`` puts both in .venv), from the
repository root, so ansible.cfg there decides where collections are found -- as for a developer.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE, NAME, VERSION = "renderfarm", "tractor", "1.0.0"

# Development-only paths that must never reach the tarball.
NOT_SHIPPED = ("tests", "emulator", "bench", ".ci", "molecule", "Makefile", "constraints.txt",
               "requirements-dev.txt", "requirements-importer.txt", "pytest.ini", "ansible.cfg", ".venv",
               ".venv-2.19", ".collections", ".gitignore", ".ansible-lint", "changelogs/.plugin-cache.yaml")
# What a built collection may contain at its top level.
SHIPPABLE_TOP = {"MANIFEST.json", "FILES.json", "README.md", "meta", "changelogs", "plugins",
                 "roles", "playbooks", "docs", "CHANGELOG.rst", "CHANGELOG.md", "LICENSES",
                 "COPYING"}


def galaxy() -> dict:
    return yaml.safe_load((ROOT / "galaxy.yml").read_text(encoding="utf-8"))


def ansible_tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} not found next to {sys.executable}; run the tests with .venv/bin/pytest "
                    "(`make venv` installs it)")
    return str(path)


def run_ansible(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    # No ANSIBLE_* from the caller's environment: the repository's ansible.cfg alone decides.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.setdefault("LANG", "C.UTF-8")
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


# --- galaxy.yml ---------------------------------------------------------------------------------

def test_galaxy_identity():
    meta = galaxy()
    assert (meta["namespace"], meta["name"], meta["version"]) == (NAMESPACE, NAME, VERSION)
    assert re.fullmatch(r"\d+\.\d+\.\d+", meta["version"])


def test_galaxy_license_is_spdx_list_without_license_file():
    meta = galaxy()
    assert meta["license"] == ["GPL-3.0-or-later"]
    assert "license_file" not in meta


def test_galaxy_descriptive_fields():
    meta = galaxy()
    assert meta["readme"] == "README.md" and (ROOT / meta["readme"]).is_file()
    assert meta["authors"] and all(isinstance(a, str) and a.strip() for a in meta["authors"])
    assert isinstance(meta["description"], str) and meta["description"].strip()
    for key in ("repository", "documentation", "issues"):
        assert meta[key].startswith("https://"), key


def test_galaxy_tags():
    tags = galaxy()["tags"]
    assert {"tools", "infrastructure", "database", "tractor", "renderfarm"} <= set(tags)
    # Galaxy accepts at most 20 tags of lowercase letters and digits.
    assert len(tags) <= 20
    assert all(re.fullmatch(r"[a-z0-9]+", tag) for tag in tags), tags


def test_build_ignore_lists_development_paths():
    ignore = set(galaxy()["build_ignore"])
    for pattern in ("tests", "emulator", "bench", ".ci", "molecule", "Makefile", "constraints.txt",
                    ".venv*", ".collections", "*.tar.gz", ".gitignore",
                    "changelogs/.plugin-cache.yaml"):
        assert pattern in ignore, pattern


# --- meta/runtime.yml and changelogs ------------------------------------------------------------

def test_runtime_requires_ansible():
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text(encoding="utf-8"))
    assert runtime["requires_ansible"] == ">=2.19.0"


def test_changelog_skeleton():
    config = yaml.safe_load((ROOT / "changelogs" / "config.yaml").read_text(encoding="utf-8"))
    assert config["notesdir"] == "fragments"
    assert config["changes_file"] == "changelog.yaml"
    # `make changelog` (antsibull-changelog release) folds the fragments into the release of
    # galaxy.yml's version and writes CHANGELOG.rst; `make lint` checks both in depth.
    changes = yaml.safe_load((ROOT / "changelogs" / "changelog.yaml").read_text(encoding="utf-8"))
    assert changes["ancestor"] is None
    assert VERSION in changes["releases"], sorted(changes["releases"])
    assert changes["releases"][VERSION]["changes"].get("release_summary")
    assert (ROOT / "CHANGELOG.rst").is_file()
    assert (ROOT / "changelogs" / "fragments").is_dir()
    sections = {name for name, _title in config["sections"]}
    sections |= {config["prelude_section_name"], config["trivial_section_name"]}
    # Fragments not released yet (there may be none).
    fragments = sorted((ROOT / "changelogs" / "fragments").glob("*.y*ml"))
    for fragment in fragments:
        body = yaml.safe_load(fragment.read_text(encoding="utf-8"))
        assert isinstance(body, dict) and body, fragment.name
        assert set(body) <= sections, (fragment.name, set(body) - sections)


# --- ansible's view of the working tree ---------------------------------------------------------

def test_collections_link_points_at_repository_root():
    link = ROOT / ".collections" / "ansible_collections" / NAMESPACE / NAME
    assert link.is_symlink(), f"{link} missing: run `make venv`"
    assert os.readlink(link) == "../../.."
    assert link.resolve() == ROOT


def test_ansible_galaxy_lists_the_collection_from_repo_root():
    result = run_ansible(ansible_tool("ansible-galaxy"), "collection", "list",
                         f"{NAMESPACE}.{NAME}", "--format", "json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    expected = str(ROOT / ".collections" / "ansible_collections")
    assert listing == {expected: {f"{NAMESPACE}.{NAME}": {"version": VERSION}}}


# --- the built tarball --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tarball_names(tmp_path_factory) -> list[str]:
    out = tmp_path_factory.mktemp("build")
    result = run_ansible(ansible_tool("ansible-galaxy"), "collection", "build",
                         "--output-path", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    path = out / f"{NAMESPACE}-{NAME}-{VERSION}.tar.gz"
    assert path.is_file(), sorted(os.listdir(out))
    with tarfile.open(path) as tar:
        return tar.getnames()


def test_tarball_has_metadata_and_readme(tarball_names):
    for name in ("MANIFEST.json", "FILES.json", "README.md", "meta/runtime.yml"):
        assert name in tarball_names


@pytest.mark.parametrize("path", NOT_SHIPPED)
def test_tarball_leaves_out_development_paths(tarball_names, path):
    offenders = [n for n in tarball_names if n == path or n.startswith(path + "/")]
    assert not offenders, offenders


def test_tarball_has_only_collection_content(tarball_names):
    top = {name.split("/", 1)[0] for name in tarball_names}
    assert top <= SHIPPABLE_TOP, sorted(top - SHIPPABLE_TOP)
    assert not [n for n in tarball_names if n.endswith((".tar.gz", ".pyc"))]
