"""`package`: the model archive, and what is not an ONNX refused."""

from __future__ import annotations

import tarfile

from deploy import artifacts


def test_the_archive_holds_only_the_onnx_at_its_root(tmp_path):
    onnx = tmp_path / "detector.onnx"
    onnx.write_bytes(b"\x08\x07" * 100)
    archive = artifacts.build_archive(onnx, tmp_path / "model.tar.gz")
    with tarfile.open(archive) as tar:
        (member,) = tar.getmembers()
    assert (member.name, member.size, member.uid, member.mode) == ("detector.onnx", 200, 0, 0o644)


def test_package_refuses_what_is_not_an_onnx(moto, cli, tmp_path):
    (tmp_path / "weights.pt").write_bytes(b"x")
    result = cli("package", tmp_path / "weights.pt")
    assert result.code == 2
    assert result.error_line().startswith("error: ")
    assert "is not an .onnx file" in result.err
