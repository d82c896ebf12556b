"""The native backup's code path without Ansible: tractor_targz.write_archive() to a file.

    python3 bench/native_backup.py SRC_DIR ARCHIVE [WORKERS] [LEVEL]

Run with the interpreter the modules run with on the engine host; WORKERS defaults to what the
tractor_db module uses (the CPU count, at most 8), LEVEL to the module's 6 (gzip's default, as
`tar cfz` uses).  Prints the write_archive() result as JSON.
"""

import json
import os
import sys

# BENCH_COLLECTIONS: another ansible_collections/ parent (bench/run.py's before/after comparison)
sys.path.insert(0, os.environ.get("BENCH_COLLECTIONS")
                or os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, ".collections"))

from ansible_collections.renderfarm.tractor.plugins.module_utils import tractor_targz  # noqa: E402


def main():
    src, archive = sys.argv[1], sys.argv[2]
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else min(8, os.cpu_count() or 1)
    level = int(sys.argv[4]) if len(sys.argv) > 4 else 6
    with open(archive, "wb") as out:
        result = tractor_targz.write_archive(src, out, level=level, workers=workers)
    result.pop("skipped", None)
    print(json.dumps(dict(result, workers=workers, level=level)))


if __name__ == "__main__":
    main()
