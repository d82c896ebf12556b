"""pytest configuration of the testinfra verifiers of every Molecule scenario.

pytest loads this file for any test below molecule/ (the repository's pytest.ini makes the
repository root pytest's rootdir). Helpers live in tractor_checks.py, beside this file.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tractor_checks import Engine  # noqa: E402


@pytest.fixture
def engine(host):
    """The engine of the host under test, at the stock port (127.0.0.1:80)."""
    return Engine(host)
