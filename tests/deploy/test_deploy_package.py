"""`package`: the model archive (an ONNX, or an OpenVINO IR's two files), and what is not a
model refused."""

from __future__ import annotations

import hashlib
import tarfile

from deploy import artifacts


def test_the_archive_holds_only_the_onnx_at_its_root(tmp_path):
    onnx = tmp_path / "detector.onnx"
    onnx.write_bytes(b"\x08\x07" * 100)
    archive = artifacts.build_archive(onnx, tmp_path / "model.tar.gz")
    with tarfile.open(archive) as tar:
        (member,) = tar.getmembers()
    assert (member.name, member.size, member.uid, member.mode) == ("detector.onnx", 200, 0, 0o644)


def test_an_openvino_ir_is_archived_as_its_two_files(tmp_path):
    xml, weights = tmp_path / "detector.xml", tmp_path / "detector.bin"
    xml.write_text("<net/>")
    weights.write_bytes(b"\x01" * 300)
    archive = artifacts.build_archive(xml, tmp_path / "model.tar.gz")
    with tarfile.open(archive) as tar:
        found = [(m.name, m.size, m.uid, m.mode) for m in tar.getmembers()]
    assert found == [("detector.xml", 6, 0, 0o644), ("detector.bin", 300, 0, 0o644)]
    assert artifacts.model_bytes(xml) == 306
    assert artifacts.model_sha256(xml) == hashlib.sha256(b"<net/>" + b"\x01" * 300).hexdigest()
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"\x08" * 10)
    assert artifacts.model_sha256(onnx) == artifacts.sha256(onnx)


def test_package_refuses_an_ir_without_its_bin(moto, cli, tmp_path):
    (tmp_path / "detector.xml").write_text("<net/>")
    result = cli("package", tmp_path / "detector.xml")
    assert result.code == 2
    assert result.error_line().startswith("error: ")
    assert "detector.bin are not beside it" in result.err


def test_package_refuses_what_is_not_an_onnx(moto, cli, tmp_path):
    (tmp_path / "weights.pt").write_bytes(b"x")
    result = cli("package", tmp_path / "weights.pt")
    assert result.code == 2
    assert result.error_line().startswith("error: ")
    assert "is not an .onnx file" in result.err
