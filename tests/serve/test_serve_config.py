"""Settings from the environment, model location, and the app before the model is ready."""

from __future__ import annotations

import logging
import os
import re

import falcon.testing
import pytest

from serve.app import create_app
from serve.config import (
    VARIABLES,
    ConfigError,
    Settings,
    available_cpus,
    cgroup_cpu_quota,
    default_inference_slots,
)
from serve.detector import Detector
from serve.errors import ModelError
from serve.locate import locate_model
from tests.support.server import REPO, SAMPLES

# --- settings ---------------------------------------------------------------------------------


def test_defaults_follow_the_sagemaker_contract():
    settings = Settings.from_env({})
    assert (settings.host, settings.port) == ("0.0.0.0", 8080)
    assert (settings.conf, settings.iou, settings.max_det) == (0.25, 0.45, 300)
    assert settings.max_body_bytes == 6 * 1024 * 1024
    assert settings.model_dir == "/opt/ml/model"
    assert settings.model_path is None
    assert settings.intra_op_threads == available_cpus()
    assert settings.threads >= 4 and settings.inter_op_threads == 1
    assert settings.log_level == logging.INFO
    assert 0 < settings.grace_seconds < 30
    assert settings.tmpdir == "/tmp"


def test_every_variable_is_read_from_the_environment():
    settings = Settings.from_env(
        {
            "MODEL_PATH": "/m.onnx",
            "SAGEMAKER_MODEL_DIR": "/d",
            "BAKED_MODEL_PATH": "/b.onnx",
            "SAGEMAKER_BIND_TO_PORT": "9000",
            "SERVE_HOST": "127.0.0.1",
            "YOLO_CONF": "0.4",
            "YOLO_IOU": "0.6",
            "YOLO_MAX_DET": "50",
            "MAX_BODY_BYTES": "1000",
            "MAX_IMAGE_PIXELS": "2000",
            "SERVE_THREADS": "9",
            "ORT_INTRA_OP_THREADS": "3",
            "ORT_INTER_OP_THREADS": "2",
            "SERVE_INFERENCE_SLOTS": "2",
            "SERVE_RUNTIME": "openvino",
            "SERVE_PRECISION": "bf16",
            "SERVE_GRACE_SECONDS": "5",
            "LOG_LEVEL": "debug",
            "SERVE_TMPDIR": "/scratch",
            "MAX_VIDEO_BYTES": "5000",
            "SERVE_VIDEO_MAX_FRAMES": "77",
            "SERVE_VIDEO_SECONDS": "12",
        }
    )
    assert settings == Settings(
        model_path="/m.onnx",
        model_dir="/d",
        baked_model_path="/b.onnx",
        host="127.0.0.1",
        port=9000,
        conf=0.4,
        iou=0.6,
        max_det=50,
        max_body_bytes=1000,
        batch=False,
        max_image_pixels=2000,
        threads=9,
        intra_op_threads=3,
        inter_op_threads=2,
        inference_slots=2,
        runtime="openvino",
        precision="bf16",
        grace_seconds=5.0,
        log_level=logging.DEBUG,
        tmpdir="/scratch",
        max_video_bytes=5000,
        video_max_frames=77,
        video_seconds=12.0,
        runtime_asked=True,
    )


def test_video_limits_default_to_the_body_limit_and_the_queue_deadline():
    settings = Settings.from_env({"MAX_BODY_BYTES": "1000"})
    assert (settings.max_video_bytes, settings.video_seconds) == (1000, 50.0)
    asynchronous = Settings.from_env({"SERVE_QUEUE_DEADLINE": "3600"})
    assert asynchronous.video_seconds == 3600.0


def test_inference_slots_default_by_model_size_and_free_cpus():
    assert Settings.from_env({}).inference_slots is None  # chosen once the model is known
    assert Settings.from_env({"SERVE_INFERENCE_SLOTS": "3"}).inference_slots == 3
    tiny, large = 24 << 20, 146 << 20
    assert default_inference_slots(tiny, intra_op_threads=2, cpus=2) == 2
    assert default_inference_slots(large, intra_op_threads=2, cpus=2) == 1
    assert default_inference_slots(large, intra_op_threads=1, cpus=4) == 4


def test_batch_transform_payload_limit_applies_only_in_batch_mode():
    assert Settings.from_env({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "20"}).max_body_bytes == 6 << 20
    batch = Settings.from_env({"SAGEMAKER_BATCH": "true", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20"})
    assert batch.max_body_bytes == 20 << 20 and batch.max_payload_mb == 20
    explicit = {
        "SAGEMAKER_BATCH": "true",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20",
        "MAX_BODY_BYTES": "5",
    }
    assert Settings.from_env(explicit).max_body_bytes == 5


def test_log_level_comes_from_log_level_else_sagemakers_variable():
    assert Settings.from_env({"SAGEMAKER_CONTAINER_LOG_LEVEL": "30"}).log_level == 30
    both = {"SAGEMAKER_CONTAINER_LOG_LEVEL": "30", "LOG_LEVEL": "ERROR"}
    assert Settings.from_env(both).log_level == logging.ERROR


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SAGEMAKER_BIND_TO_PORT", "http"),
        ("SAGEMAKER_BIND_TO_PORT", "70000"),
        ("YOLO_CONF", "1.5"),
        ("YOLO_MAX_DET", "0"),
        ("MAX_BODY_BYTES", "-1"),
        ("SERVE_THREADS", "many"),
        ("SAGEMAKER_BATCH", "perhaps"),
        ("LOG_LEVEL", "LOUD"),
        ("SERVE_GRACE_SECONDS", "nan"),
        ("SERVE_RUNTIME", "tensorrt"),
        ("SERVE_PRECISION", "int4"),
    ],
)
def test_a_bad_value_names_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_cgroup_cpu_quota_is_read_from_v2_and_v1(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(str(v2)) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(str(v2)) is None
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(str(tmp_path / "v1")) == 2.0
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(str(tmp_path / "v1")) is None
    assert cgroup_cpu_quota(str(tmp_path / "nothing")) is None


def test_cpus_are_the_affinity_capped_by_the_quota_rounded_up(tmp_path):
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert available_cpus(str(tmp_path)) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(str(tmp_path)) == len(os.sched_getaffinity(0))


def test_every_variable_is_documented_in_docs_serving():
    doc = (REPO / "docs" / "serving.md").read_text()
    table = set(re.findall(r"^\| `([A-Z_]+)` \|", doc, re.MULTILINE))
    assert table == {v.name for v in VARIABLES}


def test_only_config_reads_the_environment():
    for path in (REPO / "serve").glob("*.py"):
        if path.name != "config.py":
            assert not re.search(r"os\.environ|getenv|putenv", path.read_text()), path


# --- model location ---------------------------------------------------------------------------


def test_model_path_wins_then_the_single_model_in_the_dir_then_the_baked_one(tmp_path):
    chosen = tmp_path / "chosen.onnx"
    chosen.write_bytes(b"x")
    model_dir = tmp_path / "ml"
    (model_dir / "sub").mkdir(parents=True)
    (model_dir / "sub" / "model.ONNX").write_bytes(b"x")
    (model_dir / ".hidden.onnx").write_bytes(b"x")
    (model_dir / "notes.txt").write_text("x")
    baked = tmp_path / "baked.onnx"
    baked.write_bytes(b"x")
    assert locate_model(str(chosen), str(model_dir), str(baked)) == chosen
    assert locate_model(None, str(model_dir), str(baked)) == model_dir / "sub" / "model.ONNX"
    assert locate_model(None, str(tmp_path / "absent"), str(baked)) == baked


def test_no_model_or_two_models_are_refused_with_a_reason(tmp_path):
    with pytest.raises(ModelError, match="no model"):
        locate_model(None, str(tmp_path), str(tmp_path / "baked.onnx"))
    (tmp_path / "a.onnx").write_bytes(b"x")
    (tmp_path / "b.onnx").write_bytes(b"x")
    with pytest.raises(ModelError, match=r"found 2 models \(\.onnx or \.xml files\)"):
        locate_model(None, str(tmp_path), str(tmp_path / "baked.onnx"))
    with pytest.raises(ModelError, match="not a file"):
        locate_model(str(tmp_path), str(tmp_path), "")


# --- the app before and after the model is ready (falcon's test client) -----------------------


def test_ping_and_invocations_answer_503_until_the_warm_up_passed(head_model_path):
    detector = Detector(head_model_path)
    client = falcon.testing.TestClient(create_app(detector, Settings.from_env({})))
    bus = (SAMPLES / "bus.jpg").read_bytes()

    loading = client.simulate_get("/ping")
    assert loading.status_code == 503
    assert loading.json["status"] == 503 and "loading" in loading.json["error"]
    assert client.simulate_head("/ping").status_code == 503
    invoked = client.simulate_post("/invocations", body=bus, content_type="image/jpeg")
    assert invoked.status_code == 503

    detector.load()
    assert client.simulate_get("/ping").status_code == 200
    assert client.simulate_head("/ping").status_code == 200
    invoked = client.simulate_post("/invocations", body=bus, content_type="image/jpeg")
    assert invoked.status_code == 200 and invoked.json["image"] == {"width": 810, "height": 1080}
