"""Build and run the serving image with a real engine, the same way for the tests and measure.py.

docker where an engine answers; otherwise podman, run as this project's CI machines need it (runc
with the cgroupfs manager, ulimits below the hard limits; see docs/container.md). With no registry,
the base image is made locally by container/make_test_base.sh.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from demo.local_server import wait_for_ping
from deploy.images import build_command

REPO = Path(__file__).resolve().parent.parent
TEST_BASE_IMAGE = "localhost/yolov7-test-base:bookworm"
DEFAULT_BASE_IMAGE = "python:3.11-slim"
SAGEMAKER_PORT = 8080
# podman's default rlimits exceed these machines' hard limits, and runc then refuses to start.
PODMAN_ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000")


class EngineError(RuntimeError):
    """An engine command failed; the message carries its output."""


@dataclass(frozen=True)
class Engine:
    name: str
    prefix: tuple[str, ...]  # the executable and its global flags
    limits: tuple[str, ...]  # flags for both `build` and `run`

    def __call__(self, *args: str, timeout: float = 600) -> str:
        done = subprocess.run(
            [*self.prefix, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise EngineError(
                f"{self.name} {' '.join(args[:2])} exited {done.returncode}:\n"
                f"{done.stdout[-4000:]}{done.stderr[-4000:]}"
            )
        return done.stdout

    def image_exists(self, image: str) -> bool:
        cmd = [*self.prefix, "image", "inspect", image]
        return subprocess.run(cmd, capture_output=True, check=False).returncode == 0

    def image_size(self, image: str) -> int:
        return int(self("image", "inspect", "--format", "{{.Size}}", image).strip())

    def build(self, tag: str, base_image: str, model_file: str = "weights/model.onnx") -> None:
        """Build the Dockerfile at the repository root with `deploy push`'s command line (so with
        its manifest format), for this machine's platform; model_file is relative to the root."""
        argv = build_command(
            self.name,
            tag,
            REPO,
            platform=None,
            build_args=[f"BASE_IMAGE={base_image}", f"MODEL_FILE={model_file}"],
        )
        # podman keeps every step as an image unless told not to: they would outlive `rmi`.
        layers = ("--layers=false",) if self.name == "podman" else ()
        self(*argv[1:-1], *layers, "--network", "host", *self.limits, argv[-1])

    def remove_image(self, image: str) -> None:
        if self.image_exists(image):
            self("rmi", "--force", image)


def find_engine() -> Engine | None:
    """docker when its daemon answers, else podman when installed, else None."""
    docker = shutil.which("docker")
    if docker and _answers([docker, "info"]):  # a client alone is not an engine
        return Engine("docker", (docker,), ())
    podman = shutil.which("podman")
    if not podman:
        return None
    runc = shutil.which("runc") or shutil.which("runc", path="/usr/sbin:/sbin")
    runtime = ("--runtime", runc) if runc else ()  # crun fails here on hybrid cgroups
    return Engine("podman", (podman, *runtime, "--cgroup-manager=cgroupfs"), PODMAN_ULIMITS)


def _answers(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=30, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def base_image(engine: Engine) -> str:
    """CONTAINER_BASE_IMAGE, else python:3.11-slim for docker, else the local debootstrap base."""
    chosen = os.environ.get("CONTAINER_BASE_IMAGE")
    if chosen:
        return chosen
    if engine.name == "docker":
        return DEFAULT_BASE_IMAGE
    script = REPO / "container" / "make_test_base.sh"
    done = subprocess.run(
        ["bash", str(script), TEST_BASE_IMAGE], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise EngineError(f"{script.name} failed:\n{done.stdout}{done.stderr}")
    return TEST_BASE_IMAGE


def export_onnx(output: Path, img_size: int = 320, end2end: bool = False) -> Path:
    """Export the bundled checkpoint (torch is needed here, on the host, never in the image)."""
    checkpoint = REPO / "weights" / "shapes-yolov7-tiny.pt"
    cmd = [
        sys.executable, "-m", "export", "--weights", str(checkpoint),
        "--img-size", str(img_size), "--output", str(output),
    ]  # fmt: skip
    if end2end:
        cmd.append("--end2end")
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, timeout=300)
    return output


@dataclass
class Container:
    engine: Engine
    name: str
    url: str
    process: subprocess.Popen  # the attached `run` client: its exit code is the container's
    log_path: Path  # the container's stdout and stderr
    ready_after: float  # seconds from `run` to the first 200 from /ping

    def stop_with_sigterm(self, timeout: float = 10) -> tuple[int, float]:
        """SIGTERM to the server (PID 1); returns its exit code and the seconds it took to exit."""
        started = time.monotonic()
        self.engine("kill", "--signal", "TERM", self.name)
        code = self.process.wait(timeout)
        return code, time.monotonic() - started

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def running(
    engine: Engine,
    image: str,
    port: int = SAGEMAKER_PORT,
    env: Mapping[str, str] | None = None,
    options: Sequence[str] = (),
    command: Sequence[str] = ("serve",),
    timeout: float = 60,
) -> Iterator[Container]:
    """`IMAGE serve`, as SageMaker starts it, on the host network; removed however the block ends.

    The server is told to listen on 127.0.0.1 only: the host network is shared, and tests stay
    on loopback. Pass `SAGEMAKER_BIND_TO_PORT` in env when port is not 8080.
    """
    name = f"yolov7-sagemaker-test-{uuid.uuid4().hex[:12]}"
    env_flags = [f"--env={k}={v}" for k, v in {"SERVE_HOST": "127.0.0.1", **(env or {})}.items()]
    cmd = [
        *engine.prefix, "run", "--rm", "--name", name, "--network", "host", *engine.limits,
        *env_flags, *options, image, *command,
    ]  # fmt: skip
    log_dir = Path(tempfile.mkdtemp(prefix="yolov7-container-"))
    log_path = log_dir / "container.log"
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        started = time.monotonic()
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            try:
                wait_for_ping(url, process, timeout)
            except RuntimeError as exc:
                raise EngineError(f"{exc}:\n{log_path.read_text(errors='replace')}") from None
            yield Container(engine, name, url, process, log_path, time.monotonic() - started)
        finally:
            for args in (("kill", "--signal", "KILL", name), ("rm", "--force", name)):
                subprocess.run([*engine.prefix, *args], capture_output=True, check=False)
            if process.poll() is None:
                process.kill()
            process.wait(30)
            shutil.rmtree(log_dir, ignore_errors=True)
