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
    "schema-upgrade-slow": "tractor-dbctl: each upgrade step takes SECONDS longer (=SECONDS, default 2)",
    "pg-start-fails": "tractor-dbctl: PostgreSQL refuses to start",
    "backup-tar-fails": "tractor-dbctl --backup: tar reports an error while writing (§1.5)",
    "engine-exit-after": "tractor-engine: exits (as if crashed) SECONDS after start (=SECONDS)",
    "engine-hangs-on-sigterm": "tractor-engine: ignores SIGTERM (only SIGKILL stops it)",
    "engine-unhealthy": "tractor-engine: starts and listens, but ctrl?q=status answers HTTP 503",
    "blade-loses-engine": "tractor-blade: after its first dispatch, cannot reach the engine for SECONDS (=SECONDS)",
}


def active(config_dir: str | None) -> dict[str, str | None]:
    """Active faults as {name: value-or-None}; entries look like ``name`` or ``name=value``."""
    entries = [n for n in os.environ.get("TRACTOR_EMULATOR_FAULTS", "").split(",")]
    if config_dir:
        path = os.path.join(config_dir, FAULT_FILE)
        try:
            with open(path, encoding="utf-8") as handle:
                entries.extend(line.split("#", 1)[0] for line in handle)
        except OSError:
            pass
    found: dict[str, str | None] = {}
    for entry in entries:
        entry = entry.strip()
        if entry:
            name, sep, value = entry.partition("=")
            found[name.strip()] = value.strip() if sep else None
    return found


def _check(name: str) -> None:
    if name not in KNOWN:
        raise KeyError(f"unknown emulator fault {name!r}")


def on(name: str, config_dir: str | None) -> bool:
    _check(name)
    return name in active(config_dir)


def value(name: str, config_dir: str | None, default: str | None = None) -> str | None:
    """The fault's value when it is on (``default`` if it has none); None when it is off."""
    _check(name)
    found = active(config_dir)
    if name not in found:
        return None
    return found[name] if found[name] is not None else default
