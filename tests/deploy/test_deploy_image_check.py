"""`up` and `update` read the image from ECR (moto's) before creating anything, and refuse one that
SageMaker would refuse (an OCI manifest or index) or fail to pull (over 10 GB, absent, elsewhere).
"""

from __future__ import annotations

import pytest

from tests.support.aws import (
    ACCOUNT,
    IMAGE,
    OCI_MANIFEST,
    PREBUILT,
    REGION,
    put_image,
    state,
)

ECR = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def nothing_created(moto, home) -> None:
    sm = moto.client("sagemaker")
    assert sm.list_models()["Models"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_endpoints()["Endpoints"] == []
    assert not (home / ".deploy" / "state.json").exists()


@pytest.mark.parametrize(
    ("media_type", "says"),
    [
        (OCI_MANIFEST, "has an OCI manifest (application/vnd.oci.image.manifest.v1+json)"),
        (OCI_INDEX, "has an OCI image index (multi-platform or attested)"),
    ],
)
def test_up_refuses_an_oci_image_before_creating_anything(moto, cli, tmp_path, media_type, says):
    image = f"{ECR}/{PREBUILT}:oci"
    put_image(moto, image, media_type=media_type)
    result = cli("up", "--image", image, "--instance-type", "ml.c5.xlarge", "--poll", "0")
    assert result.code == 2
    line = result.error_line()
    assert says in line and "which SageMaker refuses" in line
    assert "rebuild and push it with `python -m deploy push`" in line.lower()
    assert "push --format v2s2" in line
    nothing_created(moto, tmp_path)


def test_up_refuses_an_image_over_sagemakers_size_limit(moto, cli, tmp_path):
    image = f"{ECR}/{PREBUILT}:huge"
    put_image(moto, image, size=11 * 1000**3)
    result = cli("up", "--image", image, "--instance-type", "ml.c5.xlarge")
    assert result.code == 2
    assert "is 11.0 GB, over SageMaker's 10 GB limit" in result.error_line()
    nothing_created(moto, tmp_path)


@pytest.mark.parametrize(
    ("image", "says"),
    [
        (f"{ECR}/{PREBUILT}:never-pushed", "is not in ECR (ImageNotFoundException)"),
        (f"{ECR}/yolov7-nothing-here:v1", "is not in ECR (RepositoryNotFoundException)"),
        (
            f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/{PREBUILT}:v2",
            "is in ECR of us-east-1, but the endpoint would be in eu-west-1",
        ),
        ("registry.example.com/yolov7:v1", "is not in Amazon ECR"),
    ],
)
def test_up_refuses_an_image_sagemaker_cannot_pull(moto, cli, tmp_path, image, says):
    result = cli("up", "--image", image, "--instance-type", "ml.c5.xlarge")
    assert result.code == 2
    assert says in result.error_line()
    nothing_created(moto, tmp_path)


def test_update_refuses_an_oci_image_and_leaves_the_endpoint_as_it_was(moto, cli, tmp_path):
    assert cli("up", "--image", IMAGE, "--instance-type", "ml.c5.xlarge", "--poll", "0").code == 0
    before = state(tmp_path)
    sm = moto.client("sagemaker")
    models = sm.list_models()["Models"]
    oci = f"{ECR}/{PREBUILT}:oci"
    put_image(moto, oci, media_type=OCI_MANIFEST)
    result = cli("update", "--image", oci, "--poll", "0")
    assert result.code == 2
    assert "has an OCI manifest" in result.error_line()
    assert sm.list_models()["Models"] == models  # no new model, the running one kept
    assert state(tmp_path) == before
