"""The soak, short form (CI): 20 s of mixed good and bad requests at concurrency 8."""

from __future__ import annotations

import pytest

from tests.support.reliability import run_soak

# A 20 s soak.
pytestmark = pytest.mark.slow


def test_twenty_second_soak_loses_no_good_request_and_memory_stays_flat(
    head_model_path, tmp_path, repo_root
):
    report = run_soak(
        repo_root, tmp_path / "soak.json", head_model_path, duration=20, concurrency=8, warm_up=5
    )
    assert report["ok"] and report["good_lost"] == 0 and report["server_errors"] == 0
    assert report["bad_unexpected"] == 0 and report["client_exceptions"] == 0
    assert report["good_requests"] > 100 and report["bad_requests"] > 100
    assert not [status for status in report["by_status"] if status.startswith("5")]
    assert report["rss_growth_pct"] < 10, report
    assert report["threads_end"] == report["threads_start"]
