"""Entry point of the thin launchers in <install>/bin (fact sheet §7.1).

Each launcher is a shell script pinned to one Tractor version; it runs
``python3 -m tractor_emulator.launch --tractor-version V --install-root ROOT TOOL ARGS...`` with
``<install>/lib/python`` on PYTHONPATH, so an install is self-contained (stdlib only) and runs
for any account that can read it, e.g. the EngineOwner.
"""

from __future__ import annotations

import importlib
import sys

# tool name -> module exposing main(version, install_root, argv) -> int
TOOLS = {
    "tractor-dbctl": "tractor_emulator.dbctl",
    "tractor-engine": "tractor_emulator.engine",
    "tractor-blade": "tractor_emulator.blade",
    "tractor-spool": "tractor_emulator.spool",
    "tq": "tractor_emulator.tq",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 5 or argv[0] != "--tractor-version" or argv[2] != "--install-root":
        sys.stderr.write("usage: launch --tractor-version V --install-root DIR TOOL [ARGS...]\n")
        return 2
    version, install_root, tool, rest = argv[1], argv[3], argv[4], argv[5:]
    module_name = TOOLS.get(tool)
    if module_name is None:
        sys.stderr.write(f"unknown Tractor tool {tool!r}\n")
        return 2
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        sys.stderr.write(f"{tool}: not emulated yet by this tractor_emulator release\n")
        return 2
    return int(module.main(version, install_root, rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
