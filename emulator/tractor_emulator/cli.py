"""``tractor-emulator``: install, package and demonstrate the emulated Tractor.

Subcommands:

* ``install --version V --prefix DIR`` -- write ``DIR/Tractor-V`` (§7.1) and print its path;
* ``dist --version V --out DIR`` -- write the tarball and the .deb (dist.py) and print their paths;
* ``versions`` -- the versions the emulator knows, with build and schema-version (§0, §4.3);
* ``demo`` -- a backup / upgrade / refused downgrade / restore round trip with the emulated
  ``tractor-dbctl`` of 2.1 and 2.2, following the upgrade and downgrade procedure of §8 and the
  backup/restore semantics of §1.5.  It runs every tool as EngineOwner (§1.3: dbctl refuses any
  other user, and PostgreSQL refuses root), so as root it uses the account ``tractor``.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from . import __version__, versions

DEMO_OWNER = "tractor"  # the doc example EngineOwner (§2.2)


# ---------------------------------------------------------------------------------------------
# install / dist / versions
# ---------------------------------------------------------------------------------------------

def cmd_install(args: argparse.Namespace) -> int:
    from . import install
    print(install.install(args.version, args.prefix))
    return 0


def cmd_dist(args: argparse.Namespace) -> int:
    from . import dist
    result = dist.dist(args.version, args.out)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(result["tarball"])
        print(result["deb"])
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    rows = [("VERSION", "BUILD", "SCHEMA-VERSION", "RPM-STEM")]
    rows += [(v.version, v.build, v.schema_version, v.rpm_stem)
             for v in (versions.VERSIONS[name] for name in versions.ORDER)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


# ---------------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------------

class Step:
    """One tool run of the demo and what must come of it."""

    def __init__(self, title: str, version: str, args: list[str], *, refuse: bool = False,
                 stdout_re: str | None = None, stderr_re: str | None = None):
        self.title = title
        self.version = version
        self.args = args
        self.refuse = refuse          # True: must be refused, i.e. exit 2 (§1.6)
        self.stdout_re = stdout_re    # must match stdout (multiline)
        self.stderr_re = stderr_re    # must match stderr (multiline)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _demo_owner() -> pwd.struct_passwd:
    """EngineOwner of the demo site: ``tractor`` as root (created if missing), else oneself."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(DEMO_OWNER)
    except KeyError:
        print(f"# creating the unprivileged account {DEMO_OWNER!r} (EngineOwner, fact sheet 2.2)")
        subprocess.run(["useradd", "--system", "--create-home", "--shell", "/bin/sh", DEMO_OWNER],
                       check=True)
        return pwd.getpwnam(DEMO_OWNER)


class Demo:
    def __init__(self, parent: str, keep: bool, out=None):
        self.out = out or sys.stdout
        self.owner = _demo_owner()
        self.world = tempfile.mkdtemp(prefix="tractor-demo-", dir=parent)
        os.chmod(self.world, 0o755)  # every account must traverse it (the owner runs the tools)
        self.keep = keep
        self.prefix = os.path.join(self.world, "opt-pixar")
        self.site = os.path.join(self.world, "site")
        self.config_dir = os.path.join(self.site, "config")
        self.data_dir = os.path.join(self.site, "data")
        self.db_dir = os.path.join(self.data_dir, "psql")  # stock DBDataDir (§2.3)
        self.backup_dir = os.path.join(self.world, "backups")
        self.backup = os.path.join(self.backup_dir, "tractor-2.1-db.tgz")
        self.roots: dict[str, str] = {}

    # -- output -------------------------------------------------------------------------------
    def say(self, text: str = "") -> None:
        try:
            print(text, file=self.out, flush=True)
        except BrokenPipeError:
            # The reader went away (e.g. `| head`): carry on silently so that cleanup still
            # stops PostgreSQL and removes the world.
            self.out = open(os.devnull, "w", encoding="utf-8")

    # -- setup --------------------------------------------------------------------------------
    def setup(self) -> None:
        from . import install
        self.say(f"# world: {self.world}")
        self.say(f"# EngineOwner: {self.owner.pw_name} (uid {self.owner.pw_uid})")
        os.makedirs(self.prefix)
        for version in ("2.1", "2.2"):
            self.roots[version] = install.install(version, self.prefix)
            self.say(f"# installed Tractor {version} at {self.roots[version]}")
        os.makedirs(self.site)
        for path in (self.site, self.prefix):
            os.chmod(path, 0o755)
        # Site config dir and data dir, owned by EngineOwner (§3: the data dir must exist and be
        # writable by EngineOwner before the start).
        for path in (self.config_dir, self.data_dir, self.backup_dir):
            os.makedirs(path)
            os.chmod(path, 0o755)
            if os.geteuid() == 0:
                os.chown(path, self.owner.pw_uid, self.owner.pw_gid)
        db_port, engine_port = _free_port(), _free_port()
        # Sparse site files merged over the stock ones (§2.1); Python literals (§2.1).
        self._write_config("tractor.config", (
            "{\n"
            f'    "EngineOwner": "{self.owner.pw_name}",\n'
            f'    "TractorDataDirectory": "{self.data_dir}",\n'
            f'    "ListenerPort": {engine_port},\n'
            "}\n"))
        self._write_config("db.config", (
            "{\n"
            f'    "DBConnection": {{"host": "localhost", "port": {db_port}, "dbname": "tractor"}},\n'
            "}\n"))
        self.say(f"# site config dir {self.config_dir}: EngineOwner {self.owner.pw_name}, "
                 f"TractorDataDirectory {self.data_dir}, ListenerPort {engine_port}, "
                 f"PostgreSQL port {db_port}")
        self.say()

    def _write_config(self, name: str, text: str) -> None:
        path = os.path.join(self.config_dir, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(path, 0o644)

    # -- running tools as EngineOwner ----------------------------------------------------------
    def run_as_owner(self, argv: list[str], timeout: int = 180) -> subprocess.CompletedProcess:
        kwargs: dict = {}
        if os.geteuid() == 0:
            kwargs = {"user": self.owner.pw_uid, "group": self.owner.pw_gid, "extra_groups": []}
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": self.owner.pw_dir,
               "USER": self.owner.pw_name, "LOGNAME": self.owner.pw_name, "LANG": "C.UTF-8"}
        if "TRACTOR_EMULATOR_PYTHON" in os.environ:
            env["TRACTOR_EMULATOR_PYTHON"] = os.environ["TRACTOR_EMULATOR_PYTHON"]
        try:
            return subprocess.run(argv, capture_output=True, text=True, cwd=self.world, env=env,
                                  timeout=timeout, check=False, **kwargs)
        except subprocess.TimeoutExpired as exc:
            def text(data) -> str:
                return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")
            return subprocess.CompletedProcess(
                argv, 124, text(exc.stdout), text(exc.stderr) + f"\n(timed out after {timeout} s)")

    def dbctl(self, version: str, *args: str) -> list[str]:
        return [os.path.join(self.roots[version], "bin", "tractor-dbctl"),
                "--configdir", self.config_dir, *args]

    def show(self, result: subprocess.CompletedProcess) -> None:
        for stream, tag in ((result.stdout, "stdout"), (result.stderr, "stderr")):
            for line in stream.rstrip("\n").splitlines() if stream.strip() else []:
                self.say(f"    {tag} | {line}")
        self.say(f"    exit {result.returncode}")

    def check(self, step: Step, result: subprocess.CompletedProcess) -> str | None:
        """None if the step came out as it must, else why not."""
        if "Traceback (most recent call last)" in result.stderr:
            return "the tool crashed with a Python traceback"
        if step.refuse:
            if result.returncode != 2:
                return f"expected a refusal (exit 2, fact sheet 1.6), got exit {result.returncode}"
        elif result.returncode != 0:
            return f"expected success (exit 0), got exit {result.returncode}"
        if step.stdout_re and not re.search(step.stdout_re, result.stdout, re.M):
            return f"stdout does not match {step.stdout_re!r}"
        if step.stderr_re and not re.search(step.stderr_re, result.stderr, re.M):
            return f"stderr does not match {step.stderr_re!r}"
        return None

    def steps(self) -> list[Step]:
        b = self.backup
        return [
            Step("2.1: first start, as the 2.1 engine would (init, start, build)",
                 "2.1", ["--start-for-engine"]),
            Step("2.1: let job ids continue from 500 (fact sheet 1.4)",
                 "2.1", ["--set-job-counter", "500"],
                 stdout_re=r"The job counter will continue from 500\."),
            Step("2.1: show the stored parameters",
                 "2.1", ["--show-params"], stdout_re=r"^jidcounter\s*=\s*500\s*$"),
            Step("2.1: stop PostgreSQL before the backup (fact sheet 1.5)", "2.1", ["--stop"]),
            Step("2.1: back up the job database (a tarball of psql/)", "2.1", ["--backup", b]),
            Step("2.2: first start of the new version upgrades the schema (fact sheet 8)",
                 "2.2", ["--start-for-engine"], stderr_re=r"Upgrading database schema"),
            Step("2.2: the parameters after the upgrade",
                 "2.2", ["--show-params"], stdout_re=r"^jidcounter\s*=\s*500\s*$"),
            Step("2.2: stop PostgreSQL", "2.2", ["--stop"]),
            Step("2.1: start on the 2.2 schema -- must be refused", "2.1", ["--start-for-engine"],
                 refuse=True),
            # After the refusal: make sure PostgreSQL is down before --destroy (fact sheet 1.4).
            Step("2.1: downgrade step 4, destroy the upgraded database (fact sheet 8)",
                 "2.1", ["--destroy"]),
            Step("2.1: downgrade step 5, restore the 2.1 backup", "2.1", ["--restore", b]),
            Step("2.1: downgrade step 6, start for the 2.1 engine", "2.1", ["--start-for-engine"]),
            Step("2.1: downgrade step 7, job ids resume from the backup",
                 "2.1", ["--show-params"], stdout_re=r"^jidcounter\s*=\s*500\s*$"),
            Step("2.1: stop PostgreSQL", "2.1", ["--stop"]),
        ]

    def run(self) -> int:
        steps = self.steps()
        for number, step in enumerate(steps, 1):
            if step.args == ["--destroy"]:
                self._ensure_stopped(step.version)
            expect = "must be refused" if step.refuse else "must succeed"
            self.say(f"== step {number}/{len(steps)}: {step.title} [{expect}]")
            argv = self.dbctl(step.version, *step.args)
            self.say(f"  [as {self.owner.pw_name}] $ {shlex.join(argv)}")
            result = self.run_as_owner(argv)
            self.show(result)
            problem = self.check(step, result)
            if problem:
                self.say(f"  FAILED: {problem}")
                self.say()
                self.say(f"demo FAILED at step {number}/{len(steps)}: {step.title}")
                return 1
            self.say("  ok" + (" (refused as it must be)" if step.refuse else ""))
            self.say()
        self.say(f"demo passed: {len(steps)} steps")
        return 0

    def _ensure_stopped(self, version: str) -> None:
        """If a refused start left PostgreSQL running, stop it with --stop (shown)."""
        argv = self.dbctl(version, "--status")
        self.say("== check: is PostgreSQL still running after the refusal?")
        self.say(f"  [as {self.owner.pw_name}] $ {shlex.join(argv)}")
        result = self.run_as_owner(argv)
        self.show(result)
        if re.search(r"server is running on the data directory", result.stderr + result.stdout):
            argv = self.dbctl(version, "--stop")
            self.say(f"  [as {self.owner.pw_name}] $ {shlex.join(argv)}")
            self.show(self.run_as_owner(argv))
        self.say()

    # -- cleanup ------------------------------------------------------------------------------
    def cleanup(self) -> None:
        self._stop_postgres()
        if self.keep:
            self.say(f"# kept {self.world}")
        else:
            shutil.rmtree(self.world, ignore_errors=True)
            self.say(f"# removed {self.world}")

    def _stop_postgres(self) -> None:
        """Stop a PostgreSQL server still running on the demo's data dir (by its pid file)."""
        pid_file = os.path.join(self.db_dir, "postmaster.pid")
        try:
            with open(pid_file, encoding="utf-8") as handle:
                pid = int(handle.readline().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmdline = handle.read()
        except (OSError, ValueError):
            return
        if b"postgres" not in cmdline:
            return
        self.say(f"# stopping the PostgreSQL server still running (pid {pid})")
        for sig, wait in ((signal.SIGINT, 20), (signal.SIGQUIT, 10)):  # fast, then immediate
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not os.path.exists(f"/proc/{pid}"):
                    return
                time.sleep(0.2)


def cmd_demo(args: argparse.Namespace) -> int:
    demo = Demo(args.world_parent, args.keep)
    try:
        demo.setup()
        return demo.run()
    finally:
        demo.cleanup()


# ---------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tractor-emulator",
        description="The renderfarm.tractor stand-in for Pixar Tractor (not Pixar's product).")
    parser.add_argument("--emulator-version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    known = ", ".join(versions.ORDER)

    p = sub.add_parser("install", help="write PREFIX/Tractor-V and print its path")
    p.add_argument("--version", required=True, choices=versions.ORDER, help=f"one of {known}")
    p.add_argument("--prefix", required=True, help="where Tractor-V goes, e.g. /opt/pixar")
    p.set_defaults(func=cmd_install)

    p = sub.add_parser("dist", help="write the tarball and the .deb of a version")
    p.add_argument("--version", required=True, choices=versions.ORDER, help=f"one of {known}")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--json", action="store_true", help="print paths and sha256 sums as JSON")
    p.set_defaults(func=cmd_dist)

    p = sub.add_parser("versions", help="list the known versions")
    p.set_defaults(func=cmd_versions)

    p = sub.add_parser("demo", help="backup / upgrade / downgrade / restore round trip")
    p.add_argument("--world-parent", default="/var/tmp",
                   help="where the temporary world directory is made (default /var/tmp)")
    p.add_argument("--keep", action="store_true", help="keep the world directory afterwards")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"tractor-emulator: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
