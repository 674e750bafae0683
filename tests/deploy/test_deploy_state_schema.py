"""The state file's declared shape: today's files are read and upgraded, anything else is refused
with one line that names the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.cli import main
from deploy.errors import UserError
from deploy.state import StateFile

ENDPOINT = "yolov7-20300101-000000"

# A state as the version-1 tool wrote it after push, package, up and autoscale.
VERSION_1 = {
    "version": 1,
    "tool": "yolov7-sagemaker-deploy",
    "region": "eu-west-1",
    "prefix": "yolov7",
    "tags": {"managed-by": "yolov7-sagemaker-deploy", "yolov7-deployment": "yolov7"},
    "image": {
        "uri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/yolov7-serve:20300101",
        "repository": "yolov7-serve",
        "repository_arn": "arn:aws:ecr:eu-west-1:123456789012:repository/yolov7-serve",
        "repository_created": True,
        "pushed_at": "2030-01-01T00:00:00+00:00",
        "platform": "linux/amd64",
    },
    "model_data": {
        "uri": "s3://b/yolov7/models/m/model.tar.gz",
        "bucket": "b",
        "key": "yolov7/models/m/model.tar.gz",
        "source": "weights/model.onnx",
        "sha256": "0" * 64,
        "onnx_bytes": 24000000,
        "bucket_created": True,
        "uploaded_at": "2030-01-01T00:00:00+00:00",
    },
    "endpoint": {
        "name": ENDPOINT,
        "arn": f"arn:aws:sagemaker:eu-west-1:123456789012:endpoint/{ENDPOINT}",
        "config": "yolov7-config-20300101-000000",
        "model": "yolov7-model-20300101-000000",
        "variant": "AllTraffic",
        "status": "InService",
        "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/yolov7-serve:20300101",
        "role": "arn:aws:iam::123456789012:role/yolov7",
        "model_data": "s3://b/yolov7/models/m/model.tar.gz",
        "environment": {"YOLO_CONF": "0.3"},
        "instance_type": "ml.c6i.xlarge",
        "instance_count": 1,
        "serverless": None,
        "startup_timeout": 600,
        "async_inference": None,
        "data_capture": None,
        "created_at": "2030-01-01T00:00:00+00:00",
        "updated_at": "2030-01-01T00:00:00+00:00",
    },
    "autoscaling": {
        "resource_id": f"endpoint/{ENDPOINT}/variant/AllTraffic",
        "min": 1,
        "max": 4,
        "target": 200.0,
        "scale_in_cooldown": 300,
        "scale_out_cooldown": 60,
        "policy": f"{ENDPOINT}-invocations",
        "policy_arn": "arn:aws:autoscaling:eu-west-1:123456789012:scalingPolicy:x",
        "updated_at": "2030-01-01T00:00:00+00:00",
    },
    "resources": [
        {"type": "model", "name": "yolov7-model-20300101-000000", "arn": None},
        {"type": "endpoint", "name": ENDPOINT, "arn": None},
    ],
    "transform_jobs": [],
}


def as_version_3(**endpoint):
    """An edit: VERSION_1 as a version-3 file (no environment values) with `endpoint` set."""

    def edit(data: dict) -> None:
        data["version"] = 3
        data["endpoint"].pop("environment")
        data["endpoint"].update(endpoint)

    return edit


def write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_a_version_1_state_is_read_upgraded_and_written_back_as_version_3(tmp_path):
    store = StateFile(write(tmp_path / "state.json", VERSION_1))
    state = store.read()
    assert state["version"] == 3
    assert state["autoscaling"]["mode"] == "invocations"
    expected = {k: v for k, v in VERSION_1["endpoint"].items() if k != "environment"}
    assert state["endpoint"] == {**expected, "environment_names": ["YOLO_CONF"]}
    on_disk = json.loads(store.path.read_text())  # written back by the read itself
    assert on_disk["version"] == 3 and "environment" not in on_disk["endpoint"]
    assert StateFile(store.path).read() == state


def test_a_version_2_state_loses_its_environment_values_on_the_first_read(tmp_path):
    data = json.loads(json.dumps(VERSION_1))
    data["version"] = 2
    data["autoscaling"]["mode"] = "invocations"
    data["endpoint"]["environment"] = {"YOLO_CONF": "0.3", "DB_HOST": "db.internal.example"}
    store = StateFile(write(tmp_path / "state.json", data))
    state = store.read()
    assert state["endpoint"]["environment_names"] == ["DB_HOST", "YOLO_CONF"]
    text = store.path.read_text()
    assert json.loads(text)["version"] == 3
    assert "db.internal.example" not in text and "0.3" not in text
    assert "DB_HOST" in text


def test_a_version_1_async_endpoint_upgrades_to_backlog_scaling(tmp_path):
    data = json.loads(json.dumps(VERSION_1))
    data["endpoint"]["async_inference"] = {
        "config": {"OutputConfig": {"S3OutputPath": "s3://b/out"}},
        "input": "s3://b/in/",
        "output": "s3://b/out",
        "failure": "s3://b/failure",
    }
    state = StateFile(write(tmp_path / "state.json", data)).read()
    assert state["autoscaling"]["mode"] == "backlog"


def test_the_supply_chain_keys_are_read_as_written(tmp_path):
    """`push`'s digest and SBOM, the endpoint's image by digest (a file without them reads too:
    the model of an endpoint made before them named its image by tag)."""
    digest = "sha256:" + "ab" * 32
    data = json.loads(json.dumps(VERSION_1))
    as_version_3(
        pinned_image=f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/yolov7-serve@{digest}"
    )(data)
    data["image"].update(digest=digest, sbom="state.sbom.cdx.json")
    state = StateFile(write(tmp_path / "state.json", data)).read()
    assert state["endpoint"]["pinned_image"].endswith(digest)
    assert (state["image"]["digest"], state["image"]["sbom"]) == (digest, "state.sbom.cdx.json")
    data["image"]["sbom"] = None  # the package listing failed: no SBOM
    assert StateFile(write(tmp_path / "state.json", data)).read()["image"]["sbom"] is None


def test_a_missing_state_reads_as_empty_version_3_and_is_not_written(tmp_path):
    state = StateFile(tmp_path / "none.json").read()
    assert (state["version"], state["resources"], state["transform_jobs"]) == (3, [], [])
    assert not (tmp_path / "none.json").exists()


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda d: d.update(endpont={}), "unknown key endpont"),
        (lambda d: d["endpoint"].update(instnce_type="x"), "unknown key endpoint.instnce_type"),
        (
            lambda d: d["endpoint"].update(instance_count="two"),
            "endpoint.instance_count is 'two', expected int",
        ),
        (lambda d: d["autoscaling"].update(target="fast"), "autoscaling.target is 'fast'"),
        (lambda d: d["autoscaling"].update(mode="cpu"), "autoscaling.mode is 'cpu'"),
        (lambda d: d["image"].update(repository_created="yes"), "image.repository_created"),
        (
            lambda d: d.update(version=3) or d["endpoint"].update(environment={"A": "1"}),
            "unknown key endpoint.environment",
        ),
        (as_version_3(environment_names=[1]), "endpoint.environment_names[0] is 1"),
        (lambda d: d.update(resources=[{"type": "bucket", "name": "b", "arn": None}]), "type"),
        (lambda d: d.update(resources=[{"type": "model", "arn": None}]), "has no name"),
        (lambda d: d.update(transform_jobs={}), "transform_jobs is {}, expected a list"),
        (lambda d: d.update(endpoint=[]), "endpoint is [], expected an object"),
        (as_version_3(pinned_image=7), "endpoint.pinned_image is 7, expected str or null"),
        (lambda d: d["image"].update(digest=None), "image.digest is None, expected str"),
        (lambda d: d["image"].update(sbom=["x"]), "image.sbom is ['x'], expected str or null"),
    ],
)
def test_a_state_with_an_unknown_key_or_a_wrong_type_is_refused_naming_it(tmp_path, edit, says):
    data = json.loads(json.dumps(VERSION_1))
    edit(data)
    with pytest.raises(UserError, match="is not valid") as raised:
        StateFile(write(tmp_path / "state.json", data)).read()
    assert says in raised.value.line()
    assert "\n" not in raised.value.line()


def test_a_newer_state_version_is_refused(tmp_path):
    data = {**VERSION_1, "version": 4}
    with pytest.raises(UserError, match="has state version 4, this tool reads 1, 2, 3"):
        StateFile(write(tmp_path / "state.json", data)).read()


def test_the_command_line_refuses_a_bad_state_in_one_line_with_exit_2(tmp_path, capsys):
    data = json.loads(json.dumps(VERSION_1))
    data["endpoint"]["instance_count"] = "two"
    path = write(tmp_path / "state.json", data)
    before = path.read_text()
    code = main(["--state", str(path), "--region", "eu-west-1", "cost"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [
        f"error: the state file {path} is not valid: endpoint.instance_count is 'two', expected "
        "int or null. Fix or remove that key, or point --state elsewhere."
    ]
    assert path.read_text() == before  # nothing rewritten
