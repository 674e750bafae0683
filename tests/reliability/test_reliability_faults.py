"""Faults: SIGTERM with requests in flight, clients that vanish mid-upload or trickle their body,
and what the server writes to disk. (A missing or corrupt model at start is tests/serve's:
test_serve_lifecycle.py, `test_*_exits_non_zero_at_once_with_one_line`.)"""

from __future__ import annotations

import os
import signal
import socket
import struct
import threading
import time
from pathlib import Path

from reliability.corpus import GOOD, good_jpeg
from reliability.soak import proc_status
from reliability.wire import build, exchange
from tests.support.reliability import SERVER_ENV, port_of
from tests.support.server import local_server


def good_request(port: int, timeout: float = 30) -> int:
    return exchange("127.0.0.1", port, GOOD.build(), timeout=timeout).status


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_sigterm_lets_every_request_in_flight_complete(slow_model_path):
    env = {**SERVER_ENV, "SERVE_QUEUE_DEADLINE": "60"}  # all six wait their turn
    with local_server(slow_model_path, env=env) as server:
        port = port_of(server)
        statuses: list[int] = []
        clients = [
            threading.Thread(target=lambda: statuses.append(good_request(port, 60)))
            for _ in range(6)
        ]
        for client in clients:
            client.start()
        time.sleep(0.3)  # all six sent; the first inferences are running
        server.process.send_signal(signal.SIGTERM)
        for client in clients:
            client.join(60)
        assert server.process.wait(30) == 0
    assert statuses == [200] * 6


def _vanishing_upload(port: int, reset: bool) -> None:
    """Headers and half of a 2 MB body, then gone (a reset, or a plain close)."""
    body = good_jpeg() * (2_000_000 // len(good_jpeg()))
    head = build("POST", "/invocations", {"Content-Type": "image/jpeg"}, body)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if reset:  # close() sends RST instead of FIN
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.sendall(head[: len(head) // 2])
    sock.close()


def test_vanishing_and_trickling_clients_leak_no_thread_fd_or_memory(head_model_path):
    with local_server(head_model_path, env=SERVER_ENV) as server:
        port, pid = port_of(server), server.process.pid
        for _ in range(30):  # warm-up
            assert good_request(port) == 200
        before = proc_status(pid)
        fds_before = fd_count(pid)

        # 10 slow clients trickle a body (a byte every 0.1 s) while good requests are served.
        slow = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(10)]
        body = good_jpeg()
        head = build("POST", "/invocations", {"Content-Type": "image/jpeg"}, body)
        for sock in slow:
            sock.sendall(head[: len(head) - len(body)])
        latencies = []
        for step in range(20):
            for sock in slow:
                sock.sendall(body[step : step + 1])
            started = time.perf_counter()
            assert good_request(port, timeout=5) == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.1)
        assert max(latencies) < 2.0, latencies
        assert proc_status(pid)["Threads"] == before["Threads"], "a slow body holds no thread"
        for sock in slow:
            sock.close()

        for i in range(60):
            _vanishing_upload(port, reset=i % 2 == 0)
        assert good_request(port) == 200
        time.sleep(0.5)  # the server notices the closed sockets
        after = proc_status(pid)
        assert after["Threads"] == before["Threads"]
        assert fd_count(pid) <= fds_before
        assert after["VmRSS"] < before["VmRSS"] * 1.10, (before, after)


def _writable_paths(pid: int) -> set[str]:
    """Files the process holds open for writing."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            flags = Path(f"/proc/{pid}/fdinfo/{fd}").read_text().split("flags:")[1].split()[0]
        except (OSError, IndexError):
            continue
        if target.startswith("/") and int(flags, 8) & os.O_ACCMODE != os.O_RDONLY:
            found.add(target)
    return found


def _changed_since(roots: list[Path], since: float) -> list[str]:
    return [
        str(Path(folder) / name)
        for root in roots
        for folder, _, names in os.walk(root)
        for name in names
        if (Path(folder) / name).stat().st_mtime >= since
    ]


def test_server_writes_nothing_outside_tmp(head_model_path, tmp_path, repo_root):
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o555)  # not enforced for root: the checks below are what proves it
    started = time.time()
    env = {**SERVER_ENV, "HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
    with local_server(head_model_path, env=env) as server:
        port, pid = port_of(server), server.process.pid
        writable: set[str] = set()
        big = good_jpeg() * (1_500_000 // len(good_jpeg()))  # over waitress's 512 KiB: spooled
        for body, accept in ((good_jpeg(), "image/png"), (big, "application/json")):
            data = build(
                "POST", "/invocations", {"Content-Type": "image/jpeg", "Accept": accept}, body
            )
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(data[:-10])  # the body is in the server's buffer now
                time.sleep(0.3)
                writable |= _writable_paths(pid)
                sock.sendall(data[-10:])
                assert sock.recv(12).startswith(b"HTTP/1.1 ")
        writable |= _writable_paths(pid)
        assert exchange("127.0.0.1", port, GOOD.build()).status == 200
    outside = {p for p in writable if not p.startswith(("/tmp/", "/dev/"))}
    assert not outside, outside
    watched = [home, *(repo_root / d for d in ("serve", "demo", "reliability", "weights"))]
    assert _changed_since(watched, started) == []
