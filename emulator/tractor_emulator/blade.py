"""The emulated ``tractor-blade``: asks the engine for commands and runs them (fact sheet §7.5).

A blade registers with its engine, then, every poll interval: delivers the output and exit status
of its commands, sends a heartbeat (which may tell it to kill invocations), and asks for more work
while it has free slots.  The exchange with the engine is the blade protocol of
``emulator/PROTOCOL.md``; that protocol is INVENTED in full (the real blade/engine exchange is not
public), the URL layout ``/Tractor/<verb>?q=...`` and the verbs ``btrack``/``task`` follow §6.1.

Behaviour taken from the fact sheet:

* engine address: ``--engine=HOST[:PORT]`` > ``$TRACTOR_ENGINE`` > ``tractor-engine``; port 80
  (§7.5, DOC-BLADE);
* command-line option names ``--engine``, ``-L``, ``--log``, ``--daemon``, ``--profile``,
  ``--slots``, ``--version`` (§7.5, DOC-BLADE), ``--pidfile`` as the engine has it (§7.2);
* "tasks running during an engine restart keep running and blades re-register with the new
  engine"; a new engine works with older blades (§7.5, DOC-UPG): an unreachable engine never stops
  a command; output and exit statuses are kept and delivered, log first then status, once an
  engine answers again -- whatever its version;
* output lands in the engine's ``cmd-logs/<owner>/J<jid>/T<tid>.log`` (§3); here the blade uploads
  it to the engine (``task?q=log``), which plays the cmdlogger.

INVENTED here (listed in emulator/README.md): ``--hname`` (a real blade is its host; tests run
several blades on one host), ``--poll``, the log line format, the ``TR_ENV_*`` variable set (real
blades export ``TR_ENV_JID`` and friends [I]), exit status 127/126 for a command that cannot be
started, the 5 s TERM->KILL grace, the retry back-off, and that ``-L`` is only reported on
registration: this blade serves no HTTP port (the real one answers ``/blade/status`` etc., §7.5).
Commands run as the blade's own user (a real blade running as root switches to the job owner).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from . import faults, versions

DEFAULT_ENGINE = "tractor-engine"      # the recommended DNS alias (§7.5)
DEFAULT_ENGINE_PORT = 80               # ListenerPort default (§7.4)
DEFAULT_BLADE_PORT = 9005              # tractor-blade -L default (§7.4)
DEFAULT_POLL = 0.5                     # INVENTED
HTTP_TIMEOUT = 5.0                     # INVENTED: "short" request timeout
KILL_GRACE = 5.0                       # INVENTED: SIGTERM, then SIGKILL after this many seconds
PIPE_GRACE = 5.0                       # INVENTED: after a command exits, wait this long for EOF
MAX_BACKOFF = 2.0                      # INVENTED: longest pause between attempts to reach the engine
LOG_CHUNK = 1 << 20                    # INVENTED: at most this many output bytes per task?q=log
SHUTDOWN_DELIVERY = 3.0                # INVENTED: seconds spent delivering results on SIGTERM
FAULT_LOSES_ENGINE = "blade-loses-engine"


class EngineUnreachable(Exception):
    """The engine did not answer (refused, timed out, reset, 5xx): retry later (§7.5)."""


class EngineRefused(Exception):
    """The engine answered but refused the request (rc != 0 or HTTP 4xx)."""


# -- command line ------------------------------------------------------------------------------

class _ParseError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # report through main() with our own exit status
        raise _ParseError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tractor-blade", add_help=False,
                     description="Tractor blade: runs commands dispatched by a tractor-engine "
                                 "(renderfarm.tractor emulator).")
    parser.add_argument("--engine", metavar="HOST[:PORT]",
                        help="engine to serve (else $TRACTOR_ENGINE, else tractor-engine:80)")
    parser.add_argument("--slots", type=int, default=1, metavar="N",
                        help="number of commands to run at once (default 1)")
    parser.add_argument("--hname", metavar="NAME",
                        help="name this blade registers under (default: the host name; emulator-only)")
    parser.add_argument("--profile", default="", metavar="NAME",
                        help="blade profile to report (default: 'default', the stock blade.config profile)")
    parser.add_argument("-L", "--port", type=int, default=DEFAULT_BLADE_PORT, metavar="BPORT",
                        help="blade port reported to the engine (default 9005; not served by the emulator)")
    parser.add_argument("--log", metavar="FILE", help="log file (default stderr)")
    parser.add_argument("--daemon", action="store_true", help="detach and run in the background")
    parser.add_argument("--pidfile", metavar="FILE", help="write the blade's process id to FILE")
    parser.add_argument("--poll", type=float, default=DEFAULT_POLL, metavar="SECS",
                        help="seconds between exchanges with the engine (default 0.5; emulator-only)")
    parser.add_argument("--version", action="store_true", help="print version information, and exit")
    parser.add_argument("-h", "--help", action="store_true", help="show this help, and exit")
    return parser


def parse_engine(value: str) -> tuple[str, int]:
    """HOST[:PORT] -> (host, port); port 80 when absent (§7.5)."""
    value = value.strip()
    if value.startswith("http://"):
        value = value[len("http://"):].rstrip("/")
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = value, ""
    if not host:
        raise ValueError(f"bad engine address {value!r}")
    if not port:
        return host, DEFAULT_ENGINE_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad engine port in {value!r}")
    return host, int(port)


# -- logging -------------------------------------------------------------------------------------

class Log:
    """Timestamped log lines (INVENTED format) to ``--log FILE`` or stderr; SIGHUP reopens the file
    (as the engine does for logrotate, §7.2/DOC-LOG)."""

    def __init__(self, path: str | None):
        self.path = path
        self.lock = threading.Lock()
        self.stream = None
        self.reopen()

    def reopen(self) -> None:
        with self.lock:
            if self.path:
                old = self.stream
                self.stream = open(self.path, "a", encoding="utf-8", buffering=1)
                if old is not None:
                    old.close()
            else:
                self.stream = sys.stderr

    def __call__(self, level: str, message: str) -> None:
        # Same INVENTED line format as the emulated engine's log: "11/28 12:39:04 NOTICE text".
        line = f"{time.strftime('%m/%d %H:%M:%S')} {level} {message}\n"
        with self.lock:
            try:
                self.stream.write(line)
                self.stream.flush()
            except (OSError, ValueError):
                pass


# -- commands ------------------------------------------------------------------------------------

class Invocation:
    """One dispatched command: its process, buffered output and delivery state."""

    def __init__(self, cmd: dict):
        self.jid = int(cmd["jid"])
        self.tid = int(cmd["tid"])
        self.cid = int(cmd.get("cid", 0))
        self.iid = int(cmd.get("iid", 0))
        self.owner = str(cmd.get("owner") or "")
        self.argv = [str(a) for a in cmd.get("argv") or []]
        self.title = str(cmd.get("title") or "")
        self.cwd = cmd.get("cwd") or ""
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()
        self.output = bytearray()          # not yet delivered
        self.finished = threading.Event()  # process exited and its output is collected
        self.rc: int | None = None
        self.kill_timer: threading.Timer | None = None
        self.kill_sent = False

    @property
    def key(self) -> dict:
        return {"jid": self.jid, "tid": self.tid, "cid": self.cid, "iid": self.iid}

    def __str__(self) -> str:
        return f"J{self.jid} T{self.tid} C{self.cid} I{self.iid}"

    def append(self, data: bytes) -> None:
        with self.lock:
            self.output += data

    def matches(self, spec: dict) -> bool:
        try:
            return all(int(spec[k]) == v for k, v in self.key.items() if k in spec)
        except (TypeError, ValueError):
            return False


def command_env(inv: Invocation) -> dict:
    """The blade's environment plus TR_ENV_* (names inferred [I]; TR_ENV_OWNER is INVENTED)."""
    env = dict(os.environ)
    env.update({
        "TR_ENV_JID": str(inv.jid),
        "TR_ENV_TID": str(inv.tid),
        "TR_ENV_CID": str(inv.cid),
        "TR_ENV_IID": str(inv.iid),
        "TR_ENV_OWNER": inv.owner,
    })
    return env


def _collect(inv: Invocation, fd: int, wake: threading.Event) -> None:
    """Reader thread: buffer merged stdout/stderr until EOF, then record the exit status."""
    exited_at = None
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                inv.append(data)
                continue
            if inv.proc.poll() is not None:
                # The command is gone; a background child may still hold the pipe open.  Stop
                # waiting for it after a grace period so the status is not held back forever.
                exited_at = exited_at or time.monotonic()
                if time.monotonic() - exited_at > PIPE_GRACE:
                    break
    finally:
        os.close(fd)
        inv.proc.wait()
        inv.rc = inv.proc.returncode  # negative signal number when killed by a signal
        if inv.kill_timer is not None:
            inv.kill_timer.cancel()
        inv.finished.set()
        wake.set()


# -- the blade -----------------------------------------------------------------------------------

class Blade:
    def __init__(self, version: str, opts: argparse.Namespace, log: Log):
        self.info = versions.get(version)
        self.opts = opts
        self.log = log
        self.name = opts.hname or socket.gethostname()
        self.host, self.port = parse_engine(opts.engine or os.environ.get("TRACTOR_ENGINE")
                                            or DEFAULT_ENGINE)
        self.base_url = f"http://{self.host}:{self.port}/Tractor/"
        self.slots = max(0, opts.slots)
        self.poll = max(0.05, opts.poll)
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.invocations: list[Invocation] = []   # in start order; removed once cstatus is delivered
        self.wake = threading.Event()
        self.stopping = False
        self.registered = False
        self.engine_server = None                  # Server header of the engine we registered with
        self.reachable = True
        self.backoff = 0.0
        self.next_attempt = 0.0
        self.lost_seconds = self._fault_seconds()
        self.lost_until = 0.0
        self.dispatched = 0

    # .. fault hook (emulator-only, INVENTED) ..................................................
    def _fault_seconds(self) -> float | None:
        """Seconds of ``blade-loses-engine=SECONDS`` (default 10) when that fault is on."""
        value = faults.value(FAULT_LOSES_ENGINE, None, default="10")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            return 10.0

    def _engine_lost_by_fault(self) -> bool:
        return time.monotonic() < self.lost_until

    # .. HTTP ..................................................................................
    def request(self, verb: str, params: dict, body: bytes | None = None,
                content_type: str = "application/octet-stream") -> dict:
        if self._engine_lost_by_fault():
            raise EngineUnreachable("engine lost (fault blade-loses-engine)")
        query = urllib.parse.urlencode({**params, "blade": self.name})
        headers = {
            "X-Tractor-Blade": "1",
            "User-Agent": f"Pixar-TractorBlade/{self.info.version}",
        }
        if body is not None:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.base_url + verb + "?" + query, data=body, headers=headers,
                                     method="POST" if body is not None else "GET")
        try:
            with self.opener.open(req, timeout=HTTP_TIMEOUT) as reply:
                server = reply.headers.get("Server")
                raw = reply.read()
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                raise EngineUnreachable(f"HTTP {exc.code}") from None
            raise EngineRefused(f"HTTP {exc.code} for {verb}?q={params.get('q')}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise EngineUnreachable(str(getattr(exc, "reason", exc))) from None
        try:
            answer = json.loads(raw.decode("utf-8") or "{}")
        except (UnicodeDecodeError, ValueError):
            raise EngineUnreachable(f"unreadable reply to {verb}?q={params.get('q')}") from None
        if not isinstance(answer, dict):
            raise EngineUnreachable(f"unexpected reply to {verb}?q={params.get('q')}")
        if server and self.registered and self.engine_server and server != self.engine_server:
            # Another engine (e.g. restarted as a newer version) answers: register with it (§7.5).
            self.log("NOTICE", f"engine changed to {server!r}; registering again")
            self.registered = False
        if answer.get("rc", 0) not in (0, "0"):
            raise EngineRefused(f"{verb}?q={params.get('q')}: rc={answer.get('rc')} {answer.get('msg', '')}")
        answer["_server"] = server
        return answer

    def _unreachable(self, exc: Exception) -> None:
        if self.reachable:
            self.log("WARNING", f"engine {self.host}:{self.port} unreachable ({exc}); commands keep "
                             "running, results are kept until it answers again")
        self.reachable = False
        self.registered = False  # whoever answers next may be a restarted engine (§7.5)
        self.backoff = min(MAX_BACKOFF, max(self.poll, self.backoff * 2))
        self.next_attempt = time.monotonic() + self.backoff

    def _reached(self) -> None:
        if not self.reachable:
            self.log("NOTICE", f"engine {self.host}:{self.port} answers again")
        self.reachable = True
        self.backoff = 0.0

    # .. protocol steps ..........................................................................
    def register(self) -> None:
        answer = self.request("btrack", {
            "q": "register", "port": self.opts.port, "slots": self.slots,
            "version": self.info.version, "profile": self.opts.profile or "default",
            "osname": platform.system(),
        })
        self._reached()
        self.registered = True
        self.engine_server = answer.get("_server")
        self.log("NOTICE", f"registered as {self.name!r} ({self.slots} slots) with "
                           f"{answer.get('engine') or answer.get('_server') or 'engine'} "
                           f"at {self.host}:{self.port}")

    def deliver(self) -> None:
        """Send buffered output, then the exit status of finished commands, in start order."""
        for inv in list(self.invocations):
            with inv.lock:
                pending = len(inv.output)  # a chatty command must not keep us here forever
            while pending > 0:
                with inv.lock:
                    chunk = bytes(inv.output[:min(LOG_CHUNK, pending)])
                pending -= len(chunk)
                try:
                    self.request("task", {"q": "log", "jid": inv.jid, "tid": inv.tid, "owner": inv.owner},
                                 body=chunk)
                except EngineRefused as exc:
                    self.log("WARNING", f"{inv}: engine refused output ({exc}); dropped")
                with inv.lock:
                    del inv.output[:len(chunk)]
            if not inv.finished.is_set():
                continue
            with inv.lock:
                if inv.output:  # more output arrived after the last upload; next round
                    continue
            try:
                answer = self.request("task", {"q": "cstatus", "jid": inv.jid, "tid": inv.tid,
                                               "cid": inv.cid, "iid": inv.iid, "rc": inv.rc})
                note = " (ignored by engine)" if answer.get("ignored") else ""
                self.log("INFO", f"{inv}: reported rc={inv.rc}{note}")
            except EngineRefused as exc:
                self.log("WARNING", f"{inv}: engine refused exit status rc={inv.rc} ({exc}); dropped")
            self.invocations.remove(inv)

    def free_slots(self) -> int:
        return max(0, self.slots - len(self.invocations))

    def heartbeat(self) -> None:
        body = json.dumps({"running": [inv.key for inv in self.invocations],
                           "freeslots": self.free_slots()}).encode()
        try:
            answer = self.request("btrack", {"q": "heartbeat"}, body=body, content_type="application/json")
        except EngineRefused as exc:
            # e.g. an engine that does not know us (restarted): register again.
            self.log("NOTICE", f"heartbeat refused ({exc}); registering again")
            self.registered = False
            return
        for spec in answer.get("kill") or []:
            if not isinstance(spec, dict):
                continue
            for inv in self.invocations:
                if inv.matches(spec):
                    self.kill(inv, f"engine asked to kill {inv}")

    def ask_for_work(self) -> None:
        while not self.stopping and self.free_slots() > 0 and self.registered:
            try:
                answer = self.request("task", {"q": "nextcmd", "slots": self.free_slots()})
            except EngineRefused as exc:
                self.log("WARNING", f"nextcmd refused ({exc})")
                return
            cmd = answer.get("cmd")
            if not cmd:
                return
            self.start(cmd)

    # .. running commands .......................................................................
    def start(self, cmd: dict) -> None:
        try:
            inv = Invocation(cmd)
        except (KeyError, TypeError, ValueError) as exc:
            self.log("WARNING", f"unusable command from engine ({exc!r}): {cmd!r}")
            return
        self.invocations.append(inv)
        cwd = inv.cwd if inv.cwd and os.path.isdir(inv.cwd) else None
        read_fd, write_fd = os.pipe()
        try:
            if not inv.argv:
                raise FileNotFoundError(2, "empty command")
            inv.proc = subprocess.Popen(
                inv.argv, stdin=subprocess.DEVNULL, stdout=write_fd, stderr=write_fd,
                cwd=cwd, env=command_env(inv), start_new_session=True, close_fds=True)
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            # INVENTED: a command that cannot be started reports 127 (not found) or 126, as sh does.
            inv.append(f"tractor-blade: cannot launch {inv.argv[:1]}: {exc.strerror or exc}\n".encode())
            inv.rc = 127 if isinstance(exc, FileNotFoundError) else 126
            inv.finished.set()
            self.log("WARNING", f"{inv}: cannot launch {inv.argv!r}: {exc}")
            self.wake.set()
            return
        os.close(write_fd)
        self.log("INFO", f"{inv}: started pid {inv.proc.pid} for {inv.owner}: {inv.argv!r}"
                         f" in {cwd or os.getcwd()}")
        threading.Thread(target=_collect, args=(inv, read_fd, self.wake), daemon=True,
                         name=f"out-{inv}").start()
        self.dispatched += 1
        if self.dispatched == 1 and self.lost_seconds:
            self.lost_until = time.monotonic() + self.lost_seconds
            self.log("NOTICE", f"fault {FAULT_LOSES_ENGINE}: engine unreachable for "
                               f"{self.lost_seconds:g} s")
            self.reachable = False
            self.registered = False  # as after a real outage: register again afterwards

    def kill(self, inv: Invocation, why: str) -> None:
        """SIGTERM to the command's process group, SIGKILL after KILL_GRACE seconds."""
        if inv.proc is None or inv.finished.is_set() or inv.kill_sent:
            return
        inv.kill_sent = True
        self.log("NOTICE", f"{why}: SIGTERM to process group {inv.proc.pid}")
        _signal_group(inv.proc.pid, signal.SIGTERM)
        inv.kill_timer = threading.Timer(KILL_GRACE, self._kill_hard, args=(inv,))
        inv.kill_timer.daemon = True
        inv.kill_timer.start()

    def _kill_hard(self, inv: Invocation) -> None:
        if not inv.finished.is_set():
            self.log("NOTICE", f"{inv}: still running after {KILL_GRACE:g} s; SIGKILL")
            _signal_group(inv.proc.pid, signal.SIGKILL)

    # .. main loop .............................................................................
    def exchange(self) -> None:
        """One round with the engine; EngineUnreachable propagates."""
        if not self.registered:
            self.register()
        self.deliver()
        self.heartbeat()
        if not self.registered:  # heartbeat refused: register and try once more next round
            return
        self.ask_for_work()

    def run(self) -> int:
        self.log("NOTICE", f"tractor-blade {self.info.version} ({self.info.build}) starting: "
                           f"name {self.name!r}, engine {self.host}:{self.port}, {self.slots} slots")
        if self.lost_seconds:
            self.log("NOTICE", f"fault {FAULT_LOSES_ENGINE}={self.lost_seconds:g} is on")
        while not self.stopping:
            now = time.monotonic()
            if now >= self.next_attempt and not self._engine_lost_by_fault():
                try:
                    self.exchange()
                    if not self._engine_lost_by_fault():
                        self._reached()
                except EngineUnreachable as exc:
                    self._unreachable(exc)
                except EngineRefused as exc:  # e.g. registration refused: try again later
                    self.log("WARNING", f"engine refused: {exc}")
                    self.registered = False
                    self.backoff = min(MAX_BACKOFF, max(self.poll, self.backoff * 2))
                    self.next_attempt = time.monotonic() + self.backoff
            self.wake.wait(self.poll)
            self.wake.clear()
        return self.shutdown()

    def stop(self, signum, _frame=None) -> None:
        if not self.stopping:
            self.stopping = True
            self.wake.set()

    def shutdown(self) -> int:
        self.log("NOTICE", "stopping: no more work taken, killing running commands")
        for inv in self.invocations:
            self.kill(inv, f"blade stopping, {inv}")
        deadline = time.monotonic() + KILL_GRACE + 2
        for inv in self.invocations:
            inv.finished.wait(max(0.0, deadline - time.monotonic()))
        # Deliver what we can within a few seconds; the engine may be gone.
        deadline = time.monotonic() + SHUTDOWN_DELIVERY
        self.next_attempt = 0.0
        while self.invocations and time.monotonic() < deadline:
            if self._engine_lost_by_fault():
                break
            try:
                if not self.registered:
                    self.register()
                self.deliver()
                self._reached()
            except (EngineUnreachable, EngineRefused) as exc:
                self._unreachable(exc)
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        if self.invocations:
            self.log("WARNING", f"exiting with {len(self.invocations)} undelivered result(s): "
                             + ", ".join(str(i) for i in self.invocations))
        self.log("NOTICE", "tractor-blade exits")
        return 0


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# -- daemon mode ---------------------------------------------------------------------------------

def _daemonize() -> None:
    """Classic double fork; the launching process exits once the daemon is set up."""
    read_fd, write_fd = os.pipe()
    if os.fork() > 0:
        os.close(write_fd)
        os.read(read_fd, 1)  # wait until the daemon has written its pid file
        os._exit(0)
    os.close(read_fd)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    _DAEMON_READY.append(write_fd)


_DAEMON_READY: list[int] = []


def _daemon_ready() -> None:
    while _DAEMON_READY:
        fd = _DAEMON_READY.pop()
        try:
            os.write(fd, b"1")
        finally:
            os.close(fd)


def _write_pidfile(path: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(f"{os.getpid()}\n")
    os.replace(tmp, path)


def _remove_pidfile(path: str) -> None:
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read().strip() != str(os.getpid()):
                return
        os.unlink(path)
    except OSError:
        pass


# -- entry point ---------------------------------------------------------------------------------

def main(version: str, install_root: str, argv: list[str]) -> int:
    parser = build_parser()
    try:
        opts = parser.parse_args(argv)
    except _ParseError as exc:
        sys.stderr.write(f"tractor-blade: {exc}\n")
        return 2
    if opts.help:
        parser.print_help(sys.stdout)
        return 0
    info = versions.get(version)
    if opts.version:
        # INVENTED wording; the engine's banner style (§6.5).
        sys.stdout.write(f"tractor-blade {info.version} ({info.build_date} {info.build} {info.platform})\n")
        return 0
    if opts.slots < 0:
        sys.stderr.write("tractor-blade: --slots must be 0 or more\n")
        return 2
    try:
        parse_engine(opts.engine or os.environ.get("TRACTOR_ENGINE") or DEFAULT_ENGINE)
    except ValueError as exc:
        sys.stderr.write(f"tractor-blade: {exc}\n")
        return 2
    if opts.daemon:
        if opts.log:
            opts.log = os.path.abspath(opts.log)
        if opts.pidfile:
            opts.pidfile = os.path.abspath(opts.pidfile)
        _daemonize()
    try:
        log = Log(opts.log)
    except OSError as exc:
        sys.stderr.write(f"tractor-blade: cannot open log {opts.log}: {exc.strerror}\n")
        _daemon_ready()
        return 2
    if opts.pidfile:
        try:
            _write_pidfile(opts.pidfile)
        except OSError as exc:
            log("SEVERE", f"cannot write pid file {opts.pidfile}: {exc.strerror}")
            _daemon_ready()
            return 2
    _daemon_ready()
    blade = Blade(version, opts, log)
    signal.signal(signal.SIGTERM, blade.stop)
    signal.signal(signal.SIGINT, blade.stop)
    signal.signal(signal.SIGHUP, lambda *_: log.reopen())
    try:
        return blade.run()
    finally:
        if opts.pidfile:
            _remove_pidfile(opts.pidfile)
