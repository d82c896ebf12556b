"""tractor_install: an install's version comes from its directory name (fact sheet 7.1), not --version."""

from __future__ import annotations

import os

import pytest

from ansible_collections.renderfarm.tractor.plugins.module_utils import tractor_install as ti

REAL_24 = "Tractor 2.4 (Aug 17 2020 05:39:38 2091325 linux-ix86-64-gcc44icc150-release)"   # fact sheet 6.2
REAL_22 = "NOTICE Tractor 2.2 (Feb 15 2017 11:38:27 1715407 linux-ix86-64-gcc44icc150-release)"  # 6.5


@pytest.mark.parametrize("text, expected", [
    (REAL_24, ("2.4", "2091325")),
    (REAL_22, ("2.2", "1715407")),
    ("Tractor 2.4 (no build here)", ("2.4", None)),
    ("usage: tractor-engine [options]", (None, None)),
    ("", (None, None)),
])
def test_parse_banner(text, expected):
    assert ti.parse_banner(text) == expected


def test_version_of_install_dir(tmp_path):
    assert ti.version_of_install_dir("/opt/pixar/Tractor-2.4") == "2.4"
    assert ti.version_of_install_dir("/opt/pixar/Tractor-2.4/") == "2.4"
    assert ti.version_of_install_dir("/opt/pixar/Tractor-2.4.1") == "2.4.1"
    assert ti.version_of_install_dir("/opt/pixar/Tractor-2.4-old") is None
    assert ti.version_of_install_dir("/opt/pixar/tractor") is None
    real = tmp_path / "Tractor-2.2"
    real.mkdir()
    os.symlink(str(real), str(tmp_path / "current"))
    assert ti.version_of_install_dir(str(tmp_path / "current")) == "2.2"   # a link to the install


def test_install_version():
    assert ti.install_version("/opt/pixar/Tractor-2.4") == ("2.4", "from the install directory name")
    assert ti.install_version("/opt/pixar/Tractor-2.4", "2.4")[0] == "2.4"
    version, why = ti.install_version("/opt/pixar/Tractor-2.4", "2.2")
    assert version is None and why == "/opt/pixar/Tractor-2.4 is the install of Tractor 2.4, not of the requested version 2.2"
    assert ti.install_version("/srv/tractor", "2.2")[0] == "2.2"
    version, why = ti.install_version("/srv/tractor")
    assert version is None and "set the version option" in why


@pytest.mark.parametrize("rc, out, err, expected", [
    (0, REAL_24 + "\n", "", ("2091325", None)),
    (0, "", REAL_24, ("2091325", None)),              # on stderr
    (0, "tractor-engine 2.4\n", "", (None, None)),      # a text nobody knows: no build, no error
    (127, "", "python3: not found", (None, None)),
])
def test_banner_check_never_blocks(rc, out, err, expected):
    assert ti.banner_check("2.4", rc, out, err) == expected


def test_banner_check_warns_when_it_names_another_version():
    build, warning = ti.banner_check("2.2", 0, REAL_24, "")
    assert build is None and "names Tractor 2.4, but the install is 2.2" in warning
