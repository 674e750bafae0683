"""Issue 27's goal rows and the compute bound, from results shaped as `python -m bench` writes
them (the smoke test runs them on real measurements; here each boundary is pinned)."""

from __future__ import annotations

import pytest

from bench import compute_bound, goals

ZEN4 = "vendor_id\t: AuthenticAMD\ncpu family\t: 25\ncpu MHz\t\t: 3700.000\nflags\t\t: avx2 fma avx512f avx512_vnni avx512_bf16\n"  # noqa: E501
ICE_LAKE = "vendor_id\t: GenuineIntel\ncpu family\t: 6\ncpu MHz\t\t: 3500.000\nflags\t\t: avx2 fma avx512f avx512_vnni\n"  # noqa: E501
AVX2 = "vendor_id\t: AuthenticAMD\ncpu family\t: 23\ncpu MHz\t\t: 3000.000\nflags\t\t: avx2 fma\n"


def test_the_bound_of_issue_27_two_zen4_cores_at_3_7_ghz():
    peak = compute_bound.peak(2, ZEN4)
    assert peak.ops_per_cycle == {"int8": 128, "bf16": 64, "fp32": 32}  # 2 x 256-bit pipes
    assert peak.gops("int8") == pytest.approx(947.2)  # the issue's "about 950"
    assert peak.bound_ms(13.7, "int8") == pytest.approx(14.46, abs=0.01)  # "about 14.5 ms"
    assert peak.how("int8") == "2 cores x 128 int8 ops/cycle (2 x 256-bit) x 3.70 GHz = 947 G ops/s"


def test_512_bit_cores_double_it_and_no_vnni_or_bf16_lowers_it():
    assert compute_bound.peak(1, ICE_LAKE).ops_per_cycle["int8"] == 256
    assert compute_bound.peak(1, ICE_LAKE).ops_per_cycle["bf16"] == 64  # no bf16: as fp32
    old = compute_bound.peak(4, AVX2, ghz=2.0)
    assert old.ops_per_cycle == {"int8": 64, "bf16": 32, "fp32": 32} and old.ghz == 2.0


def run(p50: float, rps: float) -> dict:
    return {"levels": [{"concurrency": 1, "p50_ms": p50, "throughput_rps": 1000 / p50,
                        "cpu_ms_per_request": p50}, {"concurrency": 4, "p50_ms": 4 * p50,
                        "throughput_rps": rps, "cpu_ms_per_request": 1000 / rps}]}  # fmt: skip


def verdict(agreement: float, precision: float, accurate: bool = True) -> dict:
    return {"agreement": agreement, "precision": precision, "recall": 1.0, "matched": 58,
            "fp32_detections": 59, "extra": 0, "accurate": accurate}  # fmt: skip


def results(fast_p50: float, fast_rps: float, slow_accurate: bool) -> dict:
    model = {
        "bare": {"p50_ms": 100.0},
        "pytorch_fastapi": run(200.0, 6.0),
        "configs": {
            "ours": run(110.0, 9.0),
            "fast": run(fast_p50, fast_rps),
            "faster_but_wrong": run(20.0, 60.0),
        },
    }
    return {
        "models": {"yolov7-tiny": model},
        "accuracy": {
            "configurations": {
                "ours": verdict(1.0, 0.989),
                "fast": verdict(0.983, 0.985, slow_accurate),
                "faster_but_wrong": verdict(0.5, 0.7, accurate=False),
            }
        },
    }


def by_goal(found: list[dict]) -> dict[str, dict]:
    return {g["goal"].split(" (")[0].split(",")[0].split(":")[0]: g for g in found}


def test_goals_at_their_boundaries_from_the_fastest_accurate_configuration():
    met = by_goal(goals.evaluate(results(35.0, 30.0, slow_accurate=True)))
    p50 = met["fastest accurate p50 over HTTP"]
    assert p50["config"] == "fast" and p50["measured"] == pytest.approx(0.35) and p50["met"]
    throughput = met["best accurate throughput"]
    assert throughput["measured"] == pytest.approx(5.0) and throughput["met"]
    assert (
        met["its agreement with FP32"]["measured"] == 0.983
        and met["its agreement with FP32"]["met"]
    )
    pr = met["its precision and recall"]
    assert pr["measured"] == pytest.approx(0.004) and pr["met"]

    missed = by_goal(goals.evaluate(results(35.5, 29.9, slow_accurate=True)))
    assert not missed["fastest accurate p50 over HTTP"]["met"]
    assert not missed["best accurate throughput"]["met"]


def test_an_inaccurate_configuration_never_counts():
    found = by_goal(goals.evaluate(results(35.0, 30.0, slow_accurate=False)))
    assert found["fastest accurate p50 over HTTP"]["config"] == "ours"
    assert not found["fastest accurate p50 over HTTP"]["met"]


def test_a_rect_configuration_also_reports_its_like_for_like_ratio():
    """Its ratio is over bare FP32 on the square (the goal's); beside it, over bare FP32 on the
    same rectangles, so that the rectangle's own saving is never taken for INT8's."""
    found = results(30.0, 30.0, slow_accurate=True)
    model = found["models"]["yolov7-tiny"]
    model["bare_rect"] = {"p50_ms": 60.0}
    model["configs"]["fast"]["rect"] = True
    p50 = by_goal(goals.evaluate(found))["fastest accurate p50 over HTTP"]
    assert p50["measured"] == pytest.approx(0.30) and p50["met"]
    assert p50["like_for_like"] == pytest.approx(0.50)
    assert "0.50x bare FP32 on the same rectangles" in p50["detail"]
    model["pytorch_fastapi_rect"] = run(150.0, 10.0)
    throughput = by_goal(goals.evaluate(found))["best accurate throughput"]
    assert throughput["measured"] == pytest.approx(5.0) and throughput["met"]
    assert throughput["like_for_like"] == pytest.approx(3.0)
    assert "3.00x PyTorch on the same rectangles" in throughput["detail"]
    del model["configs"]["fast"]["rect"]  # a square configuration: nothing beside it
    square = by_goal(goals.evaluate(found))
    assert square["fastest accurate p50 over HTTP"]["like_for_like"] is None
    assert square["best accurate throughput"]["like_for_like"] is None
