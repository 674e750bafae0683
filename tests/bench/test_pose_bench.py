"""`python -m bench.pose`: the w6-pose rows (p50, c=4 throughput, CPU ms per request) in each
runtime, here on a narrow model at 128 so that it takes seconds, not the full one at 640/960."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from serve.runtimes import RUNTIMES, installed
from tests.support.checkpoints import build_full_size_pose

pytest.importorskip("psutil", reason="benchmark dependencies: requirements-bench.txt")


def test_full_size_pose_has_the_published_layer_count_and_size():
    net = build_full_size_pose()
    assert len(net.model) == 119  # layers 0..118 of yolov7-w6-pose.yaml
    assert 79e6 < sum(p.numel() for p in net.parameters()) < 81.5e6  # about 80 M


@pytest.mark.slow
def test_pose_bench_writes_a_row_per_size_and_runtime(repo_root, tmp_path):
    command = [sys.executable, "-m", "bench.pose", "--width", "4", "--sizes", "128,192"]
    command += ["--duration", "0.5", "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "pose.json").read_text())
    runtimes = [s for s in RUNTIMES.values() if installed(s)]
    assert len(result["rows"]) >= 2 * len(runtimes)
    assert {(r["img_size"], r["config"]) for r in result["rows"]} >= {
        (size, f"{s.bench}_fp32") for size in (128, 192) for s in runtimes
    }
    for row in result["rows"]:
        assert row["errors"] == 0 and row["p50_ms"] > 0 and row["throughput_rps_c4"] > 0
        assert row["cpu_ms_per_request_c1"] > 0
    assert "w6-pose  128 ort_fp32" in done.stdout


def test_pose_bench_refuses_sizes_that_are_not_multiples_of_64(repo_root):
    command = [sys.executable, "-m", "bench.pose", "--sizes", "600"]
    done = subprocess.run(command, cwd=repo_root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "multiples of 64" in done.stderr
