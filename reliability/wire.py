"""HTTP/1.1 over a plain socket, bounded by timeouts: bad requests must reach the server exactly as
built (http.client would fix a lying Content-Length or refuse an overlong header)."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any

NO_ANSWER = 0  # the server closed the connection without answering


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    seconds: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body)


def build(
    method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    """Request bytes with `Connection: close` and, unless given, a true Content-Length."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    given = {k.lower() for k in (headers or {})}
    if body and "content-length" not in given and "transfer-encoding" not in given:
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def exchange(
    host: str, port: int, data: bytes, timeout: float = 30.0, half_close: bool = False
) -> Answer:
    """Send `data`, optionally half-close (EOF: the client will send no more), read the answer
    until the server closes. A reset or silence both count as NO_ANSWER."""
    started = time.perf_counter()
    received = bytearray()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                received += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass  # the server may refuse a body before it is all sent; keep what came back
        except TimeoutError:
            if not received:
                raise
    answer = parse(bytes(received))
    answer.seconds = time.perf_counter() - started
    return answer


def parse(data: bytes) -> Answer:
    """The first response in `data` (status, headers, body by Content-Length)."""
    if not data:
        return Answer(NO_ANSWER)
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(rest)))
    return Answer(status, headers, rest[:length])
