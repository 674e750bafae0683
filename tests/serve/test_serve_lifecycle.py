"""Start, configuration, failure, concurrency and shutdown of `python -m serve`."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time

import numpy as np
import pytest

from tests.support.images import encode, shapes_image
from tests.support.models import constant_model, flaky_model, head_model, slow_model
from tests.support.server import SAMPLES, ServerProcess, free_port

ZIDANE = (SAMPLES / "zidane.jpg").read_bytes()


@pytest.fixture(scope="module")
def slow_model_path(models_dir):
    return slow_model(models_dir / "slow.onnx")


def assert_fails_fast_with_one_line(server: ServerProcess, *words: str) -> dict:
    started = time.monotonic()
    code = server.wait_exit(timeout=30)
    assert code != 0
    assert time.monotonic() - started < 15
    lines = [line for line in server.log_text().splitlines() if line.strip()]
    errors = [json.loads(line) for line in lines if json.loads(line)["level"] == "ERROR"]
    assert len(errors) == 1, lines
    error = errors[0]
    assert error["message"].startswith("cannot start: ")
    assert "exception" not in error and "Traceback" not in server.log_text()
    assert "Traceback" not in server.stderr_text()
    for word in words:
        assert word in error["message"], error
    return error


# --- start ------------------------------------------------------------------------------------


def test_listens_on_sagemaker_bind_to_port(start_server, head_model_path):
    port = free_port()
    server = start_server({"MODEL_PATH": str(head_model_path), "SAGEMAKER_BIND_TO_PORT": str(port)})
    assert server.port == port
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    listening = [r for r in server.log_records() if r["message"] == "listening"]
    assert listening[0]["port"] == port


def test_serve_argument_as_sagemaker_passes_it_starts_the_server(start_server, head_model_path):
    server = start_server({"MODEL_PATH": str(head_model_path)}, args=("serve",))
    assert server.request("GET", "/ping").status == 200


def test_unknown_argument_is_refused(start_server, head_model_path):
    server = start_server({"MODEL_PATH": str(head_model_path)}, args=("train",), wait=False)
    assert server.wait_exit() == 2


def test_single_onnx_under_the_sagemaker_model_dir_is_served(
    start_server, tmp_path, head_model_path
):
    model_dir = tmp_path / "ml-model"
    (model_dir / "nested").mkdir(parents=True)
    shutil.copy(head_model_path, model_dir / "nested" / "detector.onnx")
    (model_dir / "._detector.onnx").write_bytes(b"macOS resource fork, not a model")
    server = start_server({"SAGEMAKER_MODEL_DIR": str(model_dir)})
    ready = next(r for r in server.log_records() if r["message"] == "ready")
    assert ready["path"].endswith("nested/detector.onnx")


def test_baked_model_is_served_when_nothing_else_is_given(start_server, tmp_path, head_model_path):
    baked = tmp_path / "baked.onnx"
    shutil.copy(head_model_path, baked)
    server = start_server({"BAKED_MODEL_PATH": str(baked)})
    assert server.request("GET", "/ping").status == 200


def test_model_path_wins_over_the_model_dir(start_server, tmp_path, head_model_path):
    model_dir = tmp_path / "ml-model"
    model_dir.mkdir()
    (model_dir / "a.onnx").write_bytes(b"x")
    (model_dir / "b.onnx").write_bytes(b"y")
    server = start_server(
        {"MODEL_PATH": str(head_model_path), "SAGEMAKER_MODEL_DIR": str(model_dir)}
    )
    assert server.request("GET", "/ping").status == 200


def test_plain_onnx_without_metadata_is_served_with_the_documented_defaults(start_server, tmp_path):
    plain = head_model(tmp_path / "plain-head.onnx", size=96, metadata=False)
    server = start_server({"MODEL_PATH": str(plain)})
    body = server.invoke(ZIDANE).json()
    assert body["model"] == "plain-head"
    assert body["detections"]
    assert {d["label"] for d in body["detections"]} <= {"class0", "class1", "class2"}


# --- fail fast --------------------------------------------------------------------------------


def test_no_model_exits_non_zero_at_once_with_one_line(start_server):
    server = start_server({}, wait=False)
    assert_fails_fast_with_one_line(server, "no model")


def test_missing_model_path_exits_non_zero_at_once_with_one_line(start_server, tmp_path):
    server = start_server({"MODEL_PATH": str(tmp_path / "nope.onnx")}, wait=False)
    assert_fails_fast_with_one_line(server, "MODEL_PATH", "nope.onnx")


def test_two_models_exit_non_zero_at_once_with_one_line(start_server, tmp_path, head_model_path):
    model_dir = tmp_path / "ml-model"
    model_dir.mkdir()
    shutil.copy(head_model_path, model_dir / "one.onnx")
    shutil.copy(head_model_path, model_dir / "two.onnx")
    server = start_server({"SAGEMAKER_MODEL_DIR": str(model_dir)}, wait=False)
    assert_fails_fast_with_one_line(
        server, "2 models (.onnx or .xml files)", "one.onnx", "two.onnx", "MODEL_PATH"
    )


@pytest.mark.parametrize(
    "content",
    [b"", b"definitely not protobuf \x00\xff" * 100, b"\x08\x07" + b"\x12" * 40],
    ids=["empty", "garbage", "bad-protobuf"],
)
def test_corrupt_model_exits_non_zero_at_once_with_one_line(start_server, tmp_path, content):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(content)
    server = start_server({"MODEL_PATH": str(broken)}, wait=False)
    assert_fails_fast_with_one_line(server, "broken.onnx")


def test_truncated_model_exits_non_zero_at_once_with_one_line(
    start_server, tmp_path, head_model_path
):
    data = head_model_path.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    server = start_server({"MODEL_PATH": str(cut)}, wait=False)
    assert_fails_fast_with_one_line(server, "cut.onnx")


def test_model_outside_the_contract_exits_non_zero_with_one_line(start_server, tmp_path):
    rows = np.zeros((4, 9), np.float32)  # 9 columns, but metadata says 3 classes (8 columns)
    meta = {"names": '["a", "b", "c"]', "nc": "3", "layout": "raw", "img_size": "64"}
    wrong = constant_model(tmp_path / "wrong.onnx", rows, metadata=meta)
    server = start_server({"MODEL_PATH": str(wrong)}, wait=False)
    assert_fails_fast_with_one_line(server, "9 columns")


def test_bad_environment_value_exits_non_zero_naming_the_variable(start_server, head_model_path):
    server = start_server({"MODEL_PATH": str(head_model_path), "YOLO_CONF": "lots"}, wait=False)
    assert_fails_fast_with_one_line(server, "YOLO_CONF")


def test_port_in_use_exits_non_zero_with_one_line(start_server, head_model_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = start_server(
            {"MODEL_PATH": str(head_model_path), "SAGEMAKER_BIND_TO_PORT": str(port)}, wait=False
        )
        assert_fails_fast_with_one_line(server, str(port))


# --- configuration ----------------------------------------------------------------------------


def test_environment_defaults_apply_to_every_request(start_server, head_model_path):
    server = start_server(
        {"MODEL_PATH": str(head_model_path), "YOLO_CONF": "0.45", "YOLO_MAX_DET": "3"}
    )
    bus = (SAMPLES / "bus.jpg").read_bytes()
    dets = server.invoke(bus).json()["detections"]
    assert len(dets) == 3 and all(d["score"] > 0.45 for d in dets)
    header = "max_det=50,conf=0.25"
    more = server.invoke(bus, X_Amzn_SageMaker_Custom_Attributes=header).json()["detections"]
    assert len(more) > 3 and min(d["score"] for d in more) < 0.45


def test_body_and_pixel_limits_are_configurable(start_server, head_model_path):
    server = start_server(
        {
            "MODEL_PATH": str(head_model_path),
            "MAX_BODY_BYTES": "100000",
            "MAX_IMAGE_PIXELS": "40000",
        }
    )
    assert server.invoke(ZIDANE).status == 413  # 168949 bytes
    small = encode(shapes_image(200, 200, seed=0), ".jpg")
    assert server.invoke(small).status == 200  # 40000 pixels
    big = encode(shapes_image(201, 200, seed=0), ".jpg")
    resp = server.invoke(big)
    assert resp.status == 413 and "40200 pixels" in resp.json()["error"]


def test_batch_transform_payload_limit_is_honoured(start_server, head_model_path):
    server = start_server(
        {
            "MODEL_PATH": str(head_model_path),
            "SAGEMAKER_BATCH": "true",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": "1",
            "SERVE_THREADS": "3",
        }
    )
    params = server.request("GET", "/execution-parameters").json()
    assert params == {
        "MaxConcurrentTransforms": 3,
        "BatchStrategy": "SINGLE_RECORD",
        "MaxPayloadInMB": 1,
    }
    assert server.invoke(ZIDANE + b"\0" * (1024 * 1024)).status == 413
    assert server.invoke(ZIDANE).status == 200


def test_log_level_from_the_environment_hides_request_lines(start_server, head_model_path):
    server = start_server({"MODEL_PATH": str(head_model_path), "LOG_LEVEL": "WARNING"})
    assert server.invoke(ZIDANE).status == 200
    assert not [r for r in server.log_records() if r["message"] == "request"]
    debug = start_server(
        {"MODEL_PATH": str(head_model_path), "SAGEMAKER_CONTAINER_LOG_LEVEL": "10"}
    )
    debug.request("GET", "/ping")
    pings = [r for r in debug.log_records() if r.get("path") == "/ping"]
    assert pings and pings[-1]["level"] == "DEBUG"


# --- internal errors --------------------------------------------------------------------------


def test_internal_error_gets_500_with_a_request_id_that_is_logged_and_server_keeps_serving(
    start_server, tmp_path
):
    server = start_server({"MODEL_PATH": str(flaky_model(tmp_path / "flaky.onnx"))})
    black = encode(np.zeros((64, 64, 3), np.uint8), ".png")
    resp = server.invoke(black, "image/png")
    assert resp.status == 500
    body = resp.json()
    assert body["status"] == 500 and body["request_id"] in body["error"]
    assert "Traceback" not in resp.body.decode() and str(tmp_path) not in resp.body.decode()
    assert resp.headers["x-request-id"] == body["request_id"]
    logged = [r for r in server.log_records() if r.get("request_id") == body["request_id"]]
    assert [r["level"] for r in logged] == ["ERROR", "INFO"]
    assert "Traceback" in logged[0]["exception"] and logged[1]["status"] == 500
    bright = encode(np.full((64, 64, 3), 200, np.uint8), ".png")
    assert server.invoke(bright, "image/png").status == 200


# --- concurrency and shutdown -----------------------------------------------------------------


def _invoke_in_thread(server: ServerProcess, body: bytes) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def run() -> None:
        started = time.monotonic()
        try:
            result["response"] = server.invoke(body)
        except Exception as exc:  # reported by the test
            result["error"] = exc
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


@pytest.mark.slow
def test_ping_and_bad_requests_answer_at_once_while_an_inference_runs(
    start_server, slow_model_path
):
    server = start_server({"MODEL_PATH": str(slow_model_path)})
    thread, result = _invoke_in_thread(server, ZIDANE)
    time.sleep(0.5)  # the request is in the model now (an inference takes seconds)
    assert server.request("GET", "/ping").status == 200
    assert server.invoke(ZIDANE[:5000]).status == 400  # read, decoded and refused meanwhile
    assert thread.is_alive(), "both were answered while the inference was still running"
    thread.join(60)
    assert result["response"].status == 200


@pytest.mark.slow
def test_sigterm_finishes_the_request_in_flight_then_exits_0(start_server, slow_model_path):
    server = start_server({"MODEL_PATH": str(slow_model_path)})
    thread, result = _invoke_in_thread(server, ZIDANE)
    time.sleep(1.0)  # the request is in the model now (an inference takes seconds)
    server.proc.terminate()  # SIGTERM
    time.sleep(0.2)
    with pytest.raises(OSError):  # no longer accepting
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    assert server.wait_exit(timeout=30) == 0
    thread.join(30)
    assert "error" not in result, result
    response = result["response"]
    assert response.status == 200
    assert response.json()["image"] == {"width": 1280, "height": 720}
    records = server.log_records()
    draining = [r for r in records if r["message"] == "draining"]
    assert draining and draining[0]["requests_in_flight"] == 1
    assert records[-1]["message"] == "stopped" and records[-1]["signal"] == "SIGTERM"
    assert [r["status"] for r in records if r.get("path") == "/invocations"] == [200]


def test_sigterm_while_the_model_loads_exits_0_at_once(start_server, slow_model_path):
    server = start_server({"MODEL_PATH": str(slow_model_path)}, wait=False)
    deadline = time.monotonic() + 30
    while "listening" not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.request("GET", "/ping").status == 503  # the warm-up takes seconds
    started = time.monotonic()
    assert server.terminate() == 0
    assert time.monotonic() - started < 3


def test_sigterm_on_an_idle_server_exits_0_at_once(start_server, head_model_path):
    server = start_server({"MODEL_PATH": str(head_model_path)})
    # an idle keep-alive connection must not hold the shutdown up
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    idle.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert idle.recv(100).startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    assert server.terminate() == 0
    assert time.monotonic() - started < 3
    idle.close()
