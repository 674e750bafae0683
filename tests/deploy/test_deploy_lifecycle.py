"""The whole life of a deployment against moto's server, checking the emulator after every step:
push -> package -> up -> status -> autoscale -> transform -> invoke (our server) -> down."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from botocore.exceptions import ClientError

from tests.support.aws import (
    ACCOUNT,
    ECR_PASSWORD,
    PREBUILT,
    REGION,
    ROLE,
    ROOT,
    SECRET_KEY,
    TAG,
    digest_of,
    not_in_policy,
    pinned,
    state,
)

SHAPES = ROOT / "samples" / "shapes"


def iou(a: list[float], b: list[float]) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def sagemaker_tags(sm, arn: str) -> list[dict]:
    return sm.list_tags(ResourceArn=arn)["Tags"]


def test_whole_life_push_to_down_leaves_nothing_behind(
    moto, cli, fake_cli, build_context, shapes_onnx, sagemaker_like_server, api_calls, tmp_path
):
    sm, s3, ecr = moto.client("sagemaker"), moto.client("s3"), moto.client("ecr")
    aas = moto.client("application-autoscaling")
    docker = fake_cli("docker")

    # push: repository created and tagged, commands run, image URI printed
    pushed = cli("push", "--context", build_context, "--tag", "v1", "--region", REGION)
    assert pushed.code == 0, pushed.err
    image = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/yolov7-serve:v1"
    assert pushed.out.strip().splitlines()[-1] == image
    repo = ecr.describe_repositories(repositoryNames=["yolov7-serve"])["repositories"][0]
    assert TAG in ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
    calls = [c["argv"][0] for c in docker.calls()]
    assert calls == ["info", "buildx", "tag", "login", "push", "run"]  # run: the SBOM's list
    assert state(tmp_path)["image"]["uri"] == image
    assert repo["imageTagMutability"] == "IMMUTABLE"
    digest = state(tmp_path)["image"]["digest"]
    assert digest == digest_of(moto, image)

    # package: model.tar.gz with the ONNX at its root, in a private, tagged bucket
    packaged = cli("package", shapes_onnx)
    assert packaged.code == 0, packaged.err
    model_data = packaged.out.strip()
    bucket, _, key = model_data[5:].partition("/")
    assert bucket == f"yolov7-sagemaker-{ACCOUNT}-{REGION}"
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        assert archive.getnames() == [shapes_onnx.name]
        assert archive.getmember(shapes_onnx.name).size == shapes_onnx.stat().st_size
    assert TAG in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())

    # up: model (image, model data, environment), config (instances, startup timeout), endpoint
    up = cli(
        "up",
        "--instance-type",
        "ml.c5.xlarge",
        "--instance-count",
        "2",
        "--conf",
        "0.3",
        "--max-det",
        "50",
        "--threads",
        "2",
        "--tag",
        "team=vision",
        "--poll",
        "0",
    )
    assert up.code == 0, up.err
    recorded = state(tmp_path)["endpoint"]
    endpoint = recorded["name"]
    assert endpoint.startswith("yolov7-") and f"endpoint  {endpoint}  InService" in up.out
    assert f"endpoint {endpoint}: InService (2/2 instances)" in up.err  # the progress line
    live = sm.describe_endpoint(EndpointName=endpoint)
    assert live["EndpointStatus"] == "InService"
    assert live["EndpointConfigName"] == recorded["config"]
    variant = sm.describe_endpoint_config(EndpointConfigName=recorded["config"])[
        "ProductionVariants"
    ][0]
    assert variant["ModelName"] == recorded["model"]
    assert variant["InstanceType"] == "ml.c5.xlarge" and variant["InitialInstanceCount"] == 2
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == 600
    model = sm.describe_model(ModelName=recorded["model"])
    assert model["ExecutionRoleArn"] == ROLE
    container = model["PrimaryContainer"]
    # the image by the digest that was pushed and scanned, whatever its tag names later
    assert container["Image"] == pinned(image, digest) and container["ModelDataUrl"] == model_data
    assert recorded["image"] == image and recorded["pinned_image"] == pinned(image, digest)
    assert container["Environment"] == {
        "YOLO_CONF": "0.3",
        "YOLO_MAX_DET": "50",
        "ORT_INTRA_OP_THREADS": "2",
    }
    for arn in (live["EndpointArn"], model["ModelArn"]):
        tags = sagemaker_tags(sm, arn)
        assert TAG in tags and {"Key": "team", "Value": "vision"} in tags

    # status: what is live, read back from SageMaker
    shown = cli("status")
    assert shown.code == 0, shown.err
    assert f"endpoint   {endpoint}  InService  2/2 instances ml.c5.xlarge" in shown.out
    assert f"/aws/sagemaker/Endpoints/{endpoint}" in shown.out
    report = json.loads(cli("status", "--json").out)
    assert report["endpoint"]["status"] == "InService" and report["autoscaling"] is None

    # autoscale: a scalable target and a target-tracking policy on invocations per instance
    scaled = cli("autoscale", "--min", "1", "--max", "3", "--throughput", "10")
    assert scaled.code == 0, scaled.err
    resource = f"endpoint/{endpoint}/variant/AllTraffic"
    target = aas.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource])[
        "ScalableTargets"
    ]
    assert [(t["MinCapacity"], t["MaxCapacity"]) for t in target] == [(1, 3)]
    policy = aas.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource)[
        "ScalingPolicies"
    ][0]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
        "SageMakerVariantInvocationsPerInstance"
    )
    assert tracking["TargetValue"] == 420.0  # 10 img/s x 60 s x 0.7
    assert "autoscale  1-3 instances" in cli("status").out

    # transform: a Batch Transform job over an S3 prefix, with the model of the endpoint
    images_bucket = "yolov7-batch-images"
    s3.create_bucket(Bucket=images_bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    for picture in sorted(SHAPES.glob("*.png"))[:3]:
        s3.put_object(Bucket=images_bucket, Key=f"in/{picture.name}", Body=picture.read_bytes())
    batch = cli(
        "transform",
        "--input",
        f"s3://{images_bucket}/in",
        "--output",
        f"s3://{images_bucket}/out/",
        "--content-type",
        "image/png",
        "--conf",
        "0.5",
        "--poll",
        "0",
    )
    assert batch.code == 0, batch.err
    job_name = state(tmp_path)["transform_jobs"][-1]["name"]
    job = sm.describe_transform_job(TransformJobName=job_name)
    assert job["TransformJobStatus"] == "Completed" and job["ModelName"] == recorded["model"]
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == (
        f"s3://{images_bucket}/in/"
    )
    assert job["TransformInput"]["ContentType"] == "image/png"
    assert job["TransformOutput"]["S3OutputPath"] == f"s3://{images_bucket}/out/"
    assert job["TransformResources"] == {"InstanceType": "ml.c5.xlarge", "InstanceCount": 1}
    assert job["Environment"] == {"YOLO_CONF": "0.5"}
    assert "(3 objects)" in batch.out and f"transform job {job_name}: Completed" in batch.err

    # invoke: the model data SageMaker would unpack, our server with the model's Environment
    url = sagemaker_like_server(model_data, container["Environment"], moto)
    picture = SHAPES / "shapes-00.png"
    answer = cli("invoke", picture, "--url", url, "--json")
    assert answer.code == 0, answer.err
    data = json.loads(answer.out)
    truth = json.loads((SHAPES / "truth.json").read_text())
    assert data["model"] == "shapes-yolov7-tiny"
    assert data["detections"], "the real model finds shapes in a shapes picture"
    assert {d["label"] for d in data["detections"]} <= {"circle", "square", "triangle"}
    found = [
        any(d["label"] == t["label"] and iou(d["box"], t["box"]) > 0.5 for d in data["detections"])
        for t in truth[picture.name]
    ]
    assert sum(found) >= 0.8 * len(found), (data["detections"], truth[picture.name])
    table = cli("invoke", picture, "--url", url, "--max-det", "1", "--save", tmp_path / "out.jpg")
    assert table.code == 0, table.err
    lines = table.out.strip().splitlines()
    assert lines[0].split() == ["#", "label", "score", "x1", "y1", "x2", "y2"]
    assert len(lines) == 3 and lines[2].startswith("1 detection, ")  # max_det=1 reached it
    assert (tmp_path / "out.jpg").read_bytes()[:3] == b"\xff\xd8\xff"

    # down: everything this tool made is gone, and the state with it
    gone = cli("down", "--delete-model-data", "--delete-repository", "--poll", "0")
    assert gone.code == 0, gone.err
    with pytest.raises(ClientError, match="Could not find endpoint"):
        sm.describe_endpoint(EndpointName=endpoint)
    assert sm.list_models()["Models"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    left = [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]]
    assert left == [PREBUILT]  # only the one the test seeded; `push`'s own is gone
    assert not (tmp_path / ".deploy" / "state.json").exists()
    again = cli("down")
    assert again.code == 0 and again.out.strip() == "nothing to delete"

    # no secret anywhere, and the shipped IAM policy covers every call that was made
    everything = "".join(r.text for r in (pushed, packaged, up, shown, scaled, batch, gone))
    assert SECRET_KEY not in everything and ECR_PASSWORD not in everything
    assert not_in_policy(api_calls) == []
