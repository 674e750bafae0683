"""A checkpoint is a pickle: nothing outside the allow-list may be resolved, let alone run."""

from __future__ import annotations

import builtins
import importlib
import io
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from export.errors import ExportError
from export.safe_load import load_checkpoint
from tests.support.checkpoints import build_model, checkpoint_dict, save_checkpoint


class Payload:
    """Pickles as a call of `func(*args)`: what a malicious checkpoint smuggles in."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def marker_command(marker: Path) -> str:
    return f"touch {marker}"


def payloads(marker: Path) -> dict[str, Payload]:
    touch = marker_command(marker)
    return {
        "os.system": Payload(os.system, touch),
        "subprocess.Popen": Payload(subprocess.Popen, ["touch", str(marker)]),
        "builtins.eval": Payload(builtins.eval, f"open({str(marker)!r}, 'w')"),
        "builtins.exec": Payload(builtins.exec, f"open({str(marker)!r}, 'w')"),
        "importlib.import_module": Payload(importlib.import_module, "this"),
    }


@pytest.mark.parametrize(
    "kind",
    ["os.system", "subprocess.Popen", "builtins.eval", "builtins.exec", "importlib.import_module"],
)
@pytest.mark.parametrize("where", ["best_fitness", "ema", "top_level"])
def test_malicious_checkpoint_is_refused_and_its_payload_never_runs(tmp_path, kind, where):
    marker = tmp_path / "pwned"
    payload = payloads(marker)[kind]
    net = build_model("yolov7-tiny", nc=2)
    ckpt = checkpoint_dict(net, "training")
    if where == "top_level":
        ckpt = payload
    else:
        ckpt[where] = payload
    path = save_checkpoint(ckpt, tmp_path / "evil.pt")
    with pytest.raises(ExportError) as refused:
        load_checkpoint(path)
    message = str(refused.value)
    assert "refused" in message
    assert kind.split(".")[-1] in message  # names the global
    assert not marker.exists()


def test_payload_hidden_in_a_tensor_storage_is_refused(tmp_path):
    """A tensor rebuilt through a non-allow-listed function (here: eval) is refused."""
    marker = tmp_path / "pwned"

    class EvilTensor:
        def __reduce__(self):
            return builtins.eval, (f"open({str(marker)!r}, 'w')",)

    net = build_model("yolov7-tiny", nc=2)
    ckpt = checkpoint_dict(net, "stripped")
    ckpt["model"].model[0].conv._parameters["weight"] = EvilTensor()
    path = save_checkpoint(ckpt, tmp_path / "evil-tensor.pt")
    with pytest.raises(ExportError, match=r"builtin_*\.eval"):
        load_checkpoint(path)
    assert not marker.exists()


def test_unknown_class_in_the_pickle_is_refused_by_name(tmp_path):
    payload = pickle.dumps({"model": Path("/etc/passwd")}, protocol=2)
    path = tmp_path / "unknown.pt"
    with zipfile.ZipFile(path, "w") as archive:  # a zip checkpoint whose data.pkl names pathlib
        archive.writestr("unknown/data.pkl", payload)
        archive.writestr("unknown/version", "3\n")
    with pytest.raises(ExportError, match=r"pathlib\.\w*Path"):
        load_checkpoint(path)


def test_refusal_via_the_cli_is_one_line_exit_2_and_no_output(tmp_path, repo_root):
    marker = tmp_path / "pwned"
    path = save_checkpoint(payloads(marker)["os.system"], tmp_path / "evil.pt")
    output = tmp_path / "model.onnx"
    result = subprocess.run(
        [sys.executable, "-m", "export", "--weights", str(path), "--output", str(output)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused" in lines[0] and "system" in lines[0]
    assert "Traceback" not in result.stderr
    assert not marker.exists()
    assert not output.exists()


# torch warns that it cannot store the source of our classes in the legacy format
@pytest.mark.filterwarnings("ignore:Couldn't retrieve source code")
def test_legacy_format_payload_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save(
        {"model": payloads(marker)["os.system"]}, buffer, _use_new_zipfile_serialization=False
    )
    path = tmp_path / "legacy-evil.pt"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(ExportError, match="system"):
        load_checkpoint(path)
    assert not marker.exists()
