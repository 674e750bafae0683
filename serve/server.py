"""Waitress, run so that it can be stopped gracefully.

`waitress.serve` stops by raising out of its event loop, which drops requests in flight. Here the
event loop runs one turn at a time until `stop()` is called (from a signal handler, say); then the
listening socket closes (new connections are refused), the loop keeps turning until every request
already received has been answered and flushed (or the grace period ends), idle keep-alive
connections are closed, and the worker threads are joined.
"""

from __future__ import annotations

import logging
import resource
import threading
import time
from collections.abc import Callable
from typing import Any

import waitress
from waitress import wasyncore
from waitress.channel import HTTPChannel

log = logging.getLogger("serve")

RECV_BYTES = 256 * 1024
# waitress's outbuf_overflow: never. Every answer exists in memory in full before waitress gets it
# (Falcon's resp.data), so a spilled copy saves no memory and would put users' pictures on disk.
NEVER_SPILL = 1 << 62
# Descriptors kept for everything but client connections: the listening socket, waitress's
# trigger pipe, the model file, the runtime's and the logs'.
SPARE_DESCRIPTORS = 256
ACCEPT_BATCH = 256  # connections accepted in one turn of the event loop, at most


def fit_descriptors(connections: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE so that `connections` fit beside the spare ones
    (at most to the hard limit); the connections that fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + SPARE_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft == resource.RLIM_INFINITY:
        return connections
    return max(1, min(connections, soft - SPARE_DESCRIPTORS))


def inbuf_overflow(max_request_body_size: int) -> int:
    """waitress's inbuf_overflow: above any body it accepts, so none is spooled to a file.

    waitress buffers a body before the app sees it, spooling it to a temporary file once it
    reaches inbuf_overflow (default 512 KiB): users' photos on disk. A body it accepts is at most
    max_request_body_size, plus one read past it for a chunked body refused as it arrives.
    """
    return max_request_body_size + RECV_BYTES + 1


def accept_in_batches(server: Any, batch: int = ACCEPT_BATCH) -> Callable[[], None]:
    """waitress's handle_accept, repeated up to `batch` times a turn of its loop.

    waitress accepts one connection per turn, and every turn polls every open connection: with
    thousands open, a crowd of new ones took minutes to be accepted (10 000 idle connections:
    4 000 accepted after 3 minutes), /ping waiting behind them in the kernel's backlog. Stops at
    an empty backlog (accept() found nothing) or at the connection limit."""
    accept_one = server.handle_accept
    connections = server._map

    def handle_accept() -> None:
        for _ in range(batch):
            before = len(connections)
            accept_one()
            if len(connections) == before or len(connections) >= server.adj.connection_limit:
                return

    return handle_accept


def _not_yet(environ: dict, start_response: Callable) -> list[bytes]:
    raise RuntimeError("Server.serve(app) sets the application before the loop runs")


class Server:
    """Listens as soon as it is made (the kernel completes TCP handshakes from then on, even
    while the application is still being imported); answers once `serve(app)` runs the loop."""

    def __init__(
        self,
        host: str,
        port: int,
        threads: int,
        max_request_body_size: int,
        grace_seconds: float,
        max_connections: int = 100,
        in_memory_body_size: int | None = None,
    ):
        """`in_memory_body_size`: bodies up to this stay in memory (default: all it accepts);
        larger ones (video clips on an asynchronous endpoint) are spooled by waitress to a
        temporary file, which the server's private directory holds (serve/scratch.py)."""
        self._grace = grace_seconds
        self.max_connections = fit_descriptors(max_connections)
        self._stop = threading.Event()
        self.exit_code = 0
        self._waitress = waitress.create_server(
            _not_yet,
            host=host,
            port=port,
            threads=threads,
            # A hard stop in front of the app's own limit (which answers 413 in JSON): waitress
            # refuses larger bodies before buffering them.
            max_request_body_size=max_request_body_size,
            # A photo arrives in 256 KB reads, not waitress's default 8 KB: fewer turns of the
            # Python event loop per request (~1 MP JPEGs over loopback: 1.03 -> 0.53 CPU ms of
            # the server per request).
            recv_bytes=RECV_BYTES,
            # Bodies and answers stay in memory: no user's picture is written to disk.
            inbuf_overflow=inbuf_overflow(in_memory_body_size or max_request_body_size),
            outbuf_overflow=NEVER_SPILL,
            asyncore_use_poll=True,  # select() cannot watch fds above 1024
            # Keep reading a connection while its request is handled, so that a client that
            # hangs up is seen (environ["waitress.client_disconnected"]) and its request, still
            # waiting for a turn, is dropped (serve/admission.py). A client that half-closes
            # after its request counts as gone too.
            channel_request_lookahead=1,
            connection_limit=self.max_connections,
            ident="",
        )
        self._map: dict[int, Any] = self._waitress._map
        self._waitress.handle_accept = accept_in_batches(self._waitress)

    @property
    def port(self) -> int:
        return int(self._waitress.effective_port)

    def stop(self, exit_code: int = 0) -> None:
        """Ask the loop to stop; safe from a signal handler or another thread."""
        if not self._stop.is_set():
            self.exit_code = exit_code
        self._stop.set()
        self._waitress.pull_trigger()  # wake the loop now (a pipe write, no lock)

    def serve(self, app: Callable) -> int:
        """Serve `app` until stop(), then drain; returns the exit code given to stop()."""
        self._waitress.application = app
        while not self._stop.is_set():
            wasyncore.loop(timeout=1.0, map=self._map, use_poll=True, count=1)
        self._drain()
        return self.exit_code

    def _busy(self) -> int:
        """Connections with a request being received, processed or sent; idle ones are closed."""
        busy = 0
        for channel in list(self._map.values()):
            if not isinstance(channel, HTTPChannel):
                continue
            if channel.requests or channel.request is not None or channel.total_outbufs_len:
                busy += 1
            else:
                channel.will_close = True
        return busy

    def _drain(self) -> None:
        wasyncore.dispatcher.close(self._waitress)  # listening socket only; the trigger stays
        deadline = time.monotonic() + self._grace
        busy = self._busy()
        if busy:
            log.info("draining", extra={"fields": {"requests_in_flight": busy}})
        while busy and time.monotonic() < deadline:
            wasyncore.loop(timeout=0.05, map=self._map, use_poll=True, count=1)
            busy = self._busy()
        if busy:
            log.warning(
                "grace period over with requests in flight",
                extra={"fields": {"requests_in_flight": busy}},
            )
        wasyncore.loop(timeout=0.05, map=self._map, use_poll=True, count=1)  # close idle ones
        self._waitress.task_dispatcher.shutdown(cancel_pending=True, timeout=2)
        wasyncore.close_all(self._map)
