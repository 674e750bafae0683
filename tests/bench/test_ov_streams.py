"""`python -m bench.ov_streams` (docs/bench.md, "OpenVINO's THROUGHPUT hint"): it runs end to end
on each model the server serves with OpenVINO and prints every layout's rate."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytest.importorskip("openvino")


def test_every_model_runs_in_every_layout(repo_root):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.ov_streams",
            "--img-size",
            "320",
            "--seconds",
            "0.3",
            "--rounds",
            "1",
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rates = re.findall(r"^  (FP32|INT8 \(\S+ \w+\)).*?(\d+\.\d+) img/s", done.stdout, re.M)
    models = {model for model, _ in rates}
    assert models == {"FP32", "INT8 (onnxruntime's QDQ)", "INT8 (NNCF's IR)"}, done.stdout
    assert len(rates) == 9 and all(float(rate) > 0 for _, rate in rates), done.stdout
