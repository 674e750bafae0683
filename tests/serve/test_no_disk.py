"""Users' photos and answers never touch the disk: the real server over HTTP on loopback.

waitress spools a body of inbuf_overflow bytes or more, and an answer of outbuf_overflow or more,
to a temporary file, unlinked as soon as it is made (O_TMPFILE): a listing of the folder never
shows it, the process's open files do (`/proc/PID/fd`: "DIR/#123 (deleted)"). So the test holds
each buffer still while it looks: a body sent but for its last byte (waitress waits for it, the
rest buffered), and an answer the client does not read (its receive window kept small).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

MIB = 1024 * 1024


def photo() -> bytes:
    """A 3000x2000 JPEG of about 4 MiB: under the 6 MiB limit, far over waitress's 512 KiB."""
    rng = np.random.default_rng(7)
    coarse = rng.integers(0, 255, (50, 75, 3), dtype=np.uint8)
    smooth = cv2.resize(coarse, (3000, 2000), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    noisy = np.clip(smooth + rng.integers(-40, 40, smooth.shape), 0, 255).astype(np.uint8)
    data = cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 93])[1].tobytes()
    assert 3 * MIB < len(data) < 6 * MIB, len(data)
    return data


def temp_files(pid: int, folders: list[Path]) -> list[str]:
    """The files `pid` holds open that are deleted (a spool file) or inside one of `folders`."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("/memfd:"):
            continue  # anonymous memory, not a file on a disk
        inside = any(target.startswith(f"{folder}/") for folder in folders)
        if inside or target.endswith(" (deleted)"):
            found.append(target)
    return found


def queues(local_port: int, remote_port: int) -> tuple[int, int] | None:
    """(send queue, receive queue) of the loopback TCP socket local_port -> remote_port."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, tx_rx = fields[1], fields[2], fields[4]
        if int(local.split(":")[1], 16) == local_port and int(remote.split(":")[1], 16) == (
            remote_port
        ):
            tx, rx = tx_rx.split(":")
            return int(tx, 16), int(rx, 16)
    return None


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def read_answer(sock: socket.socket) -> tuple[bytes, bytes]:
    """The status line and headers, and the body (Content-Length long)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(1 << 20)
        assert chunk, "the server closed before the answer was complete"
        body += chunk
    return head, body


@pytest.fixture
def folders(tmp_path) -> dict[str, Path]:
    made = {"TMPDIR": tmp_path / "tmpdir", "SERVE_TMPDIR": tmp_path / "serve-tmp"}
    for folder in made.values():
        folder.mkdir()
    return made


def test_a_big_photo_and_its_drawn_answer_stay_in_memory(start_server, head_model_path, folders):
    env = {name: str(path) for name, path in folders.items()}
    # Exact decode: the picture is drawn at its full 6 MP, a PNG answer of ~14 MB.
    env.update(MODEL_PATH=str(head_model_path), SERVE_EXACT_DECODE="true")
    server = start_server(env)
    pid = server.proc.pid
    watched = list(folders.values())  # and any deleted file, wherever it lies
    body = photo()
    head = (
        f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
        f"Accept: image/png\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.socket() as client:
        # A small receive window, set before connecting: the server cannot hand the answer to
        # the kernel, so it stays in waitress's buffer until this client reads.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(("127.0.0.1", server.port))
        mine = client.getsockname()[1]
        client.sendall(head + body[:-1])
        # Every byte sent is in the server's hands (out of both kernel queues) and buffered by
        # waitress, which waits for the last one: over 512 KiB, where waitress would spool it.
        wait_for(
            lambda: queues(mine, server.port) == (0, 0) and queues(server.port, mine) == (0, 0),
            "the server to read the body",
        )
        assert temp_files(pid, watched) == []
        client.sendall(body[-1:])
        # The answer is written once the server starts sending: its send queue fills.
        wait_for(lambda: (queues(server.port, mine) or (0, 0))[0] > 0, "the answer")
        time.sleep(0.2)  # the rest of the answer lies in waitress's buffer, this client unread
        assert temp_files(pid, watched) == []
        status, answer = read_answer(client)
    assert status.startswith(b"HTTP/1.1 200"), status
    drawn = cv2.imdecode(np.frombuffer(answer, np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape == (2000, 3000, 3) and len(answer) > 4 * MIB, len(answer)
    assert list(folders["TMPDIR"].iterdir()) == []
    (private,) = folders["SERVE_TMPDIR"].iterdir()
    assert list(private.iterdir()) == []
    assert server.terminate() == 0
    assert list(folders["SERVE_TMPDIR"].iterdir()) == []
