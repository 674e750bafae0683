"""The suite's shared fixtures: the repository root, the bundled assets, the small head model, and
the bundled model's INT8 export. tests.support.aws's fixtures (moto's server) are a plugin for all.

Helpers are imported absolutely (`from tests.support.server import ...`): pyproject's
`pythonpath = ["."]` puts the repository root on sys.path, and nothing else edits it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from demo.shapes import write_samples
from tests.support.models import head_model

pytest_plugins = ["tests.support.aws"]

ROOT = Path(__file__).resolve().parent.parent

# The tiers (markers registered in pyproject.toml), given here so that no test can miss one:
# - container: every test under tests/container (images, podman, a registry);
# - emulator: every test that uses moto's server (the moto_url fixture, through moto or not);
# - slow: every test that uses an export of the bundled checkpoint (each takes 10-60 s of torch
#   work), plus the modules that say `pytestmark = pytest.mark.slow` (soaks, fuzzing, big servers).
# - arm64: the arm64 image under qemu (tests/container/test_image_arm64.py, many minutes): run only
#   when `-m` names it (`make test-arm64`), so `make test` and a bare `pytest` leave it out.
CONTAINER_FOLDERS = {"container"}
EMULATOR_FIXTURES = {"moto_url"}
SLOW_FIXTURES = {"exported", "shapes_onnx", "int8_export", "ir_export", "pose_exported"}


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "arm64" not in (config.getoption("markexpr") or ""):
        arm64 = [item for item in items if item.get_closest_marker("arm64")]
        if arm64:
            config.hook.pytest_deselected(items=arm64)
            items[:] = [item for item in items if not item.get_closest_marker("arm64")]
    for item in items:
        if item.path.relative_to(ROOT / "tests").parts[0] in CONTAINER_FOLDERS:
            item.add_marker(pytest.mark.container)
        if EMULATOR_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.emulator)
        if SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shapes_checkpoint() -> Path:
    return ROOT / "weights" / "shapes-yolov7-tiny.pt"


@pytest.fixture(scope="session")
def head_model_path(tmp_path_factory) -> Path:
    """The small head model (tests.support.models) at 128: the serve and reliability servers'."""
    return head_model(tmp_path_factory.mktemp("head-model") / "head.onnx", size=128)


@pytest.fixture(scope="session")
def int8_export(tmp_path_factory, shapes_checkpoint) -> dict:
    """The bundled model at 320 by the real command line, once a session, as FP32 and as INT8
    calibrated on 64 generated shape images (every 4th held out): the export tests judge it, the
    reliability tests put the INT8 model through the corpus and the soak."""
    folder = tmp_path_factory.mktemp("int8")
    calibration = write_samples(folder / "calibration", 64, seed=5, sizes=[(320, 320)]).parent
    outputs = {"int8": folder / "int8.onnx", "fp32": folder / "fp32.onnx"}
    done = {}
    for precision, path in outputs.items():
        command = [
            sys.executable, "-m", "export", "--weights", str(shapes_checkpoint),
            "--img-size", "320", "--precision", precision, "--output", str(path),
        ]  # fmt: skip
        if precision == "int8":
            command += ["--calibration", str(calibration)]
        done[precision] = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=600
        )
        assert done[precision].returncode == 0, done[precision].stderr[-2000:]
    return {**outputs, "stdout": done["int8"].stdout, "folder": folder}


@pytest.fixture(scope="session")
def ir_export(int8_export, shapes_checkpoint) -> dict:
    """The bundled model at 320 as OpenVINO IR INT8 (`--int8-format ir`) by the real command line,
    once a session, calibrated on int8_export's images; with int8_export's FP32 and INT8 ONNX."""
    ir = int8_export["folder"] / "ir" / "int8.xml"
    calibration = int8_export["folder"] / "calibration"
    command = [
        sys.executable, "-m", "export", "--weights", str(shapes_checkpoint), "--img-size", "320",
        "--precision", "int8", "--int8-runtime", "openvino", "--int8-format", "ir",
        "--calibration", str(calibration), "--output", str(ir),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return {
        **int8_export,
        "ir": ir,
        "calibration": calibration,
        "stdout": done.stdout,
        "stderr": done.stderr,
    }


@pytest.fixture(scope="session")
def pose_checkpoint(tmp_path_factory) -> Path:
    """A narrow yolov7-w6-pose-layout checkpoint (random weights, objectness biased to find some
    tens of people on a photo), saved as training writes it (float16, ema and optimizer keys)."""
    from tests.support.checkpoints import build_pose_model, checkpoint_dict, save_checkpoint

    path = tmp_path_factory.mktemp("pose-checkpoint") / "yolov7-w6-pose-narrow.pt"
    return save_checkpoint(checkpoint_dict(build_pose_model(width=8), "training"), path)


@pytest.fixture(scope="session")
def pose_exported(tmp_path_factory, pose_checkpoint) -> dict[str, Path]:
    """The pose checkpoint by the real command line, once a session: raw and end2end at 640, raw
    at 960 (the released model's size)."""
    folder = tmp_path_factory.mktemp("pose-onnx")
    variants = {"raw": (640, []), "end2end": (640, ["--end2end"]), "raw960": (960, [])}
    paths = {}
    for name, (size, extra) in variants.items():
        paths[name] = folder / f"pose-{name}.onnx"
        command = [
            sys.executable, "-m", "export", "--weights", str(pose_checkpoint),
            "--img-size", str(size), "--output", str(paths[name]), *extra,
        ]  # fmt: skip
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    return paths
