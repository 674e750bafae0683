"""What tests/export/test_safety.py leaves out: payloads that are proved live (plain pickle runs
them and the marker file appears), hand-written opcodes (GLOBAL, INST, an importlib chain),
payloads deep inside `ema` and inside a numpy `best_fitness`, in a storage's type slot, bytes of a
pickle inside a storage blob, and a TorchScript archive (torch.load hands it to torch.jit.load)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from export.errors import ExportError
from export.safe_load import load_checkpoint
from tests.support.checkpoints import build_model, checkpoint_dict, save_checkpoint


def _text(value: str) -> bytes:
    return value.encode() + b"\n"


def raw_payloads(marker: Path) -> dict[str, bytes]:
    """Pickles written opcode by opcode; each one, unpickled naively, creates `marker`."""
    touch = _text(f"touch {marker}")
    opened = _text(f"open({str(marker)!r}, 'w')")
    return {
        # protocol 0 GLOBAL + REDUCE
        "GLOBAL os.system": b"cos\nsystem\n(V" + touch + b"tR.",
        # INST: calls the named global with the marked arguments
        "INST os.system": b"(V" + touch + b"ios\nsystem\n.",
        "GLOBAL posix.system": b"cposix\nsystem\n(V" + touch + b"tR.",
        "subprocess.call": b"csubprocess\ncall\n((Vtouch\nV" + _text(str(marker)) + b"ltR.",
        "builtins.exec": b"cbuiltins\nexec\n(V" + opened + b"tR.",
        "builtins.eval": b"cbuiltins\neval\n(V" + opened + b"tR.",
        # getattr(importlib.import_module("os"), "system")("touch ...")
        "importlib chain": b"cbuiltins\ngetattr\n(cimportlib\nimport_module\n(Vos\ntRVsystem\ntR(V"
        + touch
        + b"tR.",
        "builtins.__import__ chain": b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(Vos\ntR"
        b"Vsystem\ntR(V" + touch + b"tR.",
        # a dict whose value is the payload: the checkpoint's own layout
        "in a dict value": b"(dVbest_fitness\ncos\nsystem\n(V" + touch + b"tRs.",
    }


def as_torch_zip(data_pkl: bytes, path: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/version", "3\n")
        archive.writestr("archive/byteorder", "little")
        for name, data in (extra or {}).items():
            archive.writestr(f"archive/{name}", data)
    return path


def naive_unpickle_in_a_subprocess(data: bytes, tmp_path: Path) -> None:
    """What `pickle.load` (and so `torch.load(weights_only=False)`) would do with the bytes."""
    source = tmp_path / "payload.pkl"
    source.write_bytes(data)
    code = f"import pickle; pickle.loads(open({str(source)!r}, 'rb').read())"
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=False)


def assert_refused(path: Path, marker: Path) -> str:
    with pytest.raises(ExportError) as refused:
        load_checkpoint(path)
    assert not marker.exists(), "the payload ran"
    message = str(refused.value)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize("kind", list(raw_payloads(Path("m"))))
def test_live_payload_is_refused_as_zip_and_as_raw_pickle_and_never_runs(tmp_path, kind):
    marker = tmp_path / "pwned"
    data = raw_payloads(marker)[kind]
    naive_unpickle_in_a_subprocess(data, tmp_path)
    assert marker.exists(), "the payload is live: plain pickle runs it"
    marker.unlink()

    zipped = as_torch_zip(data, tmp_path / "evil.pt")
    assert "refused" in assert_refused(zipped, marker)
    raw = tmp_path / "evil-raw.pt"
    raw.write_bytes(data)  # no zip: torch.load reads it as the legacy format
    assert "refused" in assert_refused(raw, marker)


class Payload:
    def __init__(self, func: Callable, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _os_system(marker: Path) -> Payload:
    import os

    return Payload(os.system, f"touch {marker}")


def test_payload_deep_inside_the_ema_model_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = checkpoint_dict(build_model("yolov7-tiny", nc=2), "training")
    ckpt["ema"].model[3].conv.evil = _os_system(marker)  # an attribute of a layer of the EMA
    path = save_checkpoint(ckpt, tmp_path / "evil-ema.pt")
    assert "system" in assert_refused(path, marker)


def test_payload_inside_a_numpy_best_fitness_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = checkpoint_dict(build_model("yolov7-tiny", nc=2), "training")
    fitness = np.empty(2, dtype=object)
    fitness[:] = [0.43, _os_system(marker)]
    ckpt["best_fitness"] = fitness
    path = save_checkpoint(ckpt, tmp_path / "evil-fitness.pt")
    assert "system" in assert_refused(path, marker)


def test_payload_in_the_storage_type_slot_of_a_tensor_is_refused(tmp_path):
    """A persistent id ('storage', TYPE, key, location, numel) whose TYPE is os.system."""
    marker = tmp_path / "pwned"
    data = (
        b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n"
        b"((Vstorage\ncos\nsystem\nV0\nVcpu\nK\x04tQK\x00K\x04\x85K\x01\x85\x89ccollections\n"
        b"OrderedDict\n)RtR."
    )
    path = as_torch_zip(data, tmp_path / "evil-storage-type.pt", {"data/0": bytes(16)})
    assert "os.system" in assert_refused(path, marker)


def test_pickle_bytes_inside_a_storage_blob_are_read_as_numbers_never_run(tmp_path):
    marker = tmp_path / "pwned"
    good = save_checkpoint(
        checkpoint_dict(build_model("yolov7-tiny", nc=2), "stripped"), tmp_path / "good.pt"
    )
    payload = raw_payloads(marker)["GLOBAL os.system"]
    evil = tmp_path / "evil-blob.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(evil, "w") as dst:
        blobs = [n for n in src.namelist() if "/data/" in n]
        biggest = max(blobs, key=lambda n: src.getinfo(n).file_size)
        for name in src.namelist():
            data = src.read(name)
            if name == biggest:
                data = (payload * (len(data) // len(payload) + 1))[: len(data)]
            dst.writestr(name, data)
    checkpoint = load_checkpoint(evil)  # storages are raw bytes: loaded, never unpickled
    assert checkpoint.source_key == "model"
    assert not marker.exists()


def test_unregistered_pickle_extension_code_is_a_clean_refusal(tmp_path):
    path = as_torch_zip(b"\x80\x02\x82\x01.", tmp_path / "ext.pt")  # EXT1 1
    assert_refused(path, tmp_path / "pwned")


_TORCHSCRIPT = textwrap.dedent(
    """
    import sys
    from typing import Tuple

    import torch

    @torch.jit.script
    class Payload:
        def __init__(self, path: str):
            self.path = path

        def __getstate__(self) -> Tuple[str, int]:
            return (self.path, 0)

        def __setstate__(self, state: Tuple[str, int]) -> None:
            self.path = state[0]
            torch.from_file(self.path, shared=True, size=8)  # creates the file

    class Evil(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = Payload(sys.argv[1])

        def forward(self, x):
            return x

    torch.jit.script(Evil()).save(sys.argv[2])
    """
)


def test_torchscript_archive_is_refused_before_torch_jit_load_compiles_its_code(tmp_path):
    marker = tmp_path / "pwned"
    script = tmp_path / "make_torchscript.py"
    script.write_text(_TORCHSCRIPT)
    path = tmp_path / "evil-torchscript.pt"
    subprocess.run([sys.executable, str(script), str(marker), str(path)], check=True, timeout=120)
    marker.unlink(missing_ok=True)
    with zipfile.ZipFile(path) as archive:
        assert any(name.endswith("constants.pkl") for name in archive.namelist())
    message = assert_refused(path, marker)
    assert "TorchScript" in message and "refused" in message


def test_plain_pickle_of_a_whole_checkpoint_still_loads(tmp_path):
    """The allow-list is not a refuse-everything: the official layout passes (control case)."""
    ckpt = checkpoint_dict(build_model("yolov7-tiny", nc=2), "training")
    path = save_checkpoint(ckpt, tmp_path / "fine.pt")
    assert load_checkpoint(path).source_key == "ema"
