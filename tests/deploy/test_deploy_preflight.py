"""The preflight of `up`/`update` against moto: an image's architecture against the instance's, the
instance type's existence, and a serverless memory size against the model; each refusal is one
line, exit 2, nothing created."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from deploy import preflight
from deploy.context import Context
from deploy.errors import UserError
from deploy.state import StateFile
from tests.support.aws import (
    ACCOUNT,
    IMAGE,
    PREBUILT,
    REGION,
    StubbedAws,
    by_digest,
    not_in_policy,
    state,
)

REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
BUCKET = "yolov7-models-preflight"


def nothing_created(moto) -> None:
    sm = moto.client("sagemaker")
    assert sm.list_models()["Models"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_endpoints()["Endpoints"] == []


def pushed(cli, fake_cli, build_context, *platform: str) -> str:
    fake_cli("docker")
    result = cli("push", "--context", build_context, "--tag", "p1", *platform)
    assert result.code == 0, result.err
    return result.out.strip()


def test_an_amd64_image_is_refused_on_graviton_before_anything_is_created(
    moto, cli, fake_cli, build_context, tmp_path
):
    image = pushed(cli, fake_cli, build_context)  # the default: linux/amd64
    assert state(tmp_path)["image"]["platform"] == "linux/amd64"
    result = cli("up", "--instance-type", "ml.c7g.xlarge", "--poll", "0")
    assert result.code == 2
    line = result.error_line()
    assert f"image {image} is amd64 (from `push --platform linux/amd64`)" in line
    assert "ml.c7g.xlarge is arm64 (Graviton)" in line and "exec format error" in line
    assert "push --platform linux/arm64" in line
    nothing_created(moto)


def test_push_platform_arm64_builds_for_arm64_and_then_fits_graviton_only(
    moto, cli, fake_cli, build_context, tmp_path, api_calls
):
    fake = fake_cli("docker")
    assert (
        cli("push", "--context", build_context, "--tag", "a1", "--platform", "linux/arm64").code
        == 0
    )
    build = next(c["argv"] for c in fake.calls() if c["argv"][:2] == ["buildx", "build"])
    assert build[build.index("--platform") + 1] == "linux/arm64"

    refused = cli("up", "--instance-type", "ml.c6i.xlarge", "--poll", "0")
    assert refused.code == 2
    assert "is arm64" in refused.error_line() and "ml.c6i.xlarge is amd64" in refused.error_line()
    nothing_created(moto)

    # moto's SageMaker knows no Graviton type, so the accepting side is checked on the preflight
    ctx = Context(store=StateFile(tmp_path / ".deploy" / "state.json"), state=state(tmp_path))
    image = state(tmp_path)["image"]["uri"]
    preflight.check_architecture(ctx, image, "ml.c7g.xlarge")  # no refusal
    preflight.check_architecture(ctx, image, "ml.m7g.2xlarge")
    assert not_in_policy(api_calls) == []


def test_an_unknown_instance_type_is_refused_with_the_close_ones(moto, cli):
    result = cli("up", "--image", IMAGE, "--instance-type", "ml.c7g.xlarg", "--poll", "0")
    assert result.code == 2
    line = result.error_line()
    assert "ml.c7g.xlarg is not a SageMaker hosting instance type" in line
    assert "ml.c7g.xlarge" in line
    nothing_created(moto)


def test_an_image_of_unknown_architecture_is_deployed_with_a_warning(moto, cli):
    result = cli("up", "--image", IMAGE, "--instance-type", "ml.c5.xlarge", "--poll", "0")
    assert result.code == 0, result.err
    assert f"warning: the architecture of {IMAGE} is not known" in result.err


def model_object(moto, key: str, onnx_bytes: int) -> str:
    """A model.tar.gz as `package` leaves it: the ONNX size in the object's metadata."""
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"x", Metadata={"onnx-bytes": str(onnx_bytes)})
    return f"s3://{BUCKET}/{key}"


def test_a_serverless_size_too_small_for_the_model_is_refused(moto, cli):
    data = model_object(moto, "big/model.tar.gz", 300_000_000)  # a 300 MB ONNX
    args = ("up", "--image", IMAGE, "--model-data", data, "--poll", "0")
    result = cli(*args, "--serverless-memory", "1024")
    assert result.code == 2
    line = result.error_line()
    # 300 + 3.47 x 300 = 1341 MB peak; x 1.25 = 1676 MB: 2048 is the first size that holds it
    assert "--serverless-memory 1024 MB is too small for the 300 MB model" in line
    assert "peaks near 1341 MB" in line and "Pass --serverless-memory 2048" in line
    nothing_created(moto)
    assert cli(*args, "--serverless-memory", "2048").code == 0


def test_the_rule_fits_the_benchmark_and_package_records_the_size(moto, cli, tmp_path):
    rss_tiny, fits_tiny = preflight.needed_serverless_mb(24_300_000)
    rss_v7, fits_v7 = preflight.needed_serverless_mb(147_600_000)
    # at or above the measured peaks: tiny 367 MB (two sessions), yolov7 711 MB; not far above
    assert 367 <= rss_tiny < 367 * 1.1 and 711 <= rss_v7 < 711 * 1.2
    assert fits_tiny == fits_v7 == 1024
    assert preflight.needed_serverless_mb(6_000_000_000)[1] > 6144

    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"\0" * 12345)
    assert cli("package", onnx, "--bucket", BUCKET).code == 0
    record = state(tmp_path)["model_data"]
    assert record["onnx_bytes"] == 12345
    head = moto.client("s3").head_object(Bucket=BUCKET, Key=record["key"])
    assert head["Metadata"]["onnx-bytes"] == "12345"


@pytest.fixture
def config_blob_server():
    """What ECR's download URL serves for an image config: JSON with the architecture."""
    body = json.dumps({"architecture": "arm64", "os": "linux"}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/config-blob"
    server.shutdown()


def test_the_architecture_is_read_from_the_image_config_where_ecr_serves_it(
    tmp_path, config_blob_server
):
    """moto serves no layer URL: ECR's answers through botocore's Stubber, the blob over HTTP."""
    aws = StubbedAws()
    ecr = aws.stub("ecr")
    manifest = {"schemaVersion": 2, "config": {"digest": "sha256:" + "c" * 64, "size": 9}}
    image_id = {"imageTag": "v9"}
    ecr.add_response(
        "batch_get_image",
        {"images": [{"imageManifest": json.dumps(manifest), "imageId": image_id}]},
        {
            "registryId": ACCOUNT,
            "repositoryName": PREBUILT,
            "imageIds": [image_id],
            "acceptedMediaTypes": ["application/vnd.docker.distribution.manifest.v2+json"],
        },
    )
    ecr.add_response(
        "get_download_url_for_layer",
        {"downloadUrl": config_blob_server, "layerDigest": manifest["config"]["digest"]},
        {"registryId": ACCOUNT, "repositoryName": PREBUILT, "layerDigest": "sha256:" + "c" * 64},
    )
    ctx = Context(store=StateFile(tmp_path / "s.json"), state={"image": {"platform": "x"}})
    ctx.use_aws(aws)
    found = preflight.image_architecture(ctx, f"{REGISTRY}/{PREBUILT}:v9", aws.client("ecr"))
    assert (found.architecture, found.source) == ("arm64", "the image config in ECR")
    aws.verify()


def test_a_family_this_tool_does_not_list_is_let_through_with_a_warning():
    from deploy.errors import UserError
    from deploy.preflight import architecture_of, check_instance_type

    said: list[str] = []
    check_instance_type("ml.c7a.xlarge", said.append)  # a real family the list may lag behind
    assert len(said) == 1 and "not in this tool's list" in said[0]
    assert "did you mean ml.c7i.xlarge" in said[0]
    assert architecture_of("ml.c8g.2xlarge") == "arm64"  # Graviton by its name
    assert architecture_of("ml.c7a.xlarge") is None  # unknown: not checked, not guessed
    with pytest.raises(UserError) as refused:
        check_instance_type("ml.c6i.3xlarge", said.append)  # a known family's unknown size
    assert "Did you mean ml.c6i.32xlarge" in refused.value.line()


def test_push_both_architectures_and_up_picks_the_one_of_the_instance_family(
    moto, cli, fake_cli, build_context, tmp_path
):
    """Two single-platform images, TAG-amd64 and TAG-arm64 (no manifest list: SageMaker documents
    v2s2 single manifests), one login; `up` picks the arm64 one for Graviton, amd64 otherwise."""
    fake = fake_cli("docker")
    platforms = "linux/amd64,linux/arm64"
    result = cli("push", "--context", build_context, "--tag", "v1", "--platform", platforms)
    assert result.code == 0, result.err
    amd64, arm64 = result.out.split()
    assert (amd64.endswith(":v1-amd64"), arm64.endswith(":v1-arm64")) == (True, True)
    argvs = [c["argv"] for c in fake.calls()]
    builds = [a[a.index("--platform") + 1] for a in argvs if a[:2] == ["buildx", "build"]]
    assert builds == ["linux/amd64", "linux/arm64"]
    assert sum(a[0] == "login" for a in argvs) == 1
    assert [a[-1] for a in argvs if a[0] == "push"] == [amd64, arm64]
    assert state(tmp_path)["image"]["architectures"] == {"amd64": amd64, "arm64": arm64}

    for instance_type, image in (("ml.c7g.xlarge", arm64), ("ml.c6i.xlarge", amd64)):
        planned = cli("up", "--instance-type", instance_type, "--dry-run", "--json")
        assert planned.code == 0, planned.err
        other = arm64 if image == amd64 else amd64
        # the model names the picked one by its digest, and never the other architecture's
        assert f'"Image": "{by_digest(moto, image)}"' in planned.out
        assert by_digest(moto, other) not in planned.out
    # and the preflight reads each one's architecture from the state
    ctx = Context(store=StateFile(tmp_path / ".deploy" / "state.json"), state=state(tmp_path))
    preflight.check_architecture(ctx, arm64, "ml.c7g.xlarge")
    with pytest.raises(UserError, match="is amd64"):
        preflight.check_architecture(ctx, amd64, "ml.c7g.xlarge")
    nothing_created(moto)


def test_a_platform_other_than_amd64_or_arm64_is_refused(moto, cli, fake_cli, build_context):
    fake_cli("docker")
    result = cli("push", "--context", build_context, "--platform", "linux/amd64,linux/s390x")
    assert result.code == 2
    assert "linux/s390x" in result.error_line()
