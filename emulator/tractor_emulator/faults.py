"""Fault hooks: emulator-only switches that make a tool fail the way the real one can.

Off by default.  A fault is on when its name is listed in ``$TRACTOR_EMULATOR_FAULTS``
(comma-separated) or on a line of ``<configdir>/emulator-faults`` (``#`` starts a comment).  The
file form exists because an engine started by systemd does not inherit a test's environment.
Real Tractor has nothing like this (INVENTED, see emulator/README.md).
"""

from __future__ import annotations

import os

FAULT_FILE = "emulator-faults"

KNOWN = {
    "schema-upgrade-fails": "tractor-dbctl: the schema upgrade fails midway and is rolled back (§1.4)",
    "pg-start-fails": "tractor-dbctl: PostgreSQL refuses to start",
    "backup-tar-fails": "tractor-dbctl --backup: tar reports an error while writing (§1.5)",
}


def active(config_dir: str | None) -> set[str]:
    names = {n.strip() for n in os.environ.get("TRACTOR_EMULATOR_FAULTS", "").split(",") if n.strip()}
    if config_dir:
        path = os.path.join(config_dir, FAULT_FILE)
        try:
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    name = line.split("#", 1)[0].strip()
                    if name:
                        names.add(name)
        except OSError:
            pass
    return names


def on(name: str, config_dir: str | None) -> bool:
    if name not in KNOWN:
        raise KeyError(f"unknown emulator fault {name!r}")
    return name in active(config_dir)
