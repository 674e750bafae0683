"""The bundled model, exported and served over HTTP, finds the true shapes (issue: the main job)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from demo.evaluate import Tally, match
from demo.shapes import make_image
from tests.support.server import local_server

# Exports the bundled checkpoint and runs `python -m demo` (10-15 s each).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shapes_model(tmp_path_factory, shapes_checkpoint, repo_root) -> Path:
    output = tmp_path_factory.mktemp("shapes") / "shapes.onnx"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "export",
            "--weights",
            str(shapes_checkpoint),
            "--img-size",
            "320",
            "--output",
            str(output),
        ],
        cwd=repo_root,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return output


def detect(url: str, image: np.ndarray) -> list[dict]:
    ok, png = cv2.imencode(".png", image)
    assert ok
    request = urllib.request.Request(
        f"{url}/invocations", data=png.tobytes(), headers={"Content-Type": "image/png"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["detections"]


def test_served_shapes_model_finds_the_true_boxes_with_high_precision_and_recall(shapes_model):
    rng = np.random.default_rng(2024)  # unseen images, not the bundled samples
    total = Tally()
    with local_server(shapes_model) as server:
        for _ in range(40):
            image, shapes = make_image(rng, 320, 320)
            truth = [{"box": s.box, "class_id": s.class_id} for s in shapes]
            total.add(match(detect(server.url, image), truth, min_iou=0.5))
    print(
        f"precision {total.precision:.3f} recall {total.recall:.3f} "
        f"({total.true_positives + total.false_negatives} shapes)"
    )
    assert total.true_positives + total.false_negatives > 100
    assert total.precision >= 0.95
    assert total.recall >= 0.95


def run_demo(repo_root: Path, **env: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "demo"]
    return subprocess.run(
        command,
        cwd=repo_root,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_demo_command_writes_annotated_pictures_and_scores_the_samples(repo_root, tmp_path):
    result = run_demo(repo_root, OUT=str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    for marker in ("[1/4]", "[2/4]", "[3/4]", "[4/4]", "precision", "annotated pictures"):
        assert marker in result.stdout
    samples = sorted((repo_root / "samples" / "shapes").glob("*.png"))
    pictures = sorted(tmp_path.glob("*.jpg"))
    assert [p.stem for p in pictures] == [p.stem for p in samples]
    for picture, sample in zip(pictures, samples, strict=True):
        drawn, original = cv2.imread(str(picture)), cv2.imread(str(sample))
        assert drawn.shape == original.shape
        assert np.abs(drawn.astype(int) - original).mean() > 1  # boxes were drawn


def test_demo_with_a_missing_weights_file_fails_with_one_line(repo_root, tmp_path):
    result = run_demo(repo_root, OUT=str(tmp_path), WEIGHTS=str(tmp_path / "nope.pt"))
    assert result.returncode == 2
    assert "not found" in result.stderr and "Traceback" not in result.stderr
