"""`python -m deploy COMMAND`: parse arguments, call the module that does the work, print.

Results go to stdout (an image URI, a table, JSON); progress and errors go to stderr. Any
failure is one line `error: what happened. what to do.` and exit code 1 (AWS) or 2 (input).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

from deploy import (
    __version__,
    artifacts,
    async_inference,
    capture,
    config,
    endpoints,
    images,
    invoke,
    logs,
    metrics,
    names,
    output,
    pricing,
    rollout,
    scaling,
    teardown,
    transform,
)
from deploy import status as status_module
from deploy.context import Context
from deploy.errors import EXIT_AWS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USER, UserError, explain
from deploy.state import StateFile

DESCRIPTION = """\
A YOLOv7 detector on Amazon SageMaker, from image to endpoint and back to nothing:
  push -> package -> up -> invoke / autoscale / transform / cost / status -> update -> down
Every resource is named PREFIX-...-TIMESTAMP, tagged managed-by=yolov7-sagemaker-deploy and
recorded in the state file, so later commands need no names.
Exit codes: 0 ok, 1 AWS failure, 2 bad input, 130 interrupted.
"""


def _common(parser: argparse.ArgumentParser, top: bool) -> None:
    """Options accepted before or after the command (`--region X up` or `up --region X`)."""
    default = None if top else argparse.SUPPRESS
    group = parser.add_argument_group("AWS and state")
    group.add_argument("--region", default=default, help="AWS region (else profile/env)")
    group.add_argument("--profile", default=default, help="profile from ~/.aws/config")
    group.add_argument(
        "--assume-role", metavar="ARN", default=default, help="assume this IAM role first"
    )
    group.add_argument("--external-id", default=default, help="ExternalId for --assume-role")
    group.add_argument(
        "--state",
        type=Path,
        default=config.DEFAULT_STATE if top else argparse.SUPPRESS,
        help=f"state file (default {config.DEFAULT_STATE})",
    )
    group.add_argument(
        "--prefix",
        default=default,
        help=f"name prefix for new resources (default: the state's, else {config.DEFAULT_PREFIX})",
    )
    group.add_argument(
        "--debug",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="show tracebacks",
    )


def _wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-wait", action="store_true", help="return once the call is made")
    parser.add_argument(
        "--poll", type=float, default=None, help="seconds between status checks (default 15)"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="give up after this many seconds"
    )


def _thresholds(parser: argparse.ArgumentParser, threads: bool) -> None:
    parser.add_argument("--conf", type=float, help="confidence threshold (0-1)")
    parser.add_argument("--iou", type=float, help="NMS IoU threshold (0-1)")
    parser.add_argument("--max-det", type=int, help="most detections per image")
    if threads:
        parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads")
        parser.add_argument(
            "--env", action="append", metavar="KEY=VALUE", help="extra container environment"
        )


def _variant_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    parser.add_argument("--image", help="image URI (default: the one `push` recorded)")
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--model-data", help="s3://.../model.tar.gz (default: `package`'s)")
    data.add_argument(
        "--no-model-data", action="store_true", help="use the model baked into the image"
    )
    parser.add_argument("--role", help=f"SageMaker execution role ARN (else ${config.ENV_ROLE})")
    parser.add_argument(
        "--instance-type",
        default=config.DEFAULT_INSTANCE_TYPE if defaults else None,
        help=f"instance type (default {config.DEFAULT_INSTANCE_TYPE})",
    )
    parser.add_argument(
        "--instance-count", type=int, default=1 if defaults else None, help="instances (1)"
    )
    parser.add_argument(
        "--serverless-memory", type=int, metavar="MB", help="serverless: 1024..6144 MB"
    )
    parser.add_argument(
        "--serverless-concurrency", type=int, metavar="N", help="serverless: 1..200 (default 5)"
    )
    parser.add_argument(
        "--startup-timeout",
        type=int,
        default=config.DEFAULT_STARTUP_TIMEOUT_S if defaults else None,
        help="seconds for the container to pass /ping (60..3600, default 600)",
    )
    _thresholds(parser, threads=True)
    parser.add_argument("--capture", metavar="S3_URI", help="data capture to s3://BUCKET/PREFIX")
    parser.add_argument(
        "--capture-percent", type=int, metavar="N", help="requests captured, 1-100 (20)"
    )


def _rollout_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("deployment guardrails (blue/green with auto-rollback)")
    how = group.add_mutually_exclusive_group()
    how.add_argument("--canary", type=int, metavar="PERCENT", help="shift PERCENT first (1-50)")
    how.add_argument("--linear", type=int, metavar="PERCENT", help="shift in steps (10-50)")
    how.add_argument(
        "--all-at-once",
        action="store_true",
        help="shift all at once (as without it), but bake and watch alarms",
    )
    group.add_argument(
        "--bake", type=int, metavar="SECONDS", help="watch after a shift (300; all-at-once 0)"
    )
    group.add_argument("--step-wait", type=int, metavar="SECONDS", help="--linear: per step (300)")
    group.add_argument(
        "--rollback-alarms",
        nargs="+",
        metavar="auto|none|NAME",
        help="alarms that roll back: auto (5xx, p99 latency; default with --canary/--linear)",
    )
    group.add_argument(
        "--latency-p99-ms", type=float, help="auto's p99 ModelLatency bound (default: benchmark)"
    )


def _async_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("asynchronous inference (S3 in, S3 out, scales to zero)")
    group.add_argument("--async", dest="use_async", action="store_true", help="async endpoint")
    group.add_argument("--output", help="s3://BUCKET/PATH/output for the answers")
    group.add_argument("--failure", help="s3://... for failures (default: beside --output)")
    group.add_argument("--notify-success", metavar="SNS_ARN", help="SNS topic for answers")
    group.add_argument("--notify-error", metavar="SNS_ARN", help="SNS topic for failures")
    group.add_argument(
        "--max-concurrent-per-instance", type=int, metavar="N", help="requests per instance"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deploy",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _common(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _common(sub, top=False)
        return sub

    p = command("push", "build the image, create the ECR repository if missing, log in, push")
    p.add_argument("--context", type=Path, default=Path("."), help="build context (.)")
    p.add_argument("--dockerfile", type=Path, help="Dockerfile (default CONTEXT/Dockerfile)")
    p.add_argument("--repository", help="ECR repository (default PREFIX-serve)")
    p.add_argument("--tag", help="image tag (default: UTC timestamp)")
    p.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--platform", default=config.DEFAULT_PLATFORM, help="(linux/amd64)")
    p.add_argument("--no-build", action="store_true", help="push an existing local REPO:TAG")
    p.add_argument("--cli", choices=images.CLIS, help="container CLI (default: auto)")
    p.add_argument(
        "--dry-run", action="store_true", help="print the commands; create and run nothing"
    )

    p = command("package", "pack an .onnx as model.tar.gz and upload it to S3")
    p.add_argument("model", type=Path, help="the .onnx written by `python -m export`")
    p.add_argument("--bucket", help="S3 bucket (default PREFIX-sagemaker-ACCOUNT-REGION)")
    p.add_argument("--key", help="object key (default PREFIX/models/NAME-TIMESTAMP/...)")

    p = command("up", "create model, endpoint config and endpoint; wait for InService")
    _variant_options(p, defaults=True)
    p.add_argument("--endpoint-name", help="endpoint name (default PREFIX-TIMESTAMP)")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE", help="extra resource tags")
    _async_options(p)
    _wait_options(p)

    p = command("update", "new model + config, update_endpoint without downtime, remove old")
    _variant_options(p, defaults=False)
    p.add_argument("--no-capture", action="store_true", help="stop data capture")
    _rollout_options(p)
    _wait_options(p)

    p = command("invoke", "send an image to the endpoint (or --url) and print detections")
    p.add_argument("image", type=Path, nargs="+", help="image file (JPEG/PNG), sent as raw bytes")
    p.add_argument("--url", help="post to this server instead, e.g. http://127.0.0.1:8080")
    p.add_argument("--endpoint", help="endpoint name (default: the state's)")
    _thresholds(p, threads=False)
    p.add_argument("--json", action="store_true", help="print the server's JSON")
    p.add_argument("--save", type=Path, metavar="OUT.jpg", help="also save the annotated image")
    p.add_argument("--async", dest="use_async", action="store_true", help="through S3 (up --async)")
    p.add_argument("--no-wait", action="store_true", help="--async: print where answers will be")
    p.add_argument("--timeout", type=float, help="--async: seconds to wait (default 1200)")
    p.add_argument("--poll", type=float, help="--async: seconds between checks (default 5)")
    p.add_argument(
        "--invocation-timeout",
        type=int,
        default=async_inference.DEFAULT_INVOCATION_TIMEOUT_S,
        help="--async: seconds SageMaker lets one request run (900, at most 3600)",
    )

    p = command(
        "autoscale", "target tracking on invocations per instance (async: on the backlog, to 0)"
    )
    p.add_argument("--min", type=int, default=1, help="fewest instances (1; 0 for async)")
    p.add_argument("--max", type=int, default=4, help="most instances (4)")
    target = p.add_mutually_exclusive_group()
    target.add_argument(
        "--target",
        type=float,
        help="invocations per instance per minute to hold (200); async: queued requests per "
        "instance (5)",
    )
    target.add_argument(
        "--throughput",
        type=float,
        metavar="IMG_PER_S",
        help="measured images/s of one instance: target = 60 x 0.7 x this",
    )
    p.add_argument("--scale-in-cooldown", type=int, help="seconds (300; async 600)")
    p.add_argument("--scale-out-cooldown", type=int, help="seconds (60; async 300)")
    p.add_argument("--off", action="store_true", help="remove autoscaling")

    p = command("transform", "Batch Transform over an S3 prefix of images")
    p.add_argument("--input", help="s3://bucket/prefix/ of images (default: the async input/)")
    p.add_argument("--output", help="s3://bucket/prefix/ for the answers (default: output/ beside)")
    p.add_argument("--instance-type", help="default: the endpoint's")
    p.add_argument("--instance-count", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=1, help="requests per instance at once")
    p.add_argument("--content-type", default="image/jpeg")
    p.add_argument("--max-payload", type=int, default=6, help="MB per image (6)")
    _thresholds(p, threads=False)
    _wait_options(p)

    p = command("cost", "on-demand price from the Pricing API, and per million images")
    p.add_argument("--instance-type", help="default: the endpoint's, else the default type")
    p.add_argument("--instance-count", type=int, help="default: the endpoint's, else 1")
    p.add_argument("--throughput", type=float, metavar="IMG_PER_S", help="images/s/instance")
    p.add_argument("--usage", choices=sorted(pricing.USAGE), default="hosting")
    p.add_argument("--json", action="store_true")

    p = command("status", "show the identity, what is deployed, and its last hour")
    p.add_argument("--json", action="store_true")

    p = command("logs", "the endpoint's CloudWatch Logs, JSON lines made readable")
    p.add_argument("--since", default="10m", help="how far back: 30s, 10m, 2h, 1d (10m)")
    p.add_argument("--follow", action="store_true", help="keep printing new lines (Ctrl-C ends)")

    p = command("capture", "the newest data-capture records: images saved, detections printed")
    p.add_argument("--last", type=int, default=5, metavar="N", help="records (5)")
    p.add_argument("--out", type=Path, default=Path("capture"), help="folder for the images")
    p.add_argument("--json", action="store_true", help="records as JSON (images still saved)")

    p = command("down", "delete what this tool created (tag-checked, idempotent)")
    p.add_argument("--endpoint", help="tear down this endpoint (tagged by us) without state")
    p.add_argument("--delete-model-data", action="store_true", help="also the S3 model.tar.gz")
    p.add_argument("--delete-repository", action="store_true", help="also the ECR repository")
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    _wait_options(p)
    return parser


# --- commands ---------------------------------------------------------------------------------


def _environment(args, base: dict | None = None) -> dict[str, str]:
    env = dict(base or {})
    for pair in getattr(args, "env", None) or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--env {pair!r} is not KEY=VALUE")
        env[key] = value
    for option, variable in config.SERVE_ENV.items():
        value = getattr(args, option, None)
        if value is not None:
            env[variable] = str(value)
    return env


def _serverless(args, required_memory: bool) -> dict:
    memory, concurrency = args.serverless_memory, args.serverless_concurrency
    if memory is None and concurrency is not None and required_memory:
        raise UserError("--serverless-concurrency needs --serverless-memory")
    if memory is None and concurrency is None:
        return {}
    return {"serverless_memory": memory, "serverless_concurrency": concurrency or 5}


def cmd_push(ctx: Context, args) -> int:
    result = images.push(
        ctx,
        repository=args.repository,
        tag=args.tag,
        context=args.context,
        dockerfile=args.dockerfile,
        build_args=args.build_arg,
        platform=args.platform or None,
        build=not args.no_build,
        cli=args.cli,
        dry_run=args.dry_run,
    )
    if result.dry_run:
        for command in result.plan.commands:
            print(command.shown())
    print(result.image_uri)
    return EXIT_OK


def cmd_package(ctx: Context, args) -> int:
    result = artifacts.package(ctx, args.model, bucket=args.bucket, key=args.key)
    print(result.uri)
    return EXIT_OK


def cmd_up(ctx: Context, args) -> int:
    image = args.image or (ctx.state.get("image") or {}).get("uri")
    model_data = None
    if not args.no_model_data:
        model_data = args.model_data or (ctx.state.get("model_data") or {}).get("uri")
    serverless = _serverless(args, required_memory=True)
    environment = _environment(args)
    async_record = _async_record(ctx, args)
    if async_record:
        environment = async_inference.environment(environment)
    spec = endpoints.Spec(
        image=image or "",
        role=args.role or config.role_from_env() or "",
        model_data=model_data,
        environment=environment,
        async_inference=async_record,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        startup_timeout=args.startup_timeout,
        data_capture=capture.from_options(args.capture, args.capture_percent),
        **serverless,
    )
    result = endpoints.up(
        ctx,
        spec,
        endpoint_name=args.endpoint_name,
        user_tags=names.parse_tags(args.tag),
        wait=not args.no_wait,
        poll=_poll(args),
        timeout=args.timeout,
    )
    print(output.outcome(result, ctx.store.path, ctx.aws.region))
    return EXIT_OK


def _async_record(ctx: Context, args) -> dict | None:
    """`up --async`: the checked AsyncInferenceConfig (None for a real-time endpoint)."""
    given = [
        f"--{name.replace('_', '-')}"
        for name in ("output", "failure", "notify_success", "notify_error")
        if getattr(args, name)
    ] + (["--max-concurrent-per-instance"] if args.max_concurrent_per_instance is not None else [])
    if not args.use_async:
        if given:
            raise UserError(f"{given[0]} is for asynchronous endpoints", "add --async")
        return None
    if not args.output:
        raise UserError("--async needs --output s3://BUCKET/PATH/output", "where answers go")
    if args.serverless_memory is not None:
        raise UserError("an asynchronous endpoint runs on instances, not serverless")
    if ctx.state.get("endpoint"):
        return None  # endpoints.up refuses a second endpoint before anything is checked
    return async_inference.prepare(
        ctx,
        async_inference.AsyncOptions(
            output=args.output,
            failure=args.failure,
            success_topic=args.notify_success,
            error_topic=args.notify_error,
            max_concurrent=args.max_concurrent_per_instance,
        ),
    )


def _poll(args) -> float:
    return 15.0 if args.poll is None else args.poll


def cmd_update(ctx: Context, args) -> int:
    current = ctx.state.get("endpoint")
    if not current:
        raise UserError("nothing is deployed in this state", "run `up` first")
    changes: dict = {}
    recorded_image = (ctx.state.get("image") or {}).get("uri")
    if args.image:
        changes["image"] = args.image
    elif recorded_image and recorded_image != current.get("image"):
        changes["image"] = recorded_image  # `push` ran since: deploy what it pushed
    recorded_data = (ctx.state.get("model_data") or {}).get("uri")
    if args.no_model_data:
        changes["model_data"] = None
    elif args.model_data:
        changes["model_data"] = args.model_data
    elif recorded_data and recorded_data != current.get("model_data"):
        changes["model_data"] = recorded_data
    if args.role or (config.role_from_env() and config.role_from_env() != current.get("role")):
        changes["role"] = args.role or config.role_from_env()
    environment = _environment(args, current.get("environment"))
    if environment != (current.get("environment") or {}):
        changes["environment"] = environment
    for option in ("instance_type", "instance_count", "startup_timeout"):
        if getattr(args, option) is not None:
            changes[option] = getattr(args, option)
    if args.no_capture and (args.capture or args.capture_percent is not None):
        raise UserError("--no-capture and --capture contradict each other")
    wanted_capture = capture.from_options(
        args.capture, args.capture_percent, current.get("data_capture")
    )
    if args.no_capture:
        wanted_capture = None
    if wanted_capture != current.get("data_capture"):
        changes["data_capture"] = wanted_capture
    plan = rollout.plan_from_options(
        args.canary,
        args.linear,
        args.all_at_once,
        args.bake,
        args.step_wait,
        args.rollback_alarms,
        args.latency_p99_ms,
    )
    changes.update(_serverless(args, required_memory=False))
    if "serverless_concurrency" in changes and changes.get("serverless_memory") is None:
        if not current.get("serverless"):
            raise UserError("--serverless-concurrency needs --serverless-memory")
        changes["serverless_memory"] = current["serverless"]["memory_mb"]
    for key, value in changes.items():
        shown = value if key != "environment" else ",".join(f"{k}={v}" for k, v in value.items())
        if key == "data_capture":
            shown = value["DestinationS3Uri"] if value else "off"
        ctx.log(f"update: {key} -> {shown}")
    if not changes:
        ctx.log("update: nothing changed; redeploying the same model on new instances")
    result = endpoints.update(
        ctx, changes, wait_poll=_poll(args), timeout=args.timeout, rollout_plan=plan
    )
    print(output.outcome(result, ctx.store.path, ctx.aws.region))
    return EXIT_OK


def cmd_invoke(ctx: Context, args) -> int:
    if args.use_async:
        return _invoke_async(ctx, args)
    if len(args.image) > 1:
        raise UserError("real-time invoke takes one image", "pass several with --async")
    if args.no_wait or args.timeout is not None or args.poll is not None:
        raise UserError("--no-wait, --timeout and --poll are for --async")
    data, reply, picture = invoke.invoke(
        ctx,
        args.image[0],
        url=args.url,
        endpoint=args.endpoint,
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
        save=args.save,
    )
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(output.detections(data, reply.seconds, reply.target))
    if picture is not None:
        print(f"saved {args.save} ({len(picture.body)} bytes)", file=sys.stderr)
    return EXIT_OK


def _invoke_async(ctx: Context, args) -> int:
    if args.url:
        raise UserError("--url posts directly: drop --async (or --url)")
    if args.save and len(args.image) > 1:
        raise UserError("--save takes one image", "invoke the others without --save")
    requests = async_inference.send(
        ctx,
        args.image,
        endpoint=args.endpoint,
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
        save=args.save is not None,
        invocation_timeout=args.invocation_timeout,
    )
    if args.no_wait:
        for request in requests:
            print(f"{request.image}  {request.accept}  {request.output}  {request.failure or ''}")
        return EXIT_OK
    async_inference.wait(ctx, requests, timeout=args.timeout, poll=args.poll)
    name = (ctx.state.get("endpoint") or {}).get("name")
    for request in requests:
        if request.failed:
            continue
        if request.accept != "application/json":
            args.save.parent.mkdir(parents=True, exist_ok=True)
            args.save.write_bytes(request.body or b"")
            print(f"saved {args.save} ({len(request.body or b'')} bytes)", file=sys.stderr)
            continue
        data = async_inference.detections(request)
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            target = f"endpoint {name} (async, {request.output})"
            print(output.detections(data, request.seconds or 0.0, target))
    async_inference.raise_failures(ctx, requests)
    return EXIT_OK


def cmd_autoscale(ctx: Context, args) -> int:
    if args.off:
        removed = scaling.remove(ctx)
        print("autoscaling removed" if removed else "autoscaling was off")
        return EXIT_OK
    backlog = bool((ctx.state.get("endpoint") or {}).get("async_inference"))
    if backlog and args.throughput is not None:
        raise UserError(
            "an asynchronous endpoint scales on its queue, not on invocations",
            "pass --target N (queued requests per instance, default 5)",
        )
    if args.throughput is not None:
        target = scaling.target_from_throughput(args.throughput)
    else:
        target = args.target if args.target is not None else (5.0 if backlog else 200.0)
    scale_in = args.scale_in_cooldown
    scale_out = args.scale_out_cooldown
    record = scaling.apply(
        ctx,
        args.min,
        args.max,
        target,
        (600 if backlog else 300) if scale_in is None else scale_in,
        (300 if backlog else 60) if scale_out is None else scale_out,
    )
    unit = "queued requests per instance" if backlog else "invocations per instance per minute"
    print(
        f"autoscaling {record['resource_id']}: {record['min']}-{record['max']} instances, "
        f"target {record['target']:g} {unit} (policy {record['policy']})"
    )
    if record.get("alarm"):
        print(
            f"scale from zero: alarm {record['alarm']} on HasBacklogWithoutCapacity -> step "
            f"policy {record['step_policy']} (+1 instance)"
        )
    return EXIT_OK


def cmd_transform(ctx: Context, args) -> int:
    environment = _environment(args)
    result = transform.start(
        ctx,
        args.input,
        args.output,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        concurrency=args.concurrency,
        content_type=args.content_type,
        environment=environment,
        max_payload_mb=args.max_payload,
        wait=not args.no_wait,
        poll=_poll(args),
        timeout=args.timeout,
    )
    print(f"transform job {result.name}: {result.status}")
    print(f"input   {result.input} ({result.inputs} objects)")
    print(f"output  {result.output} ({result.outputs} objects)")
    return EXIT_OK


def cmd_cost(ctx: Context, args) -> int:
    endpoint = ctx.state.get("endpoint") or {}
    instance_type = args.instance_type or endpoint.get("instance_type")
    if not instance_type and endpoint.get("serverless"):
        raise UserError(
            "the deployed endpoint is serverless: billed per GB-second of compute",
            "pass --instance-type to price an instance instead",
        )
    instance_type = instance_type or config.DEFAULT_INSTANCE_TYPE
    count = args.instance_count or endpoint.get("instance_count") or 1
    client = ctx.aws.client("pricing", region=config.PRICING_REGION)
    result = pricing.cost(client, ctx.aws.region, instance_type, count, args.throughput, args.usage)
    if args.json:
        price = result.price
        print(
            json.dumps(
                {
                    "instance_type": price.instance_type,
                    "region": price.region,
                    "usage": price.usage,
                    "usd_per_hour": price.usd_per_hour,
                    "usagetype": price.usagetype,
                    "sku": price.sku,
                    "instance_count": result.instance_count,
                    "usd_per_month": round(result.usd_per_month, 2),
                    "throughput": result.throughput,
                    "usd_per_million_images": (
                        round(result.usd_per_million, 4)
                        if result.usd_per_million is not None
                        else None
                    ),
                },
                indent=2,
            )
        )
    else:
        print(output.cost(result))
    return EXIT_OK


def cmd_status(ctx: Context, args) -> int:
    report = status_module.status(ctx)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return EXIT_OK
    lines = [output.status(report)]
    if (report.get("endpoint") or {}).get("data_capture"):
        lines.append(f"capture    {report['endpoint']['data_capture']}")
    if report.get("last_hour"):
        shown = (report.get("endpoint") or {}).get("instances", "")
        lines += metrics.render(report["last_hour"], report.get("alarms") or [], shown)
    print("\n".join(lines))
    return EXIT_OK


def cmd_logs(ctx: Context, args) -> int:
    logs.show(ctx, logs.parse_since(args.since), follow=args.follow)
    return EXIT_OK


def cmd_capture(ctx: Context, args) -> int:
    records = capture.last(ctx, args.last)
    if not records:
        print("no captured records yet", file=sys.stderr)
    for record in records:
        saved = capture.save(record, args.out) if record.input_bytes else None
        if args.json:
            print(json.dumps(capture.as_json(record, saved)))
        else:
            print(capture.render(record, saved))
    return EXIT_OK


def cmd_down(ctx: Context, args) -> int:
    if args.endpoint:
        names.check_name(args.endpoint, "--endpoint")
    report = teardown.down(
        ctx,
        endpoint_name=args.endpoint,
        delete_model_data=args.delete_model_data,
        delete_repository=args.delete_repository,
        dry_run=args.dry_run,
        wait=not args.no_wait,
        poll=_poll(args),
        timeout=args.timeout,
    )
    print(output.down(report, args.dry_run))
    if report.refused:
        raise UserError(
            f"refused to delete {len(report.refused)} resource(s) that this tool did not create "
            f"(no tag {config.TAG_KEY}={config.TAG_VALUE})",
            "delete them yourself if they really are to go",
        )
    return EXIT_OK


COMMANDS = {
    "push": cmd_push,
    "package": cmd_package,
    "up": cmd_up,
    "update": cmd_update,
    "invoke": cmd_invoke,
    "autoscale": cmd_autoscale,
    "transform": cmd_transform,
    "cost": cmd_cost,
    "status": cmd_status,
    "logs": cmd_logs,
    "capture": cmd_capture,
    "down": cmd_down,
}


def main(argv: list[str] | None = None, aws=None) -> int:
    """Run one command; `aws` hands in a ready session (tests: Stubber-backed clients)."""
    args = build_parser().parse_args(argv)
    try:
        store = StateFile(args.state)
        ctx = Context(
            store=store,
            state=store.read(),
            region=args.region,
            profile=args.profile,
            assume_role=args.assume_role,
            external_id=args.external_id,
            prefix=args.prefix,
        )
        if args.prefix:
            names.check_prefix(args.prefix)
        if aws is not None:
            ctx.use_aws(aws)
        return COMMANDS[args.command](ctx, args)
    except BrokenPipeError:
        # `python -m deploy status --json | head`: the reader left; say nothing more.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_AWS
    except KeyboardInterrupt:
        print("\ninterrupted: run `python -m deploy status` to see what exists", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        error = explain(exc)
        if args.debug:
            traceback.print_exc()
        if error is None:
            print(
                f"error: unexpected {type(exc).__name__}: {exc}. Rerun with --debug for the "
                "traceback and report it.",
                file=sys.stderr,
            )
            return EXIT_AWS
        print(f"error: {error.line()}", file=sys.stderr)
        return error.exit_code if error.exit_code in (EXIT_AWS, EXIT_USER) else EXIT_AWS
