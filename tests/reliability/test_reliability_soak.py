"""The soak, short form (CI): 20 s of mixed good and bad requests at concurrency 8."""

from __future__ import annotations

import json
import subprocess
import sys


def test_twenty_second_soak_loses_no_good_request_and_memory_stays_flat(
    head_model_path, tmp_path, repo_root
):
    report_path = tmp_path / "soak.json"
    command = [
        *(sys.executable, "-m", "reliability.soak", "--duration", "20", "--concurrency", "8"),
        *("--warm-up", "5", "--model", str(head_model_path), "--json", str(report_path)),
    ]
    result = subprocess.run(
        command, cwd=repo_root, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    assert report["ok"] and report["good_lost"] == 0 and report["server_errors"] == 0
    assert report["bad_unexpected"] == 0 and report["client_exceptions"] == 0
    assert report["good_requests"] > 100 and report["bad_requests"] > 100
    assert not [status for status in report["by_status"] if status.startswith("5")]
    assert report["rss_growth_pct"] < 10, report
    assert report["threads_end"] == report["threads_start"]
