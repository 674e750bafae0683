"""`python -m export --precision int8`: a calibrated QDQ model the server runs unchanged, judged
against FP32 on held-out images, refused when it falls under the agreement bar (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

import export.cli
from demo.evaluate import Tally, match
from demo.shapes import make_image, write_samples
from export.cli import MIN_AGREEMENT, main
from export.quantize import float_tail
from tests.support.server import local_server


def write_shapes(folder: Path, count: int, seed: int) -> Path:
    """`count` generated 320x320 shape images in `folder` (and their truth.json)."""
    return write_samples(folder, count, seed, sizes=[(320, 320)]).parent


@pytest.fixture
def exported(int8_export) -> dict:
    return int8_export


def metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_int8_model_is_qdq_with_the_head_and_decode_left_float(exported):
    int8 = onnx.load(str(exported["int8"]))
    fp32 = onnx.load(str(exported["fp32"]))
    ops = [n.op_type for n in int8.graph.node]
    assert ops.count("QuantizeLinear") > 50 and ops.count("DequantizeLinear") > 50
    weights = {i.name: i for i in int8.graph.initializer}
    produced_by = {out: n for n in int8.graph.node for out in n.output}
    convs = [n for n in int8.graph.node if n.op_type == "Conv"]
    float_convs = [n for n in convs if n.input[1] in weights]
    quantized_convs = [n for n in convs if produced_by.get(n.input[1]) is not None]
    # the bundled model's head: three 1x1 convs (one per stride), 3 * (5 + nc) = 24 channels out
    assert len(float_convs) == 3
    assert all(weights[n.input[1]].data_type == onnx.TensorProto.FLOAT for n in float_convs)
    assert all(
        list(weights[n.input[1]].dims[:2]) == [24, weights[n.input[1]].dims[1]] for n in float_convs
    )
    assert len(quantized_convs) == len(convs) - 3
    assert all(produced_by[n.input[1]].op_type == "DequantizeLinear" for n in quantized_convs)
    # the decode (Sigmoid and what follows) is float: no Q/DQ node after the head convs
    tail = set(float_tail(fp32)) - {n.name for n in fp32.graph.node if n.op_type == "Conv"}
    assert tail and {n.name for n in int8.graph.node if n.op_type == "Sigmoid"} <= tail
    for node in int8.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            assert node.name not in tail
    assert [i.name for i in int8.graph.input] == ["images"]
    assert [o.name for o in int8.graph.output] == ["output"]
    assert exported["int8"].stat().st_size < exported["fp32"].stat().st_size / 3


def test_int8_metadata_carries_precision_settings_and_measured_agreement(exported):
    meta, base = metadata(exported["int8"]), metadata(exported["fp32"])
    assert base["precision"] == "fp32" and meta["precision"] == "int8"
    for key in ("names", "nc", "strides", "img_size", "layout", "model_name"):
        assert meta[key] == base[key]
    settings = json.loads(meta["quantization"])
    assert settings["format"] == "QDQ"
    assert settings["activation_type"] == "QUInt8" and settings["weight_type"] == "QInt8"
    assert settings["calibration_images"] == 48  # 64 images, every 4th held out
    figures = json.loads(meta["int8_vs_fp32"])
    assert figures["held_out_images"] == 16
    assert figures["fp32_detections"] > 30  # 1-6 shapes per image
    assert float(meta["int8_agreement"]) == pytest.approx(
        figures["matched"] / figures["fp32_detections"], abs=1e-4
    )
    assert float(meta["int8_agreement"]) >= MIN_AGREEMENT
    assert 0 <= figures["mean_box_shift_px"] <= figures["max_box_shift_px"] < 4
    assert figures["fp32_p50_ms"] > 0 and figures["int8_p50_ms"] > 0
    assert figures["accepted_below_min"] is False


def test_summary_prints_the_int8_figures_like_the_pytorch_line(exported):
    lines = exported["stdout"].splitlines()
    vs_fp32 = next(line for line in lines if line.startswith("  vs FP32 "))
    figures = json.loads(metadata(exported["int8"])["int8_vs_fp32"])
    assert f"({figures['matched']}/{figures['fp32_detections']} FP32 detections" in vs_fp32
    assert "16 held-out images" in vs_fp32 and "box shift mean" in vs_fp32 and "x)" in vs_fp32
    precision = next(line for line in lines if line.startswith("  precision "))
    assert "QDQ U8S8" in precision and "48 calibration images" in precision
    assert any(line.startswith("  vs PyTorch ") for line in lines)


def served_tally(
    model: Path, images: list[tuple[np.ndarray, list]], env: dict[str, str] | None = None
) -> Tally:
    import urllib.request

    total = Tally()
    with local_server(model, env) as server:
        for image, shapes in images:
            ok, png = cv2.imencode(".png", image)
            assert ok
            request = urllib.request.Request(
                f"{server.url}/invocations",
                data=png.tobytes(),
                headers={"Content-Type": "image/png"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                found = json.loads(response.read())["detections"]
            truth = [{"box": s.box, "class_id": s.class_id} for s in shapes]
            total.add(match(found, truth, min_iou=0.5))
    return total


def test_server_serves_int8_unchanged_with_fp32_precision_and_recall(exported):
    rng = np.random.default_rng(2024)  # unseen images, as tests/demo/test_accuracy.py uses
    images = [make_image(rng, 320, 320) for _ in range(40)]
    fp32, int8 = served_tally(exported["fp32"], images), served_tally(exported["int8"], images)
    print(
        f"precision {fp32.precision:.3f} -> {int8.precision:.3f}, "
        f"recall {fp32.recall:.3f} -> {int8.recall:.3f}"
    )
    assert int8.true_positives + int8.false_negatives > 100
    assert abs(int8.precision - fp32.precision) <= 0.01
    assert abs(int8.recall - fp32.recall) <= 0.01


def test_under_the_agreement_bar_exits_2_and_writes_nothing(
    exported, monkeypatch, capsys, tmp_path
):
    monkeypatch.setattr(export.cli, "MIN_AGREEMENT", 1.01)  # a bar no model can clear
    calibration = write_shapes(tmp_path / "few", 16, seed=9)
    output = tmp_path / "refused.onnx"
    args = ["--img-size", "320", "--precision", "int8", "--calibration", str(calibration)]
    assert main([*args, "--output", str(output)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "under the required 1.01" in err and "nothing was written" in err
    assert "--accept-accuracy-loss" in err
    assert list(tmp_path.glob("*.onnx*")) == [] and not output.exists()

    accepted = tmp_path / "accepted.onnx"
    assert main([*args, "--output", str(accepted), "--accept-accuracy-loss"]) == 0
    captured = capsys.readouterr()
    assert "writing it anyway" in captured.err and "vs FP32" in captured.out
    figures = json.loads(metadata(accepted)["int8_vs_fp32"])
    assert figures["accepted_below_min"] is True and figures["min_agreement"] == 1.01


def run_main_expecting_error(capsys, argv: list[str], tmp_path: Path) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert list(tmp_path.glob("*.onnx*")) == []
    return err


def _empty_dir(tmp: Path) -> Path:
    (tmp / "empty").mkdir()
    return tmp / "empty"


def _dir_without_images(tmp: Path) -> Path:
    (tmp / "text").mkdir()
    (tmp / "text" / "notes.txt").write_text("not an image")
    return tmp / "text"


def _a_file(tmp: Path) -> Path:
    write_shapes(tmp / "images", 1, seed=1)
    return tmp / "images" / "shapes-00.png"


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda tmp: tmp / "missing", "not found"),
        (_empty_dir, "has no images"),
        (_dir_without_images, "has no images"),
        (lambda tmp: write_shapes(tmp / "few", 8, seed=1), "needs at least 16"),
        (_a_file, "directory of images"),
    ],
    ids=["missing", "empty", "no-images", "too-few", "a-file"],
)
def test_bad_calibration_input_is_one_line_and_exit_2(make, expected, capsys, tmp_path):
    folder = make(tmp_path)
    out = tmp_path / "out.onnx"
    argv = ["--precision", "int8", "--calibration", str(folder), "--output", str(out)]
    assert expected in run_main_expecting_error(capsys, argv, tmp_path)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--calibration", "samples"], "--calibration is only for --precision int8"),
        (["--precision", "int8"], "needs --calibration"),
        (["--accept-accuracy-loss"], "only for --precision int8"),
        (["--int8-runtime", "openvino"], "--int8-runtime is only for --precision int8"),
        (["--int8-quantizer", "nncf"], "--int8-quantizer is only for --precision int8"),
        (["--precision", "int4"], "invalid choice"),
    ],
)
def test_inconsistent_precision_options_are_refused(argv, expected, capsys, tmp_path):
    argv = [*argv, "--output", str(tmp_path / "out.onnx")]
    if expected == "invalid choice":  # argparse's own error path: SystemExit(2)
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert expected in capsys.readouterr().err
        return
    assert expected in run_main_expecting_error(capsys, argv, tmp_path)


def test_an_unreadable_calibration_image_is_named(capsys, tmp_path):
    folder = write_shapes(tmp_path / "images", 16, seed=3)
    (folder / "shape-000.png").write_bytes(b"not a png")
    argv = ["--img-size", "320", "--precision", "int8", "--calibration", str(folder)]
    err = run_main_expecting_error(capsys, [*argv, "--output", str(tmp_path / "o.onnx")], tmp_path)
    assert "not readable" in err and "shape-000.png" in err
