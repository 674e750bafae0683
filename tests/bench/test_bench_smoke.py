"""`python -m bench --smoke`: the whole benchmark in seconds, writing a table, JSON and a chart."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest

from bench.load import generate, percentile

for _module in ("fastapi", "uvicorn", "matplotlib", "psutil"):
    if os.environ.get("CI") == "true":  # CI installs them: a missing one is a failure there
        importlib.import_module(_module)
    else:
        pytest.importorskip(_module, reason="benchmark dependencies: requirements-bench.txt")


def test_percentile_interpolates_like_numpy():
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 5.0
    assert percentile(values, 95) == pytest.approx(4.8)
    assert percentile([7.0], 99) == 7.0


def test_load_generator_targets_only_127_0_0_1(tmp_path):
    image = tmp_path / "x.jpg"
    image.write_bytes(b"\xff\xd8\xff")
    for url in ("http://localhost:8080", "http://10.0.0.1:8080", "http://127.0.0.1"):
        with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
            generate(url, [image], 1, 0.1)


def test_smoke_run_writes_results_with_every_measurement_and_the_ratios(repo_root, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ours/limit p50 c=1" in done.stdout and "ours/pytorch throughput c=4" in done.stdout

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["machine"]["cpu_model"] and results["machine"]["cpus_available"] >= 1
    tiny = results["models"]["yolov7-tiny"]
    assert tiny["size"]["params_m"] == pytest.approx(6.2, rel=0.05)
    assert tiny["size"]["gflops"] == pytest.approx(13.8, rel=0.05)
    assert tiny["bare"]["p50_ms"] > 0 and tiny["pipeline"]["p50_ms"] > 0
    for server in ("ours", "pytorch_fastapi"):
        levels = tiny[server]["levels"]
        assert [run["concurrency"] for run in levels] == [1, 4]
        for run in levels:
            assert run["requests"] > 0 and run["errors"] == 0
            assert run["p50_ms"] <= run["p95_ms"] <= run["p99_ms"]
            assert run["throughput_rps"] > 0 and run["cpu_cores_busy"] > 0
            assert run["rss_peak_mb"] > 10
        assert 0 < tiny[server]["cold_starts_s"][0] < 180
    ratios = tiny["ratios"]
    assert ratios["ours_over_limit_p50_c1"] > 0
    assert ratios["ours_over_pytorch_throughput_c4"] > 0
    assert set(tiny["targets"]) == {
        "p50_c1_within_1.15x_limit",
        "throughput_c4_at_least_2x_pytorch",
        "cold_start_under_2s",
        "peak_rss_under_300mb",
    }
    assert all(isinstance(t["met"], bool) for t in tiny["targets"].values())
    variants = tiny["variants"]
    assert [b["level"] for b in variants["optimization_levels_bare"]] == [
        "disable",
        "basic",
        "extended",
        "all",
    ]
    assert set(variants["servers"]) == {"end2end", "intra_op_1", "inter_op_2", "int8"}
    accuracy = results["int8_accuracy"]
    assert 0 <= accuracy["int8"]["precision"] <= 1 and 0 <= accuracy["int8"]["recall"] <= 1
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
