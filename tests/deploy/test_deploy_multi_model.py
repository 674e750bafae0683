"""Multi-model endpoints against moto's server, with SageMaker's router played by the test
(tests/support/multi_model_sagemaker.py) in front of the real `python -m serve` with
SAGEMAKER_MULTI_MODEL=true: models add (an ONNX, SSE-KMS; a checkpoint, exported) -> models list
-> up --multi-model -> invoke --model for each (a 507 making the router unload one) -> models
remove -> down. Then the bad inputs: one `error:` line each."""

from __future__ import annotations

import json

import pytest

from serve.multi_model import estimate_footprint
from tests.support.aws import IMAGE, ROOT, not_in_policy, state
from tests.support.models import head_model
from tests.support.multi_model_sagemaker import MultiModelSageMaker
from tests.support.server import ServerProcess

PICTURE = ROOT / "samples" / "shapes" / "shapes-00.png"
CARS = ["car", "bike", "bus", "van"]
SHAPES = {"circle", "square", "triangle"}


def _labels(result) -> set[str]:
    assert result.code == 0, result.err
    return {d["label"] for d in json.loads(result.out)["detections"]}


def test_multi_model_whole_life(moto, cli, shapes_onnx, api_calls, monkeypatch, tmp_path):
    sm, s3, kms = moto.client("sagemaker"), moto.client("s3"), moto.client("kms")
    key = kms.create_key(KeySpec="SYMMETRIC_DEFAULT")["KeyMetadata"]["Arn"]
    cars = head_model(tmp_path / "cars.onnx", size=96, names=CARS, seed=3)

    # models add: an ONNX (encrypted with the key), a second one, a checkpoint exported first
    added = cli("models", "add", "site-a", "--onnx", shapes_onnx, "--kms-key", key)
    assert added.code == 0, added.err
    uri = added.out.strip()
    assert uri.endswith("/multi-models/site-a.tar.gz")
    bucket, _, object_key = uri[len("s3://") :].partition("/")
    stored = s3.head_object(Bucket=bucket, Key=object_key)
    assert stored["ServerSideEncryption"] == "aws:kms" and stored["SSEKMSKeyId"] == key
    assert cli("models", "add", "site-b", "--onnx", cars).code == 0
    exported = cli(
        "models", "add", "site-c", "--weights", ROOT / "weights" / "shapes-yolov7-tiny.pt",
        "--img-size", "160",
    )  # fmt: skip
    assert exported.code == 0, exported.err
    assert "exporting shapes-yolov7-tiny.pt" in exported.err
    c_key = object_key.replace("site-a", "site-c")
    assert s3.head_object(Bucket=bucket, Key=c_key)["SSEKMSKeyId"] == key  # the recorded key
    listed = cli("models", "list")
    assert listed.code == 0, listed.err
    assert [line.split()[0] for line in listed.out.splitlines()[1:]] == [
        "site-a",
        "site-b",
        "site-c",
    ]
    prefix = uri.removesuffix("site-a.tar.gz")
    assert state(tmp_path)["models"]["uri"] == prefix

    # up --multi-model: the model SageMaker is given
    up = cli(
        "up", "--multi-model", "--image", IMAGE, "--instance-type", "ml.c5.xlarge", "--poll", "0"
    )
    assert up.code == 0, up.err
    recorded = state(tmp_path)["endpoint"]
    assert recorded["multi_model"] is True and recorded["model_data"] == prefix
    container = sm.describe_model(ModelName=recorded["model"])["PrimaryContainer"]
    assert container["Mode"] == "MultiModel" and container["ModelDataUrl"] == prefix
    assert container["Environment"]["SAGEMAKER_MULTI_MODEL"] == "true"
    assert container["MultiModelConfig"] == {"ModelCacheSetting": "Enabled"}

    # the router in front of the real server: room for site-a and site-c (the same weights, so
    # nearly the same size), not for site-b too
    shapes = estimate_footprint(shapes_onnx.stat().st_size)
    budget = (2 * shapes + estimate_footprint(cars.stat().st_size) // 2) // 2**20
    router = MultiModelSageMaker(moto, tmp_path / "opt-ml-models").install(monkeypatch)
    env = {
        **container["Environment"],
        "SERVE_MODELS_ROOT": str(router.models_root),
        "SERVE_MODEL_MEMORY_MB": str(budget),
    }
    server = ServerProcess(tmp_path / "container", env)
    try:
        router.container_url = server.wait_ready().url
        assert _labels(cli("invoke", PICTURE, "--model", "site-a", "--json")) <= SHAPES
        assert _labels(cli("invoke", PICTURE, "--model", "site-b", "--json")) <= set(CARS)
        assert _labels(cli("invoke", PICTURE, "--model", "site-a.tar.gz", "--json")) <= SHAPES
        assert (router.misses, router.hits, router.evictions) == (2, 1, 0)
        # site-c does not fit beside both: the container says 507, the router unloads site-b
        assert _labels(cli("invoke", PICTURE, "--model", "site-c", "--json")) <= SHAPES
        assert router.evictions == 1 and list(router.loaded) == ["site-a.tar.gz", "site-c.tar.gz"]
        loaded = json.loads(server.request("GET", "/models").body)["models"]
        assert sorted(m["modelName"] for m in loaded) == ["site-a.tar.gz", "site-c.tar.gz"]
        table = cli("invoke", PICTURE, "--model", "site-b")
        assert table.code == 0 and "detections, 320x320 image" in table.out

        # a model that is not under the prefix, and a name that is no model's
        missing = cli("invoke", PICTURE, "--model", "nowhere")
        assert missing.code != 0 and "nowhere.tar.gz" in missing.error_line()
        assert cli("invoke", PICTURE, "--model", "../up").code == 2
    finally:
        server.close()

    # status: what SageMaker publishes for a multi-model variant (put here as it would)
    dims = [
        {"Name": "EndpointName", "Value": recorded["name"]},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]
    published = [("LoadedModelCount", 2.0), ("ModelCacheHit", 3.0), ("Invocations", 4.0)]
    published.append(("ModelLoadingWaitTime", 1_500_000.0))  # microseconds
    moto.client("cloudwatch").put_metric_data(
        Namespace="AWS/SageMaker",
        MetricData=[{"MetricName": n, "Dimensions": dims, "Value": v} for n, v in published],
    )
    shown = cli("status")
    assert shown.code == 0, shown.err
    assert f"models     loaded from {prefix}" in shown.out
    assert "up to 2 loaded; cache hits 3 of 4 invocations (75%)" in shown.out
    assert "loading    wait avg 1500.0 ms max 1500.0 ms" in shown.out

    removed = cli("models", "remove", "site-b")
    assert removed.code == 0 and removed.out.strip().endswith("/site-b.tar.gz")
    listed = cli("models", "list")
    assert "site-b" not in listed.out and "site-a" in listed.out

    gone = cli("down", "--poll", "0")
    assert gone.code == 0, gone.err
    assert sm.list_endpoints()["Endpoints"] == []
    assert not_in_policy(api_calls) == []


@pytest.mark.parametrize(
    "args, words",
    [
        (("models", "add", "a/b", "--onnx", "x.onnx"), "not allowed"),
        (("models", "add", "n" * 101, "--onnx", "x.onnx"), "not allowed"),
        (("models", "add", "ok", "--onnx", "missing.onnx"), "no model file"),
        (("models", "add", "ok", "--onnx", "x.onnx", "--img-size", "320"), "--img-size"),
        (("models", "add", "ok", "--onnx", "x.onnx", "--models", "s3://b/p"), "End it with '/'"),
        (("models", "remove", "nothing-here"), "no model nothing-here"),
        (("up", "--models", "s3://b/p/", "--image", IMAGE), "Add --multi-model"),
        (("up", "--multi-model", "--models", "s3://bucket", "--image", IMAGE), "s3://BUCKET"),
        (
            ("up", "--multi-model", "--serverless-memory", "2048", "--image", IMAGE),
            "serverless",
        ),
        (("up", "--multi-model", "--model-data", "s3://b/m.tar.gz", "--image", IMAGE), "prefix"),
        (("invoke", "--model", "x", "--async", str(PICTURE)), "real-time"),
    ],
)
def test_bad_multi_model_input_is_one_line_and_exit_2(moto, cli, tmp_path, args, words):
    (tmp_path / "x.onnx").write_bytes(b"not empty")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        result = cli(*args)
    assert result.code == 2, (result.code, result.err)
    assert words in result.error_line()
    made = tmp_path / ".deploy" / "state.json"
    assert not made.exists() or "endpoint" not in state(tmp_path)


def test_up_multi_model_dry_run_shows_the_multi_model_container_and_makes_nothing(
    moto, cli, tmp_path
):
    prefix = "s3://yolov7-sites/customers/"
    shown = cli(
        "up", "--multi-model", "--models", prefix, "--image", IMAGE,
        "--instance-type", "ml.c5.xlarge", "--dry-run", "--json",
    )  # fmt: skip
    assert shown.code == 0, shown.err
    model = json.loads(shown.out)[0]
    assert model["operation"] == "CreateModel"
    container = model["parameters"]["PrimaryContainer"]
    assert container["Mode"] == "MultiModel" and container["ModelDataUrl"] == prefix
    assert container["Environment"] == {"SAGEMAKER_MULTI_MODEL": "true"}
    assert container["MultiModelConfig"] == {"ModelCacheSetting": "Enabled"}
    assert moto.client("sagemaker").list_models()["Models"] == []
    assert not (tmp_path / ".deploy" / "state.json").exists()
