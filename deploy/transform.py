"""`transform`: a Batch Transform job over an S3 prefix of images, with progress.

Each image is one record (SplitType None, BatchStrategy SingleRecord): the container receives the
raw bytes on POST /invocations exactly as a real-time request, and SageMaker writes
`<image>.out` (the JSON answer) under the output prefix. Progress is outputs written / inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import IO, Any

from deploy import config, encryption, names, network, requests, s3_layout, video
from deploy.artifacts import parse_s3_uri
from deploy.aws import buckets, paging
from deploy.aws.waiting import ProgressLine, elapsed, wait_for
from deploy.context import Context
from deploy.environment import running as running_environment
from deploy.errors import AwsError, UserError
from deploy.schema import EndpointRecord
from deploy.spec import Spec
from deploy.state import State, now_iso, remember

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class TransformResult:
    name: str
    status: str
    input: str
    output: str
    inputs: int
    outputs: int
    seconds: float | None = None
    waited: bool = True


JSON = "application/json"


def count_objects(s3: Any, uri: str, account: str, suffixes: tuple[str, ...] | None = None) -> int:
    """The objects under `uri`, in a bucket that `account` owns (another's is refused)."""
    bucket, prefix = parse_s3_uri(uri)
    pin = buckets.owner(account)
    total = 0
    with buckets.pinned(bucket, account):
        for item in paging.items(
            s3, "list_objects_v2", "Contents", Bucket=bucket, Prefix=prefix, **pin
        ):
            key = item["Key"]
            if key.endswith("/"):
                continue
            if suffixes is None or key.lower().endswith(suffixes):
                total += 1
    return total


def default_folders(state: State, source: str | None, destination: str | None) -> tuple[str, str]:
    """The shared layout (deploy/s3_layout.py): without --input, the async endpoint's input
    folder; without --output, the `output/` folder next to the input."""
    if not source:
        source = ((state.get("endpoint") or {}).get("async_inference") or {}).get("input")
        if not source:
            raise UserError("--input is required", "pass --input s3://BUCKET/PATH/input/")
    if not destination:
        destination = str(s3_layout.parse(source, "--input").sibling(s3_layout.OUTPUT))
    return source, destination


def start(
    ctx: Context,
    source: str | None,
    destination: str | None,
    instance_type: str | None = None,
    instance_count: int = 1,
    concurrency: int = 1,
    content_type: str = "image/jpeg",
    environment: dict[str, str] | None = None,
    max_payload_mb: int = 6,
    secured: dict[str, Any] | None = None,
    wait: bool = True,
    poll: float | None = None,
    timeout: float | None = None,
    stream: IO[str] | None = None,
) -> TransformResult:
    endpoint = ctx.state.get("endpoint") or {}
    model = endpoint.get("model")
    if not model:
        raise UserError("no model in this state", "run `up` first (a transform job uses its model)")
    source, destination = default_folders(ctx.state, source, destination)
    for uri in (source, destination):
        parse_s3_uri(uri)
    if not source.endswith("/"):
        source += "/"
    if not destination.endswith("/"):
        destination += "/"
    if destination.startswith(source):
        raise UserError("--output must not lie inside --input", "the outputs would be re-read")
    if instance_count < 1 or concurrency < 1:
        raise UserError("--instance-count and --concurrency must be at least 1")
    if not 1 <= max_payload_mb <= 100:
        raise UserError("--max-payload must be between 1 and 100 MB")
    instance_type = instance_type or endpoint.get("instance_type") or config.DEFAULT_INSTANCE_TYPE
    env = dict(environment or {})
    if len(env) > 16:
        raise UserError("a transform job takes at most 16 environment variables")
    job_spec = _job_spec(endpoint, secured or {})
    if job_spec.kms_key and encryption.has_local_nvme(instance_type):
        raise UserError(
            f"{instance_type} keeps its storage on local NVMe: SageMaker takes no volume key there",
            "pass --instance-type without local storage (e.g. ml.c5.xlarge)",
        )
    aws = ctx.aws
    s3 = aws.client("s3")
    sm = aws.client("sagemaker")
    account = aws.identity()["account"]
    inputs = count_objects(s3, source, account)
    if inputs == 0:
        raise UserError(f"no objects under {source}", "upload the images first")
    network.check(aws.client("ec2"), job_spec.vpc_subnets, job_spec.security_groups)
    if job_spec.kms_key:
        job_spec = replace(
            job_spec, kms_key=encryption.resolve(aws.client("kms"), job_spec.kms_key, aws.region)
        )
    name = names.transform_job(ctx.name_prefix, names.stamp())
    tags = ctx.state.get("tags") or names.tags_for(ctx.name_prefix)
    model = _job_model(ctx, sm, endpoint, job_spec, name, tags) or model
    request: dict[str, Any] = {
        "TransformJobName": name,
        "ModelName": model,
        "MaxConcurrentTransforms": concurrency,
        "MaxPayloadInMB": max_payload_mb,
        "BatchStrategy": "SingleRecord",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": source}},
            "ContentType": content_type,
            "CompressionType": "None",
            "SplitType": "None",
        },
        "TransformOutput": {
            "S3OutputPath": destination,
            # A clip answers one JSON line per frame (serve/video_invocations.py).
            "Accept": video.TRANSFORM_ACCEPT if video.is_video_type(content_type) else JSON,
            "AssembleWith": "None",
        },
        "TransformResources": {"InstanceType": instance_type, "InstanceCount": instance_count},
        "Tags": names.as_aws(tags),
    }
    if env:
        request["Environment"] = env
    if job_spec.kms_key:
        request["TransformOutput"]["KmsKeyId"] = job_spec.kms_key
        request["TransformResources"]["VolumeKmsKeyId"] = job_spec.kms_key
    arn = sm.create_transform_job(**request)["TransformJobArn"]
    remember(ctx.state, "transform-job", name, arn)
    ctx.state["transform_jobs"] = [
        *ctx.state.get("transform_jobs", [])[-9:],
        {
            "name": name,
            "input": source,
            "output": destination,
            "status": "InProgress",
            "created_at": now_iso(),
        },
    ]
    ctx.save()
    ctx.log(f"started transform job {name}: {inputs} objects, {instance_count} x {instance_type}")
    if not wait:
        return TransformResult(name, "InProgress", source, destination, inputs, 0, waited=False)

    def progress(_response: dict) -> str:
        return f"{count_objects(s3, destination, account)}/{inputs} outputs"

    result = wait_for(
        sm,
        "transform_job_completed_or_stopped",
        {"TransformJobName": name},
        label=f"transform job {name}",
        status_of=lambda r: r.get("TransformJobStatus", "?"),
        detail=progress,
        poll=poll,
        timeout=timeout,
        progress=ProgressLine(stream),
    )
    status = result.response.get("TransformJobStatus", "?")
    for job in ctx.state["transform_jobs"]:
        if job["name"] == name:
            job["status"] = status
    ctx.save()
    outputs = count_objects(s3, destination, account)
    if result.state != "success":
        reason = result.response.get("FailureReason") or "no reason given"
        raise AwsError(
            f"transform job {name} is {status} after {elapsed(result.seconds)}: {reason}",
            f"the logs are in CloudWatch log group {config.TRANSFORM_LOG_GROUP}, streams {name}/*",
        )
    return TransformResult(name, status, source, destination, inputs, outputs, result.seconds)


def _job_spec(endpoint: EndpointRecord, secured: dict[str, Any]) -> Spec:
    """The endpoint's deployment as a job on instances, with the network and key options given
    (unset: as the endpoint runs). Instances can be isolated even if the endpoint is serverless."""
    running = Spec.from_recorded(endpoint, {})
    return replace(running, serverless_memory=None, serverless_concurrency=None, **secured)


def _job_model(
    ctx: Context,
    sm: Any,
    endpoint: EndpointRecord,
    job: Spec,
    name: str,
    tags: dict[str, str],
) -> str | None:
    """A model for this job when its network settings differ from the endpoint's model (a
    transform job takes VpcConfig and isolation from its model); None: the endpoint's model."""
    if job.model_settings() == Spec.from_recorded(endpoint, {}).model_settings():
        return None
    # The state holds the environment's names only: the job's model runs what the endpoint runs.
    job = replace(job, environment=running_environment(sm, endpoint["model"]))
    arn = sm.create_model(**requests.model_request(job, name, tags))["ModelArn"]
    remember(ctx.state, "model", name, arn)
    ctx.save()
    ctx.log(f"created model {name} for the job's network settings (`down` removes it)")
    return name
