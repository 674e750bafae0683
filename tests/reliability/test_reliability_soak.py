"""The soak, short form (CI): 20 s of mixed good and bad requests at concurrency 8."""

from __future__ import annotations

import pytest

from tests.support.reliability import SERVER_ENV, run_soak

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


def test_a_soak_with_bursts_retries_refusals_and_loses_nothing(
    slow_model_path, tmp_path, repo_root
):
    """The slow model (~0.3 s an inference), 2 steady clients, bursts of 12 more clients: the
    server refuses some (JSON 503 + Retry-After), the steady clients retry them, nothing is lost."""
    report = run_soak(
        repo_root,
        tmp_path / "soak.json",
        slow_model_path,
        duration=16,
        concurrency=2,
        warm_up=2,
        server_env=SERVER_ENV,
        extra=("--burst-every", "5", "--burst-seconds", "3", "--burst-clients", "12"),
    )
    assert report["ok"] and report["good_lost"] == 0 and report["server_errors"] == 0
    assert report["bursts"] >= 2 and report["burst_answered"] > 0
    assert report["refusals"] > 0 and report["bad_refusals"] == 0
    assert report["rss_late_spread_pct"] is not None
