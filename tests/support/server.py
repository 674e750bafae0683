"""The one server harness of the tests: a real `python -m serve` process (waitress on 127.0.0.1, a
free port), talked to over HTTP, and the one /ping helper.

- `ServerProcess`: the process, isolated from the machine's /opt/ml/model and serving variables,
  with its log, its stderr, `request`/`invoke` over http.client, and `terminate`/`close`.
- `local_server(model, env)`: a `with` block around a ServerProcess on `model`, once /ping is 200
  and nothing compiles in the background; stopped with SIGTERM, as SageMaker stops it. The same
  contract as the product's demo.local_server (demo, bench), whose pieces it uses.
- `ping(url)`: /ping's JSON answer when it is 200, else None.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from demo.local_server import free_port, stop, wait_until_settled
from serve.config import VARIABLES

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"

# Small and steady on two cores: 16 waitress threads (most wait their turn: serve/admission.py),
# 2 onnxruntime threads.
TEST_THREADS = {"SERVE_THREADS": "16", "ORT_INTRA_OP_THREADS": "2"}

# Loopback servers are never reached through an HTTP(S)_PROXY the machine may have set.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def ping(url: str, timeout: float = 5.0) -> dict | None:
    """GET url/ping: its JSON answer when it is 200 (never empty), None when it is not or when
    nothing answers."""
    try:
        with DIRECT.open(f"{url}/ping", timeout=timeout) as answer:
            if answer.status != 200:
                return None
            return json.loads(answer.read() or b"{}") or {"status": answer.status}
    except (OSError, ValueError):
        return None


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


class ServerProcess:
    """`python -m serve` in a subprocess, isolated from the machine's /opt/ml/model and env."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str],
        args: tuple[str, ...] = (),
        threads: dict[str, str] = TEST_THREADS,
    ):
        """`threads`: the thread settings under `env`; {} leaves the server's own defaults."""
        self.port = int(env.get("SAGEMAKER_BIND_TO_PORT") or free_port())
        base = {k: v for k, v in os.environ.items() if k not in {v.name for v in VARIABLES}}
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "empty-model-dir").mkdir(exist_ok=True)
        base.update(
            PYTHONPATH=str(REPO),
            SERVE_HOST="127.0.0.1",
            SAGEMAKER_BIND_TO_PORT=str(self.port),
            SAGEMAKER_MODEL_DIR=str(workdir / "empty-model-dir"),
            BAKED_MODEL_PATH=str(workdir / "no-baked-model.onnx"),
            **threads,
        )
        base.update(env)
        self.log_path = workdir / f"server-{self.port}.log"
        self.stderr_path = workdir / f"server-{self.port}.stderr"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in close())
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serve", *args],
            cwd=REPO,
            env=base,
            stdout=self._log,
            stderr=self._stderr,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def process(self) -> subprocess.Popen:
        return self.proc

    # --- lifecycle -------------------------------------------------------------------------
    def wait_ready(self, timeout: float = 60.0) -> ServerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"server exited {self.proc.returncode}:\n{self.log_text()}{self.stderr_text()}"
                )
            if ping(self.url, timeout=2) is not None:
                return self
            time.sleep(0.05)
        raise AssertionError(f"server not ready after {timeout}s:\n{self.log_text()}")

    def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.flush()

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.wait_exit(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM, as SageMaker sends it; SIGKILL only if it has not drained in `grace` s."""
        stop(self.proc, grace)
        self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()
        self._stderr.close()

    # --- logs ------------------------------------------------------------------------------
    def log_text(self) -> str:
        """stdout: the structured log."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stderr_text(self) -> str:
        """stderr: nothing of ours; native decoders (libpng, libjpeg) may complain there."""
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def log_records(self) -> list[dict]:
        records = []
        for line in self.log_text().splitlines():
            if line.strip():
                records.append(json.loads(line))  # every line must be JSON
        return records

    # --- HTTP ------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            conn.close()

    def invoke(self, body: bytes, content_type: str = "image/jpeg", **headers: str) -> Response:
        hdrs = {"Content-Type": content_type}
        hdrs.update({k.replace("_", "-"): v for k, v in headers.items()})
        return self.request("POST", "/invocations", body, hdrs)


@contextlib.contextmanager
def local_server(
    model: Path,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    threads: dict[str, str] | None = None,
) -> Iterator[ServerProcess]:
    """`python -m serve serve` on `model` for as long as the block lasts: yielded once /ping is
    200 and nothing compiles in the background (an INT8 export on OpenVINO), stopped with SIGTERM
    (SIGKILL only when it has not drained in 30 s). Its logs live in a temporary folder, shown
    when it fails to start. `threads`: None keeps the server's own thread defaults."""
    with tempfile.TemporaryDirectory(prefix="local-server-") as workdir:
        server = ServerProcess(
            Path(workdir), {"MODEL_PATH": str(model), **(env or {})}, ("serve",), threads or {}
        )
        try:
            server.wait_ready(timeout)
            wait_until_settled(server.url, timeout)
            yield server
        finally:
            server.stop()
