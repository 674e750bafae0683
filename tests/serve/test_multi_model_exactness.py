"""A multi-model server answers exactly as single-model servers of the same files: the bundled
checkpoint exported at 320 (both layouts) and a yolov7 checkpoint built by the tests (5 classes,
exported at 256), loaded side by side, photos and clips alike; and unloading gives their memory
back (measured)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.checkpoints import build_model, checkpoint_dict, save_checkpoint
from tests.support.images import encode, shapes_image
from tests.support.multi_model import invoke, load, model_folder, multi_model_env, without_timings
from tests.support.server import REPO, SAMPLES, Response, ServerProcess
from tests.support.video import clip_bytes, cut, moving_shapes

CLASSES = ["car", "bike", "bus", "van", "cart"]


@pytest.fixture(scope="module")
def built_export(tmp_path_factory) -> Path:
    """A yolov7 of our layers with 5 classes, saved as an official checkpoint, exported at 256 by
    the real command line."""
    folder = tmp_path_factory.mktemp("built")
    net = build_model("yolov7", nc=5, width=8, names=CLASSES)
    checkpoint = save_checkpoint(checkpoint_dict(net, "stripped"), folder / "built.pt")
    output = folder / "built.onnx"
    command = [
        sys.executable, "-m", "export", "--weights", str(checkpoint),
        "--img-size", "256", "--output", str(output),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return output


def _requests() -> list[tuple[str, bytes, dict[str, str]]]:
    """(content type, body, headers): answers of every kind, and errors."""
    zidane = (SAMPLES / "zidane.jpg").read_bytes()
    shapes = encode(shapes_image(640, 480, 1), ".png")
    document = json.dumps(
        {"image": base64.b64encode(shapes).decode(), "conf": 0.1, "iou": 0.6, "max_det": 5}
    ).encode()
    clip = clip_bytes(".mp4", moving_shapes(12, 320, 240, seed=3)[0])
    longer = clip_bytes(".mkv", moving_shapes(40, 320, 240, seed=4)[0])  # its index is up front
    return [
        ("video/mp4", clip, {"X-Amzn-SageMaker-Custom-Attributes": "frame_stride=2,conf=0.2"}),
        ("application/octet-stream", cut(longer), {}),  # sniffed as a clip, cut short
        ("image/jpeg", zidane, {}),
        ("image/png", shapes, {"X-Amzn-SageMaker-Custom-Attributes": "conf=0.4,classes=0"}),
        ("application/json", document, {}),
        ("image/jpeg", (SAMPLES / "bus.jpg").read_bytes(), {"Accept": "image/png"}),
        ("image/jpeg", b"", {}),
        ("text/plain", b"hello", {}),
        ("image/jpeg", zidane, {"X-Amzn-SageMaker-Custom-Attributes": "conf=2"}),
        ("image/jpeg", zidane, {"Accept": "text/html"}),
        ("image/jpeg", zidane[:5000], {}),
    ]


def _comparable(resp: Response) -> tuple[int, object]:
    if not resp.headers["content-type"].startswith("application/json"):
        return resp.status, resp.body
    body = without_timings(resp.json())
    body.pop("request_id", None)
    return resp.status, body


def test_models_side_by_side_answer_as_their_single_model_servers(tmp_path, exported, built_export):
    models = {"shapes": exported["raw"], "shapes-e2e": exported["end2end"], "built": built_export}
    root = tmp_path / "models"
    many = ServerProcess(tmp_path / "many", multi_model_env(root))
    try:
        many.wait_ready()
        for name, path in models.items():
            assert load(many, name, model_folder(root, name, path)).status == 200
        assert many.request("GET", "/models/built").json()["classes"] == CLASSES
        content_type, clip, headers = _requests()[0]  # a clip, every 2nd of its 12 frames
        frames = invoke(many, "shapes", clip, content_type, **headers).json()["frames"]
        assert [frame["frame"] for frame in frames] == [0, 2, 4, 6, 8, 10]
        content_type, clip_cut_short, _ = _requests()[1]
        cut_short = invoke(many, "shapes", clip_cut_short, content_type).json()
        assert cut_short["incomplete"] and cut_short["frames"], cut_short
        for name, path in models.items():
            single = ServerProcess(tmp_path / name, {"MODEL_PATH": str(path)})
            try:
                single.wait_ready()
                for content_type, body, headers in _requests():
                    alone = single.invoke(body, content_type, **headers)
                    beside = invoke(many, name, body, content_type, **headers)
                    assert _comparable(beside) == _comparable(alone), (name, content_type)
            finally:
                single.close()
    finally:
        many.close()


def test_unloading_gives_the_memory_back(start_server, tmp_path, exported):
    root = tmp_path / "models"
    server = start_server(multi_model_env(root))
    url = model_folder(root, "shapes", exported["raw"])
    picture = encode(shapes_image(320, 320, 0), ".jpg")
    assert load(server, "warm", url).status == 200  # the runtime's one-off costs come first
    assert invoke(server, "warm", picture).status == 200

    def resident() -> float:
        return server.request("GET", "/ping").json()["memory"]["resident_mib"]

    start = resident()
    names = [f"copy{i}" for i in range(4)]
    for name in names:
        assert load(server, name, url).status == 200
        assert invoke(server, name, picture).status == 200
    loaded = resident()
    for name in names:
        assert server.request("DELETE", f"/models/{name}").status == 200
    unloaded = resident()
    file_mib = exported["raw"].stat().st_size / 2**20
    assert loaded - start > 4 * file_mib, (start, loaded)  # each copy holds its weights
    assert loaded - unloaded > 0.75 * (loaded - start), (start, loaded, unloaded)
