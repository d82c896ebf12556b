"""HTTP client of the emulated engine API, shared by ``tq`` and ``tractor-spool``.

What it does follows the fact sheet: engine address resolution (§5 "Reaching the engine"), the
request form of the Python EngineClient (§6.1: ``POST /Tractor/<verb>?<query>`` with the
``Cookie: TractorUser=``, ``User-Agent`` and ``X-Tractor-Blade: 0`` headers), login/logout and the
``tsid`` every later request carries (§6.2), and JSON replies whose non-zero ``rc`` is an error
(§6.1).  The endpoints themselves are those of emulator/PROTOCOL.md.

Every failure (connection, HTTP status, non-JSON body, ``rc`` != 0) becomes an ``EngineError``
whose text is ready for ``tq: <text>`` on stderr; the tools turn it into exit code 2 (§5).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import urllib.parse

DEFAULT_ENGINE_HOST = "tractor-engine"  # §5: default engine name
DEFAULT_ENGINE_PORT = 80                # §5: port default 80
FALLBACK_ENGINE_HOST = "127.0.0.1"      # §5: used when "tractor-engine" does not resolve
DEFAULT_TIMEOUT = 30.0                  # §5: tq -t/--timeout default


class EngineError(Exception):
    """An engine/connection/HTTP/login failure; ``rc`` is the engine's rc when it sent one."""

    def __init__(self, message: str, rc: int | None = None):
        super().__init__(message)
        self.rc = rc


class UsageError(Exception):
    """A command-line problem (bad --engine value, ...); also exit code 2 (§5)."""


def parse_engine(spec: str) -> tuple[str, int]:
    """``host[:port]`` -> (host, port); the port defaults to 80 (§5)."""
    spec = spec.strip()
    if not spec:
        raise UsageError("empty engine address")
    host, sep, port = spec.rpartition(":")
    if not sep:
        return spec, DEFAULT_ENGINE_PORT
    if not host:
        host = DEFAULT_ENGINE_HOST
    try:
        number = int(port)
    except ValueError:
        raise UsageError(f"bad engine address {spec!r}: the port must be a number") from None
    if not 0 < number < 65536:
        raise UsageError(f"bad engine address {spec!r}: port out of range")
    return host, number


def resolve_engine(option: str | None, environ: dict | None = None) -> tuple[str, int]:
    """``--engine`` > env ``TRACTOR_ENGINE`` > ``tractor-engine:80`` (§5).

    §5: when the name ``tractor-engine`` does not resolve, the real clients try the
    EngineDiscovery multicast and then fall back to 127.0.0.1.  The emulator skips the
    multicast (INVENTED simplification) and falls back to 127.0.0.1 straight away, keeping the
    port.
    """
    environ = os.environ if environ is None else environ
    spec = option or environ.get("TRACTOR_ENGINE") or f"{DEFAULT_ENGINE_HOST}:{DEFAULT_ENGINE_PORT}"
    host, port = parse_engine(spec)
    if host == DEFAULT_ENGINE_HOST:
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            host = FALLBACK_ENGINE_HOST
    return host, port


def default_user(environ: dict | None = None) -> str:
    """tq user: ``--user`` else env USER, falling back to ``root`` (§5)."""
    environ = os.environ if environ is None else environ
    return environ.get("USER") or "root"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout) or isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return exc.strerror or str(exc)
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.strerror or os.strerror(exc.errno)
    return str(exc) or exc.__class__.__name__


class EngineClient:
    """One tool's conversation with one engine."""

    def __init__(self, host: str, port: int, user: str, password: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, app: str = "tq", debug: bool = False,
                 stderr=None):
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.timeout = timeout
        self.app = app
        self.debug = debug or bool(os.environ.get("TRACTOR_DEBUG"))  # §5: env TRACTOR_DEBUG
        self.stderr = stderr or sys.stderr
        self.tsid: str | None = None
        self.login_reply: dict = {}
        self.server_header = ""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _log(self, text: str) -> None:
        if self.debug:
            self.stderr.write(f"{self.app} debug: {text}\n")
            self.stderr.flush()

    # -- one request --------------------------------------------------------------------------
    def request(self, verb: str, params: dict | None = None, body: bytes | None = None,
                content_type: str | None = None, session: bool = True) -> dict:
        """POST ``/Tractor/<verb>?<params>`` and return the decoded JSON reply (rc == 0).

        ``session`` adds ``tsid`` when logged in.  Raises EngineError otherwise.
        """
        query = dict(params or {})
        if session and self.tsid and "tsid" not in query:
            query["tsid"] = self.tsid
        path = f"/Tractor/{verb}"
        if query:
            path += "?" + urllib.parse.urlencode(query)
        headers = {
            # §6.1: the headers the shipped EngineClient sends.
            "Cookie": f"TractorUser={self.user}",
            "User-Agent": f"Pixar-EngineClient/1.0 ({self.app} tractor_emulator)",
            "X-Tractor-Blade": "0",
            "Connection": "close",
        }
        if body is not None:
            headers["Content-Type"] = content_type or "application/octet-stream"
        self._log(f"POST http://{self.address}{path}" + (f" ({len(body)} bytes)" if body else ""))
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            try:
                conn.request("POST", path, body=body if body is not None else b"", headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                raise EngineError(f"cannot reach the engine at {self.address}: {_reason(exc)}") from None
        finally:
            conn.close()
        self.server_header = response.getheader("Server", "") or self.server_header
        self._log(f"-> HTTP {response.status} {data[:400]!r}")
        reply = None
        try:
            reply = json.loads(data.decode("utf-8")) if data else None
        except (UnicodeDecodeError, ValueError):
            reply = None
        if response.status != 200:
            msg = reply.get("msg") if isinstance(reply, dict) else None
            detail = msg or response.reason or "error"
            raise EngineError(f"engine {self.address} answered HTTP {response.status} to {verb}?"
                              f"{query.get('q', '')}: {detail}")
        if not isinstance(reply, dict):
            raise EngineError(f"engine {self.address} sent a reply that is not a JSON object "
                              f"to {verb}?q={query.get('q', '')}")
        rc = reply.get("rc", 0)
        if rc not in (0, None, "0"):
            msg = reply.get("msg") or f"rc={rc}"
            raise EngineError(str(msg), rc=int(rc) if str(rc).lstrip("-").isdigit() else None)
        return reply

    # -- sessions (§6.2) ------------------------------------------------------------------------
    def login(self) -> dict:
        """``monitor?q=login&user=U`` once per invocation; keeps the tsid.

        INVENTED simplification: the session is never cached on disk (no
        ``~/.pixarPrefs/.../*.session`` file, §5) and passwords are not sent -- the emulated
        engine does not check them (PROTOCOL.md "Sessions").
        """
        try:
            reply = self.request("monitor", {"q": "login", "user": self.user}, session=False)
        except EngineError as exc:
            if exc.rc is not None:
                raise EngineError(f"login as {self.user} at {self.address} failed: {exc}", exc.rc) from None
            raise
        tsid = reply.get("tsid")
        if not tsid:
            raise EngineError(f"login as {self.user} at {self.address} failed: no session id in the reply")
        self.tsid = str(tsid)
        self.login_reply = reply
        return reply

    def logout(self) -> None:
        """``monitor?q=logout&user=U&tsid=T``; failures are ignored (the work is done)."""
        if not self.tsid:
            return
        try:
            self.request("monitor", {"q": "logout", "user": self.user})
        except EngineError as exc:
            self._log(f"logout failed: {exc}")
        self.tsid = None

