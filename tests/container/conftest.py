"""The real serving image, built once per session, and the answers of the same server run locally.

Without a container engine (or hadolint) the tests skip on a developer's machine, and fail in CI
(CI=true), where .ci/run installs podman, runc and debootstrap.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from container.engine import REPO, SAGEMAKER_PORT, Engine, base_image, export_onnx, find_engine
from tests.support.containers import SAMPLES, detect, port_is_free, unavailable
from tests.support.server import local_server

# In the build context (.dockerignore lets weights/*.onnx in; .gitignore keeps it out of git).
BAKED_IN_CONTEXT = "weights/container-test.onnx"
TEST_BASE = "localhost/yolov7-test-base:bookworm"


def native_platform() -> str:
    """This machine's platform as the engines name it: the tests run what they build."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return f"linux/{arch}"


@pytest.fixture(scope="session")
def engine() -> Engine:
    found = find_engine()
    if found is None:
        unavailable("no container engine: podman is not installed and no docker daemon answers")
    can_make_base = shutil.which("debootstrap", path="/usr/sbin:/usr/bin") and os.geteuid() == 0
    if (
        found.name == "podman"
        and not os.environ.get("CONTAINER_BASE_IMAGE")
        and not found.image_exists(TEST_BASE)
        and not can_make_base
    ):
        unavailable(f"no base image {TEST_BASE}: making one needs debootstrap, run as root")
    return found


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """baked: the bundled model at 320; mounted: an end2end export at 256, so answers differ."""
    mounted_dir = tmp_path_factory.mktemp("opt-ml-model")
    mounted = export_onnx(mounted_dir / "model.onnx", img_size=256, end2end=True)
    # Readable by any user: the non-root run reads it through the read-only mount.
    mounted_dir.chmod(0o755)
    mounted.chmod(0o644)
    baked = tmp_path_factory.mktemp("baked") / "model.onnx"
    export_onnx(baked, img_size=320)
    return {"baked": baked, "mounted": mounted}


def make_image(
    engine: Engine,
    baked: Path,
    runtime: str = "onnxruntime",
    platform: str | None = None,
    base: str | None = None,
) -> str:
    """What `make image` builds (`python -m container.image`, so `deploy push`'s build command),
    for this machine's platform unless told another (with its base image).

    The baked model is put in the build context first: the tool must find it up to date and
    build with it as it is.
    """
    tag = f"localhost/yolov7-sagemaker:test-{runtime}-{uuid.uuid4().hex[:8]}"
    base = base or base_image(engine)
    in_context = REPO / BAKED_IN_CONTEXT
    shutil.copyfile(baked, in_context)
    command = [
        sys.executable, "-m", "container.image", "--model", str(in_context), "--tag", tag,
        "--base-image", base, "--cli", engine.name, "--platform", platform or native_platform(),
        "--runtime", runtime,
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=1800, check=False
        )
    finally:
        in_context.unlink(missing_ok=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert f"{BAKED_IN_CONTEXT} is up to date" in done.stdout, done.stdout[-2000:]
    return tag


@pytest.fixture(scope="session")
def image(engine: Engine, models: dict[str, Path]) -> Iterator[str]:
    tag = make_image(engine, models["baked"])
    try:
        yield tag
    finally:
        engine.remove_image(tag)


@pytest.fixture(scope="session")
def openvino_image(engine: Engine, models: dict[str, Path]) -> Iterator[str]:
    """`make image RUNTIME=openvino`: the same server and model, OpenVINO instead of onnxruntime."""
    tag = make_image(engine, models["baked"], runtime="openvino")
    try:
        yield tag
    finally:
        engine.remove_image(tag)


@pytest.fixture(scope="session")
def expected(models: dict[str, Path]) -> dict[str, dict[str, dict]]:
    """What the same server, run outside any container, answers for each model and sample."""
    answers: dict[str, dict[str, dict]] = {}
    for which, model in models.items():
        with local_server(model) as server:
            answers[which] = {sample.name: detect(server.url, sample) for sample in SAMPLES}
    return answers


@pytest.fixture
def port_8080() -> int:
    if not port_is_free(SAGEMAKER_PORT):
        pytest.fail(f"port {SAGEMAKER_PORT} is in use: the container test serves on it")
    return SAGEMAKER_PORT


# The registry of test_registry.py, for the arm64 module's push too (a fixture is seen by name).
from tests.container.test_registry import registry, trusting_registry  # noqa: E402, F401
