"""Asynchronous inference: `up --async` (the endpoint config) and `invoke --async` (S3 in, S3 out).

The request body goes to S3 (up to 1 GB) and the endpoint's container gets the same
POST /invocations as in real time, from a queue, with up to an hour per request; its answer is
written to the output folder (or the failure folder) and SNS can announce it. So the container
gets limits that fit photos (`ASYNC_ENVIRONMENT`: a 64 MiB body, the 50 MP pixel guard kept), and
`invoke --async` uploads, calls InvokeEndpointAsync and waits for whichever object appears first.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from botocore.exceptions import ClientError

from deploy import encryption, names, s3_layout, video
from deploy.aws import buckets
from deploy.aws.not_found import is_not_found
from deploy.aws.sagemaker import logs_hint
from deploy.aws.waiting import ProgressLine, elapsed
from deploy.context import Context
from deploy.environment import running as running_environment
from deploy.errors import AwsError, DeployError, UserError, one_line
from deploy.invoke import IMAGE_TYPES, custom_attributes
from deploy.schema import AsyncRecord

MIB = 1024 * 1024
# The server's body limit on an async endpoint. A 50 MP photo is 10-30 MB as JPEG; PNG can be
# more. The pixel guard (MAX_IMAGE_PIXELS, 3 bytes per pixel once decoded) stays at the default.
ASYNC_MAX_BODY_BYTES = 64 * MIB
MAX_INPUT_BYTES = 1024**3  # SageMaker's async payload limit
SERVER_DEFAULT_THREADS = 32  # serve/config.py's SERVE_THREADS default
SPARE_THREADS = (
    8  # beyond the invocations: the inference permits, and /ping's and refusals' threads
)
# How long SageMaker lets one request run (InvocationTimeoutSeconds: default 900, at most 3600).
DEFAULT_INVOCATION_TIMEOUT_S = 900
MAX_INVOCATION_TIMEOUT_S = 3600
# SageMaker's own queue holds an async endpoint's backlog and sends an instance at most
# MaxConcurrentInvocationsPerInstance requests at once: the server refuses none of those for
# waiting its turn (serve/admission.py), however long a request may run.
# A video clip (serve/video_invocations.py) may take SageMaker's whole 1 GB and hour: the
# container's clip limits are sized to them (deploy/video.py).
ASYNC_ENVIRONMENT = {
    "MAX_BODY_BYTES": str(ASYNC_MAX_BODY_BYTES),
    "MAX_IMAGE_PIXELS": "50000000",
    "SERVE_QUEUE_DEADLINE": str(MAX_INVOCATION_TIMEOUT_S),
    "MAX_VIDEO_BYTES": str(video.ASYNC_VIDEO_BYTES),
    "SERVE_VIDEO_SECONDS": str(video.ASYNC_VIDEO_SECONDS),
}
DEFAULT_WAIT_S = 1200.0  # scaling out of zero takes minutes before the first answer
DEFAULT_POLL_S = 5.0
TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]{1,256}$")


@dataclass
class AsyncOptions:
    output: str
    failure: str | None = None
    success_topic: str | None = None
    error_topic: str | None = None
    max_concurrent: int | None = None


def prepare(ctx: Context, options: AsyncOptions) -> AsyncRecord:
    """Check everything the endpoint config will name (URIs, buckets, topics) before anything is
    created; return what the state records as `endpoint.async_inference`."""
    record = build(options)
    s3 = ctx.aws.client("s3")
    account = ctx.aws.identity()["account"]
    for option, folder in (("--output", record["output"]), ("--failure", record["failure"])):
        s3_layout.check_bucket(s3, s3_layout.parse(folder, option), option, account)
    if options.success_topic or options.error_topic:
        sns = ctx.aws.client("sns")
        for option, topic in (
            ("--notify-success", options.success_topic),
            ("--notify-error", options.error_topic),
        ):
            if topic:
                _check_topic(sns, topic, option)
    return record


def build(options: AsyncOptions) -> AsyncRecord:
    """The AsyncInferenceConfig and its folders from the options alone, checked as far as that
    goes without AWS (`template` stops here; `prepare` reads the buckets and topics too)."""
    output = s3_layout.parse(options.output, "--output")
    failure = s3_layout.parse(options.failure, "--failure") if options.failure else None
    layout = s3_layout.Layout.around(output, failure).check()
    for option, topic in (
        ("--notify-success", options.success_topic),
        ("--notify-error", options.error_topic),
    ):
        if topic is not None and not TOPIC_ARN.match(topic):
            raise UserError(f"{option} {topic!r} is not an SNS topic ARN")
    if options.max_concurrent is not None and not 1 <= options.max_concurrent <= 1000:
        raise UserError("--max-concurrent-per-instance must be between 1 and 1000")
    output_config: dict = {
        "S3OutputPath": str(layout.output).rstrip("/"),
        "S3FailurePath": str(layout.failure).rstrip("/"),
    }
    notify = {}
    if options.success_topic:
        notify["SuccessTopic"] = options.success_topic
    if options.error_topic:
        notify["ErrorTopic"] = options.error_topic
    if notify:
        output_config["NotificationConfig"] = notify
    config: dict = {"OutputConfig": output_config}
    if options.max_concurrent is not None:
        config["ClientConfig"] = {"MaxConcurrentInvocationsPerInstance": options.max_concurrent}
    return {
        "config": config,
        "input": str(layout.input),
        "output": str(layout.output),
        "failure": str(layout.failure),
    }


def _check_topic(sns: Any, topic: str, option: str) -> None:
    try:
        sns.get_topic_attributes(TopicArn=topic)
    except ClientError as exc:
        if is_not_found(exc):
            raise UserError(f"{option}: the SNS topic {topic} does not exist") from exc
        raise


def environment(user: dict[str, str], max_concurrent: int | None = None) -> dict[str, str]:
    """The async limits, under whatever the user set with --env (theirs win). With more
    concurrent invocations per instance than the server's default threads can queue, threads
    for all of them (each waits its turn on one; serve/admission.py keeps a few spare)."""
    limits = dict(ASYNC_ENVIRONMENT)
    if max_concurrent is not None and max_concurrent + SPARE_THREADS > SERVER_DEFAULT_THREADS:
        limits["SERVE_THREADS"] = str(max_concurrent + SPARE_THREADS)
    return {**limits, **user}


def body_limit(environment: dict[str, str]) -> int:
    """The running container's body limit (its MAX_BODY_BYTES, else the real-time default)."""
    value = environment.get("MAX_BODY_BYTES")
    try:
        return min(MAX_INPUT_BYTES, int(value)) if value else 6 * MIB
    except ValueError:
        return ASYNC_MAX_BODY_BYTES


@dataclass
class Request:
    """One InvokeEndpointAsync call and where its answer will appear."""

    image: Path
    accept: str
    input: str
    output: str
    failure: str | None
    started: float
    body: bytes | None = None
    failed: bool = False
    seconds: float | None = None


def video_limit(environment: dict[str, str]) -> int:
    """The running container's body limit for a clip (MAX_VIDEO_BYTES, else its body limit)."""
    value = environment.get("MAX_VIDEO_BYTES")
    try:
        return min(MAX_INPUT_BYTES, int(value)) if value else body_limit(environment)
    except ValueError:
        return body_limit(environment)


def check_files(
    files: list[Path], limit: int, clip_limit: int | None = None
) -> list[tuple[Path, str]]:
    """Every file before anything is uploaded: exists, not empty, under the endpoint's limit
    (`clip_limit` for a video clip)."""
    checked, seen = [], set()
    for path in files:
        if not path.is_file():
            raise UserError(f"no image file at {path}")
        size = path.stat().st_size
        if size == 0:
            raise UserError(f"{path} is empty")
        clip = video.is_video(path)
        allowed, variable = (
            (clip_limit or limit, "MAX_VIDEO_BYTES") if clip else (limit, "MAX_BODY_BYTES")
        )
        if size > allowed:
            raise UserError(
                f"{path} is {size / MIB:.1f} MiB, over the endpoint's {allowed / MIB:.0f} MiB body "
                f"limit ({variable})",
                f"raise it with `update --env {variable}=...` (SageMaker allows 1 GB)",
            )
        if path.name in seen:
            raise UserError(f"two files are called {path.name}", "their S3 inputs would collide")
        seen.add(path.name)
        kind = (
            IMAGE_TYPES.get(path.suffix.lower())
            or video.content_type(path)
            or "application/octet-stream"
        )
        checked.append((path, kind))
    return checked


def send(
    ctx: Context,
    files: list[Path],
    endpoint: str | None = None,
    conf: float | None = None,
    iou: float | None = None,
    max_det: int | None = None,
    save: bool = False,
    invocation_timeout: int | None = None,
    save_answer: bool = True,
) -> list[Request]:
    """Upload each file under the input folder and queue it; JSON (and, with `save`, a picture,
    or for a clip the annotated mp4 unless `save_answer` is False: the JSON is what is saved).
    `invocation_timeout` None: 900 s for a photo, SageMaker's hour for a clip."""
    recorded = ctx.state.get("endpoint") or {}
    record = recorded.get("async_inference")
    name = endpoint or recorded.get("name")
    if not name:
        raise UserError("no endpoint to invoke", "run `up --async` first, or pass --endpoint")
    if not record or name != recorded.get("name"):
        raise UserError(
            f"endpoint {name} is not an asynchronous endpoint of this state",
            "deploy one with `up --async --output s3://...`, or drop --async",
        )
    if invocation_timeout is not None and not 1 <= invocation_timeout <= 3600:
        raise UserError("--invocation-timeout must be between 1 and 3600 seconds")
    attributes = custom_attributes(conf, iou, max_det)
    running = running_environment(ctx.aws.client("sagemaker"), recorded["model"])
    checked = check_files(files, body_limit(running), video_limit(running))
    stamp = names.stamp()  # one folder per call, the same under input/ and output/
    folder = s3_layout.parse(record["input"], "input folder").child(stamp)
    s3 = ctx.aws.client("s3")
    account = ctx.aws.identity()["account"]
    runtime = ctx.aws.client("sagemaker-runtime")
    requests = []
    for path, kind in checked:
        target = s3_layout.input_key(folder, path)
        # The endpoint's key, so inputs are encrypted as its outputs are (SSE-KMS)
        extra = {
            "ContentType": kind,
            **buckets.owner(account),
            **encryption.sse_kms(recorded.get("kms_key")),
        }
        with buckets.pinned(target.bucket, account):
            s3.upload_file(str(path), target.bucket, target.key, ExtraArgs=extra)
        clip = video.is_video(path)
        timeout = invocation_timeout or (
            video.VIDEO_INVOCATION_TIMEOUT_S if clip else DEFAULT_INVOCATION_TIMEOUT_S
        )
        picture = "video/mp4" if clip else "image/jpeg"
        accepts = ("application/json", picture) if save and save_answer else ("application/json",)
        for accept in accepts:
            kwargs = {
                "EndpointName": name,
                "InputLocation": str(target),
                "ContentType": kind,
                "Accept": accept,
                "InvocationTimeoutSeconds": timeout,
                "S3OutputPathExtension": stamp,
            }
            if attributes:
                kwargs["CustomAttributes"] = attributes
            answer = runtime.invoke_endpoint_async(**kwargs)
            requests.append(
                Request(
                    path,
                    accept,
                    str(target),
                    answer["OutputLocation"],
                    answer.get("FailureLocation"),
                    time.monotonic(),
                )
            )
        ctx.log(f"queued {path.name} as {target} ({path.stat().st_size / MIB:.1f} MiB)")
    return requests


def wait(
    ctx: Context,
    requests: list[Request],
    timeout: float | None = None,
    poll: float | None = None,
    stream: IO[str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Request]:
    """Poll each output and failure object (HEAD) until one appears, with one progress line;
    raise when `timeout` runs out. A failure object marks its request `failed` (see `failures`)."""
    budget = DEFAULT_WAIT_S if timeout is None else timeout
    delay = DEFAULT_POLL_S if poll is None else max(0.0, poll)
    s3 = ctx.aws.client("s3")
    account = ctx.aws.identity()["account"]
    progress = ProgressLine(stream)
    start = clock()
    pending = list(requests)
    try:
        while True:
            for request in list(pending):
                found = _first_existing(s3, request, account)
                if found is None:
                    continue
                request.failed = found == request.failure
                request.body = _read(s3, found, account)
                request.seconds = clock() - request.started
                pending.remove(request)
            spent = clock() - start
            done = len(requests) - len(pending)
            progress.show(
                f"async: {done}/{len(requests)} answers  [{elapsed(spent)}]", key=str(done)
            )
            if not pending:
                return requests
            if spent >= budget:
                waiting = ", ".join(r.output for r in pending)
                raise AwsError(
                    f"gave up waiting after {elapsed(spent)} for {len(pending)} answer(s): "
                    f"{waiting}",
                    "the requests stay queued; their answers will be written there (scaling out "
                    "of zero instances takes minutes: pass a longer --timeout)",
                )
            sleep(delay)
    finally:
        progress.close()


def _first_existing(s3: Any, request: Request, account: str) -> str | None:
    for location in (request.output, request.failure):
        if location and _exists(s3, location, account):
            return location
    return None


def _exists(s3: Any, location: str, account: str) -> bool:
    uri = s3_layout.parse(location, "output location")
    try:
        with buckets.pinned(uri.bucket, account):
            s3.head_object(Bucket=uri.bucket, Key=uri.key, **buckets.owner(account))
        return True
    except ClientError as exc:
        if is_not_found(exc):
            return False
        raise


def _read(s3: Any, location: str, account: str) -> bytes:
    uri = s3_layout.parse(location, "output location")
    with buckets.pinned(uri.bucket, account):
        answer = s3.get_object(Bucket=uri.bucket, Key=uri.key, **buckets.owner(account))
        body: bytes = answer["Body"].read()
    return body


def raise_failures(ctx: Context, requests: list[Request]) -> None:
    """One `error:` line for the requests that ended in a failure object (exit 1)."""
    failed = [r for r in requests if r.failed]
    if failed:
        error = _failure(ctx, failed[0])
        if len(failed) > 1:
            error.message += f"; {len(failed) - 1} more failed"
        raise error


def _failure(ctx: Context, request: Request) -> AwsError:
    detail = one_line((request.body or b"")[:500].decode("utf-8", "replace")) or "no detail"
    try:
        data = json.loads(request.body or b"")
        if isinstance(data, dict) and data.get("error"):
            detail = f"HTTP {data.get('status', '?')}: {one_line(data['error'])}"
    except ValueError:
        pass
    endpoint = (ctx.state.get("endpoint") or {}).get("name", "the endpoint")
    return AwsError(
        f"the endpoint failed on {request.image.name}: {detail} (failure object {request.failure})",
        logs_hint(endpoint, ctx.aws.region),
    )


def detections(request: Request) -> dict:
    try:
        data = json.loads(request.body or b"")
    except ValueError as exc:
        raise DeployError(f"the answer at {request.output} is not JSON") from exc
    if not isinstance(data, dict):
        raise DeployError(f"the answer at {request.output} is not a JSON object")
    return data
