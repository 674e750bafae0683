"""serve/openapi.yaml describes the live server: schemathesis fuzzes it (bounded in time) and checks
that nothing answers 5xx and every answer conforms to the schema."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.programs import venv_command

SPEC = Path(__file__).resolve().parents[2] / "serve" / "openapi.yaml"
CHECKS = (
    "not_a_server_error,response_schema_conformance,content_type_conformance,"
    "status_code_conformance,response_headers_conformance"
)

# schemathesis fuzzes the whole API (about 15 s).
pytestmark = pytest.mark.slow


def test_openapi_describes_the_three_sagemaker_paths():
    spec = yaml.safe_load(SPEC.read_text())
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) == {"/ping", "/invocations", "/execution-parameters"}
    assert "post" in spec["paths"]["/invocations"]


def test_schemathesis_finds_no_server_error_and_no_schema_violation(live_server, tmp_path):
    command = [
        *venv_command("schemathesis"),
        "run",
        str(SPEC),
        "--url",
        live_server.url,
        *("--checks", CHECKS, "--max-examples", "20", "--seed", "7"),
        *("--max-time", "15", "--request-timeout", "10", "--workers", "2"),
        *("--report", "junit", "--report-dir", str(tmp_path)),
    ]
    # cwd: schemathesis keeps a cache of its findings in ./.schemathesis, never in the repo.
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=90, check=False
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
