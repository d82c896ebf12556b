"""Unit tests import the collection as ``ansible_collections.renderfarm.tractor``.

``make venv`` links ``.collections/ansible_collections/renderfarm/tractor`` to this checkout (the
path ansible.cfg uses), so putting ``.collections`` on sys.path makes that import resolve to the
working tree, without ansible's collection loader.
"""

from __future__ import annotations

import sys
from pathlib import Path

COLLECTIONS = Path(__file__).resolve().parents[2] / ".collections"

if not (COLLECTIONS / "ansible_collections" / "renderfarm" / "tractor").exists():
    raise RuntimeError(f"{COLLECTIONS}/ansible_collections/renderfarm/tractor is missing: run `make venv`")
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
