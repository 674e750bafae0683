"""`python -m bench.multi_model` end to end on the smallest setting: yolov7-tiny at 320, FP32 and
INT8, one load each, two seconds of round robin; its JSON holds every figure the docs quote."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.server import REPO

pytestmark = pytest.mark.slow


def test_the_multi_model_bench_measures_memory_load_and_round_robin(tmp_path):
    out = tmp_path / "multi_model.json"
    command = [
        sys.executable, "-m", "bench.multi_model", "--families", "yolov7-tiny",
        "--img-size", "320", "--copies", "1", "--duration", "2", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    rows = {row["model"]: row for row in report["memory_and_load"]}
    assert set(rows) == {"yolov7-tiny-fp32", "yolov7-tiny-int8"}
    for row in rows.values():
        assert row["rss_per_model_mib"] > row["file_mib"]  # the weights, at least, are resident
        assert row["load_ms"] > 0 and row["first_request_ms"] > 0
    assert rows["yolov7-tiny-int8"]["file_mib"] < rows["yolov7-tiny-fp32"]["file_mib"]
    assert [rate["models"] for rate in report["round_robin"]] == [1, 10, 1]
    assert all(rate["requests_per_s"] > 0 for rate in report["round_robin"])
    assert "models (round robin)" in done.stdout
