"""Faults around a burst (issue 26): a client reading its answer a byte at a time holds no worker
thread, 10 000 idle connections leave /ping answering, and a SIGKILL in the middle of a burst
leaves nothing written under SERVE_TMPDIR but the server's own (empty) private directory."""

from __future__ import annotations

import os
import resource
import signal
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from reliability.corpus import GOOD
from reliability.wire import build, exchange
from tests.support.reliability import SERVER_ENV, port_of
from tests.support.server import local_server

pytestmark = pytest.mark.slow

IDLE_CONNECTIONS = 10_000


def big_picture_request() -> bytes:
    """A 4000 x 3000 noisy JPEG asking for the drawn picture as PNG: an answer of about 36 MB,
    more than the sockets' buffers and waitress's outbuf_high_watermark (16 MB) hold."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    ok, jpeg = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    headers = {"Content-Type": "image/jpeg", "Accept": "image/png"}
    return build("POST", "/invocations", headers, jpeg.tobytes())


def test_a_client_reading_its_answer_a_byte_a_second_holds_no_worker(head_model_path):
    """One waitress thread: were it held writing the slow client's answer, nothing else would
    be answered until that client had read it all."""
    env = {**SERVER_ENV, "SERVE_THREADS": "1", "MAX_BODY_BYTES": str(64 * 1024 * 1024)}
    with local_server(head_model_path, env=env) as server:
        port = port_of(server)
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.settimeout(30)
        slow.connect(("127.0.0.1", port))
        slow.sendall(big_picture_request())
        first = slow.recv(1)
        assert first == b"H"  # the answer has begun
        try:
            for second in range(3):
                time.sleep(1)
                assert slow.recv(1)  # a byte a second
                ping = exchange("127.0.0.1", port, build("GET", "/ping"), timeout=5)
                good = exchange("127.0.0.1", port, GOOD.build(), timeout=5)
                assert (ping.status, good.status) == (200, 200), second
                assert ping.seconds < 2 and good.seconds < 5
        finally:
            slow.close()


def _raise_descriptor_limit(wanted: int) -> int:
    """This test process's soft RLIMIT_NOFILE raised towards `wanted` (at most the hard limit);
    the idle connections it can then open."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return min(IDLE_CONNECTIONS, target - 200)


def test_ten_thousand_idle_connections_leave_ping_answering(head_model_path):
    """Idle keep-alive connections (some after a request, most never used) beyond waitress's
    default limit of 100: /ping and an invocation on a new connection still answer. Scaled down
    only where the hard descriptor limit is below 10 000 (said in the failure message)."""
    count = _raise_descriptor_limit(IDLE_CONNECTIONS + 200)
    with local_server(head_model_path, env=SERVER_ENV) as server:
        port, pid = port_of(server), server.process.pid
        idle: list[socket.socket] = []
        try:
            keep_alive = build("GET", "/ping").replace(
                b"Connection: close", b"Connection: keep-alive"
            )
            for index in range(count):
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                if index % 100 == 0:  # one in a hundred has been used and kept open
                    sock.sendall(keep_alive)
                    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
                idle.append(sock)
            deadline = time.monotonic() + 60
            while len(os.listdir(f"/proc/{pid}/fd")) < count and time.monotonic() < deadline:
                time.sleep(0.2)  # until the server has accepted them all
            assert len(os.listdir(f"/proc/{pid}/fd")) >= count, f"{count} connections"
            ping = exchange("127.0.0.1", port, build("GET", "/ping"), timeout=30)
            good = exchange("127.0.0.1", port, GOOD.build(), timeout=30)
            assert (ping.status, good.status) == (200, 200), f"{count} idle connections"
            assert ping.seconds < 5, f"/ping took {ping.seconds:.2f} s beside {count} connections"
        finally:
            for sock in idle:
                sock.close()
        assert server.process.poll() is None


def test_sigkill_in_the_middle_of_a_burst_leaves_nothing_written(slow_model_path, tmp_path):
    parent = tmp_path / "scratch"
    parent.mkdir()
    env = {**SERVER_ENV, "SERVE_TMPDIR": str(parent)}
    with local_server(slow_model_path, env=env) as server:
        port = port_of(server)
        answers: list[int] = []

        def client() -> None:
            try:
                answers.append(exchange("127.0.0.1", port, GOOD.build(), timeout=10).status)
            except OSError:
                answers.append(-1)

        clients = [threading.Thread(target=client) for _ in range(30)]
        for thread in clients:
            thread.start()
        time.sleep(0.5)  # inferences running, a queue waiting, refusals going out
        server.process.send_signal(signal.SIGKILL)
        for thread in clients:
            thread.join(30)
        server.process.wait(10)
    left = [path for path in Path(parent).rglob("*") if not path.is_dir()]
    assert left == []  # only the private directory itself, empty
    assert len(answers) == 30
