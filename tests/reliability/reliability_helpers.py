"""Helpers shared by the reliability tests (a module of its own: `conftest` is ambiguous)."""

from __future__ import annotations

from demo.local_server import LocalServer

# Small and steady, like tests/serve: 4 waitress threads, 2 onnxruntime threads.
SERVER_ENV = {"SERVE_THREADS": "4", "ORT_INTRA_OP_THREADS": "2"}


def port_of(server: LocalServer) -> int:
    return int(server.url.rsplit(":", 1)[1])
