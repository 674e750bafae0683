"""serve/memory.py: under OpenVINO, what one request frees is the next one's, not pages faulted in
again. Measured on the real server: `python -m serve` with SERVE_RUNTIME=openvino on a full-size
yolov7-tiny (80 classes, random weights, the benchmark's) exported at 640, whose output is 8.5 MB
per inference, the sample photos over HTTP, minor page faults of the server process counted from
/proc. Without keep_freed_memory() the same server took 1500-2500 faults per request here; with
it, ~250."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.server import REPO, ServerProcess

pytest.importorskip("openvino")
pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc"),
    pytest.mark.slow,  # full servers on full-size exports (10-20 s)
]

PHOTOS = [REPO / "samples" / "bus.jpg", REPO / "samples" / "zidane.jpg"]
MAX_FAULTS_PER_REQUEST = 800


def minor_faults(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[7])  # field 10, minflt


@pytest.fixture(scope="module")
def model_640(tmp_path_factory) -> Path:
    from bench.models import prepare

    return prepare("yolov7-tiny", tmp_path_factory.mktemp("memory"), 640, end2end=False).raw


def test_keep_freed_memory_takes_on_this_c_library():
    """In a process of its own: the setting lasts for the life of the process that makes it."""
    probe = "from serve.memory import keep_freed_memory; print(keep_freed_memory())"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"  # glibc: both thresholds accepted


def test_openvino_server_reuses_each_requests_buffers(tmp_path, model_640):
    env = {"MODEL_PATH": str(model_640), "SERVE_RUNTIME": "openvino", "SERVE_PRECISION": "fp32"}
    server = ServerProcess(tmp_path, env).wait_ready()
    try:
        bodies = [p.read_bytes() for p in PHOTOS]
        for body in bodies * 3:  # warm: every buffer allocated once
            assert server.invoke(body).status == 200
        deadline = time.monotonic() + 30  # the narrow compile allocates too: let it finish
        while "narrow layout ready" not in server.log_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        before = minor_faults(server.proc.pid)
        for body in bodies * 10:
            assert server.invoke(body).status == 200
        per_request = (minor_faults(server.proc.pid) - before) / (2 * 10)
    finally:
        server.close()
    assert per_request < MAX_FAULTS_PER_REQUEST
