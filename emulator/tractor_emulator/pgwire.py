"""A minimal PostgreSQL client speaking the frontend/backend protocol (v3) over TCP.

The engine holds one long-lived connection as ``bootstrap`` (§4.2), so it needs a real client
library; the emulator stays stdlib-only (it runs from an install's lib/python under the system
Python) and therefore speaks the protocol itself.  Only what the emulator needs: trust
authentication, the simple query protocol, text results.  Values are quoted with ``literal``.
"""

from __future__ import annotations

import socket
import struct


class PgError(Exception):
    def __init__(self, message: str, sqlstate: str = ""):
        super().__init__(message)
        self.sqlstate = sqlstate


def literal(value) -> str:
    """SQL literal for None, bool, int, float, str or a list of those (as an ARRAY)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        if not value:
            return "'{}'"
        return "ARRAY[" + ", ".join(literal(v) for v in value) + "]"
    text = str(value)
    if "\x00" in text:
        raise ValueError("NUL characters cannot be stored")
    return "'" + text.replace("'", "''") + "'"  # standard_conforming_strings is on (PG >= 9.1)


class Connection:
    def __init__(self, host: str, port: int, user: str, dbname: str, application: str = "tractor-emulator",
                 timeout: float = 10.0):
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.settimeout(None)
        self._buffer = b""
        params = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in (
            ("user", user), ("database", dbname), ("application_name", application),
            ("client_encoding", "UTF8"), ("DateStyle", "ISO")))
        body = struct.pack("!I", 196608) + params + b"\0"
        self.sock.sendall(struct.pack("!I", len(body) + 4) + body)
        error = None
        while True:
            kind, payload = self._read()
            if kind == b"R":
                code = struct.unpack("!I", payload[:4])[0]
                if code != 0:
                    self.close()
                    raise PgError(f"authentication method {code} is not supported (trust only)")
            elif kind == b"E":
                error = self._error(payload)
                break
            elif kind == b"Z":
                break
        if error is not None:
            self.close()
            raise error

    def _recv_exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise PgError("the server closed the connection", "08006")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _read(self) -> tuple[bytes, bytes]:
        header = self._recv_exact(5)
        kind, length = header[:1], struct.unpack("!I", header[1:])[0]
        return kind, self._recv_exact(length - 4)

    @staticmethod
    def _error(payload: bytes) -> PgError:
        fields = {}
        for part in payload.split(b"\0"):
            if part:
                fields[part[:1]] = part[1:].decode("utf-8", "replace")
        return PgError(fields.get(b"M", "unknown error"), fields.get(b"C", ""))

    def query(self, sql: str) -> list[list[str | None]]:
        """Run one or more statements; returns the rows of the last statement that returned rows."""
        body = sql.encode("utf-8") + b"\0"
        self.sock.sendall(b"Q" + struct.pack("!I", len(body) + 4) + body)
        rows: list[list[str | None]] = []
        current: list[list[str | None]] | None = None
        error = None
        while True:
            kind, payload = self._read()
            if kind == b"T":
                current = []
            elif kind == b"D":
                count = struct.unpack("!H", payload[:2])[0]
                offset, row = 2, []
                for _ in range(count):
                    size = struct.unpack("!i", payload[offset:offset + 4])[0]
                    offset += 4
                    if size < 0:
                        row.append(None)
                    else:
                        row.append(payload[offset:offset + size].decode("utf-8"))
                        offset += size
                current.append(row)
            elif kind == b"C":
                if current is not None:
                    rows = current
                current = None
            elif kind == b"E":
                error = self._error(payload)
            elif kind == b"Z":
                break
        if error is not None:
            raise error
        return rows

    def close(self) -> None:
        try:
            self.sock.sendall(b"X" + struct.pack("!I", 4))
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
