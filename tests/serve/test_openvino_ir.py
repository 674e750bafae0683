"""An OpenVINO IR INT8 export (`python -m export --int8-format ir`) served: found as an .onnx is
found, run by OpenVINO (picked for it when SERVE_RUNTIME is not set), started on its float view
(NNCF's FakeQuantize nodes bypassed, its int8 weights folded) before the INT8 graph takes over;
an IR without its .bin, or with another runtime asked for, cannot start, in one line."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from demo.evaluate import Tally, match
from demo.shapes import make_image
from export.agreement import match_detections
from serve.errors import ModelError
from serve.locate import locate_model, model_bytes, model_files
from serve.multi_model import BadModel, model_file
from tests.serve.test_openvino_int8_start import _as_dicts, _compiled, _detect, _ops
from tests.serve.test_runtimes import CPU_BF16, served
from tests.serve.test_serve_lifecycle import assert_fails_fast_with_one_line
from tests.support.images import encode, shapes_image

ov = pytest.importorskip("openvino")
passes = pytest.importorskip("openvino.passes")


def copy_ir(xml: Path, folder: Path, bin_too: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(xml, folder / "model.xml")
    if bin_too:
        shutil.copy(xml.with_suffix(".bin"), folder / "model.bin")
    return folder / "model.xml"


# --- finding the model ------------------------------------------------------------------------


def test_the_locator_finds_an_ir_as_it_finds_an_onnx_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "model.xml").write_text("<net/>")
    (tmp_path / "sub" / "model.bin").write_bytes(b"\0" * 10)
    (tmp_path / "._model.xml").write_text("macOS companion")
    assert model_files(tmp_path) == [tmp_path / "sub" / "model.xml"]
    assert locate_model(None, str(tmp_path), "/nowhere.onnx") == tmp_path / "sub" / "model.xml"
    assert model_bytes(tmp_path / "sub" / "model.xml") == len("<net/>") + 10
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    with pytest.raises(ModelError, match=r"found 2 models \(\.onnx or \.xml files\)"):
        locate_model(None, str(tmp_path), "/nowhere.onnx")


def test_an_ir_without_its_bin_is_a_model_error_naming_it(tmp_path):
    (tmp_path / "model.xml").write_text("<net/>")
    for found in (
        lambda: locate_model(None, str(tmp_path), "/nowhere.onnx"),
        lambda: locate_model(str(tmp_path / "model.xml"), str(tmp_path), "/nowhere.onnx"),
    ):
        with pytest.raises(ModelError, match=r"model\.bin are not beside it"):
            found()
    with pytest.raises(BadModel) as refused:  # the multi-model server's 400
        model_file(str(tmp_path), tmp_path)
    assert "model.bin are not beside it" in refused.value.description


def test_the_multi_model_server_finds_an_ir_in_its_directory(tmp_path, ir_export):
    xml = copy_ir(ir_export["ir"], tmp_path / "models" / "a")
    assert model_file(str(tmp_path / "models" / "a"), tmp_path / "models") == xml


def test_an_ir_picks_openvino_unless_another_runtime_was_asked_for():
    from serve.config import ConfigError
    from serve.runtimes.precision import choose, for_ir

    default = choose("onnxruntime", "fp32", frozenset())
    picked = for_ir(default, runtime_asked=False, asked="fp32", flags=frozenset())
    assert (picked.runtime, picked.precision) == ("openvino", "fp32")
    asked = choose("openvino", "fp32", frozenset())
    assert for_ir(asked, runtime_asked=True, asked="fp32", flags=frozenset()) is asked
    with pytest.raises(ConfigError, match="SERVE_RUNTIME=onnxruntime cannot read"):
        for_ir(default, runtime_asked=True, asked="fp32", flags=frozenset())


def test_the_setting_records_whether_serve_runtime_was_set():
    from serve.config import Settings

    assert not Settings.from_env({}).runtime_asked
    assert not Settings.from_env({"SERVE_RUNTIME": " "}).runtime_asked
    chosen = Settings.from_env({"SERVE_RUNTIME": "onnxruntime"})
    assert chosen.runtime_asked and chosen.runtime == "onnxruntime"


# --- starting ---------------------------------------------------------------------------------


def test_an_ir_in_the_model_dir_is_served_by_openvino_unasked(start_server, ir_export, tmp_path):
    model_dir = tmp_path / "opt-ml-model"
    copy_ir(ir_export["ir"], model_dir)
    server = start_server({"SAGEMAKER_MODEL_DIR": str(model_dir)})
    ready = next(r for r in server.log_records() if r["message"] == "ready")
    assert ready["runtime"] == "openvino" and ready["precision_why"].endswith("OpenVINO IR model")
    assert ready["model"] == "shapes-yolov7-tiny"
    assert served(server, encode(shapes_image(320, 320, seed=3), ".png"))


def test_an_ir_starts_on_its_float_view_and_int8_takes_over(start_server, ir_export):
    server = start_server({"MODEL_PATH": str(ir_export["ir"]), "SERVE_RUNTIME": "openvino"})
    float_precision = "bf16" if CPU_BF16 else "fp32"
    ready = next(r for r in server.log_records() if r["message"] == "ready")
    assert (ready["precision"], ready["compiling"]) == (float_precision, "int8")
    data = encode(shapes_image(320, 320, seed=3), ".png")
    assert served(server, data)  # the view answers while the INT8 graph compiles
    deadline = time.monotonic() + 60
    while "compiling" in (ping := server.request("GET", "/ping").json()):
        assert time.monotonic() < deadline, "the INT8 compile did not arrive"
        time.sleep(0.05)
    assert (ping["runtime"], ping["precision"]) == ("openvino", "int8")
    assert served(server, data)


def test_an_ir_without_its_bin_cannot_start(start_server, ir_export, tmp_path):
    xml = copy_ir(ir_export["ir"], tmp_path / "m", bin_too=False)
    server = start_server({"MODEL_PATH": str(xml)}, wait=False)
    assert_fails_fast_with_one_line(server, "model.bin", "not beside it")


def test_an_ir_with_onnxruntime_asked_cannot_start(start_server, ir_export):
    server = start_server(
        {"MODEL_PATH": str(ir_export["ir"]), "SERVE_RUNTIME": "onnxruntime"}, wait=False
    )
    assert_fails_fast_with_one_line(server, "OpenVINO IR", "SERVE_RUNTIME=openvino")


# --- the float view ---------------------------------------------------------------------------


def test_the_ir_view_is_the_fp32_graph_with_no_quantization_left(ir_export):
    from serve.runtimes.openvino_float_view import float_view

    core = ov.Core()
    int8, fp32 = core.read_model(str(ir_export["ir"])), core.read_model(str(ir_export["fp32"]))
    view = float_view(int8)
    assert view is not None
    folding = passes.Manager()
    folding.register_pass(passes.ConstantFolding())
    folding.run_passes(fp32)
    ops = _ops(view)
    assert "FakeQuantize" not in ops and "Convert" not in ops
    assert ops == _ops(fp32)
    assert "FakeQuantize" in _ops(int8), "the original is left as it was"


def test_the_ir_view_is_as_accurate_as_fp32(ir_export):
    """Agreement >= 0.97 with FP32 and precision and recall within 0.01 of FP32's, as the view of
    an ONNX INT8 export (tests/serve/test_openvino_int8_start.py)."""
    from serve.runtimes.openvino_float_view import float_view

    reference = ort.InferenceSession(str(ir_export["fp32"]), providers=["CPUExecutionProvider"])
    view = _compiled(float_view(ov.Core().read_model(str(ir_export["ir"]))), "fp32")
    runs = {
        "fp32": lambda t: reference.run(None, {"images": t})[0],
        "view": lambda t: view.create_infer_request().infer({0: t})[0],
    }
    tallies = {name: Tally() for name in runs}
    total = matched = 0
    rng = np.random.default_rng(11)
    for _ in range(40):
        image, shapes = make_image(rng)
        truth = [{"box": s.box, "class_id": s.class_id} for s in shapes]
        found = {name: _detect(run, image) for name, run in runs.items()}
        for name, rows in found.items():
            tallies[name].add(match(_as_dicts(rows), truth))
        total += len(found["fp32"])
        matched += len(match_detections(found["fp32"], found["view"]))
    assert total > 60 and matched / total >= 0.97, (matched, total)
    for figure in ("precision", "recall"):
        fp32, view_figure = getattr(tallies["fp32"], figure), getattr(tallies["view"], figure)
        assert abs(view_figure - fp32) <= 0.01, (figure, fp32, view_figure)
