"""Unit tests import the collection as ``ansible_collections.renderfarm.tractor``.

``make venv`` links ``.collections/ansible_collections/renderfarm/tractor`` to this checkout (the
path ansible.cfg uses), so putting ``.collections`` on sys.path makes that import resolve to the
working tree, without ansible's collection loader.

Under ``ansible-test units`` (``make lint``) ansible's collection loader already provides the
collection (a copy of this checkout inside an ``ansible_collections`` tree), and nothing is added.
"""

from __future__ import annotations

import importlib.util

import pytest
import sys
from pathlib import Path

COLLECTIONS = Path(__file__).resolve().parents[2] / ".collections"


def _collection_importable() -> bool:
    try:
        return importlib.util.find_spec("ansible_collections.renderfarm.tractor") is not None
    except ImportError:  # no ansible_collections package at all
        return False


if not _collection_importable():
    if not (COLLECTIONS / "ansible_collections" / "renderfarm" / "tractor").exists():
        raise RuntimeError(f"{COLLECTIONS}/ansible_collections/renderfarm/tractor is missing: run `make venv`")
    if str(COLLECTIONS) not in sys.path:
        sys.path.insert(0, str(COLLECTIONS))


@pytest.fixture(autouse=True)
def _reset_module_warnings():
    """Module warnings and deprecations are process-global (and de-duplicated) in ansible-core;
    start every test clean so that no test depends on which tests ran before it."""
    from ansible.module_utils.common import warnings as module_warnings
    for name in ("_global_warnings", "_global_deprecations"):
        store = getattr(module_warnings, name, None)
        if store is not None:
            store.clear()
    yield
