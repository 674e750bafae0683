"""The state file: written atomically, refused when another tool wrote it, one deployment per
state."""

from __future__ import annotations

import json

import pytest

from deploy.errors import UserError
from deploy.state import StateFile
from tests.support.aws import IMAGE


def test_the_state_file_is_written_atomically_with_a_gitignore(tmp_path):
    store = StateFile(tmp_path / ".deploy" / "state.json")
    data = {"version": 1, "tool": "yolov7-sagemaker-deploy", "resources": [], "x": "y"}
    store.save(data)
    assert store.load()["x"] == "y"
    assert (tmp_path / ".deploy" / ".gitignore").read_text().splitlines()[-1] == "*"
    assert [p.name for p in (tmp_path / ".deploy").iterdir() if p.name.startswith(".state-")] == []


def test_a_state_file_of_another_tool_is_refused(tmp_path):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "tool": "terraform"}))
    with pytest.raises(UserError, match="is not a yolov7-sagemaker-deploy state file"):
        StateFile(path).load()


def test_a_second_up_in_the_same_state_is_refused(moto, cli):
    assert cli("up", "--image", IMAGE, "--instance-type", "ml.c5.xlarge", "--poll", "0").code == 0
    again = cli("up", "--image", IMAGE, "--instance-type", "ml.c5.xlarge")
    assert again.code == 2
    assert "run `update` to change it, `down` to remove it" in again.error_line().lower()
