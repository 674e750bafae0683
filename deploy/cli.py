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
    config,
    endpoints,
    images,
    invoke,
    names,
    output,
    pricing,
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
    _wait_options(p)

    p = command("update", "new model + config, update_endpoint without downtime, remove old")
    _variant_options(p, defaults=False)
    _wait_options(p)

    p = command("invoke", "send an image to the endpoint (or --url) and print detections")
    p.add_argument("image", type=Path, help="image file (JPEG/PNG), sent as raw bytes")
    p.add_argument("--url", help="post to this server instead, e.g. http://127.0.0.1:8080")
    p.add_argument("--endpoint", help="endpoint name (default: the state's)")
    _thresholds(p, threads=False)
    p.add_argument("--json", action="store_true", help="print the server's JSON")
    p.add_argument("--save", type=Path, metavar="OUT.jpg", help="also save the annotated image")

    p = command("autoscale", "target-tracking autoscaling on invocations per instance")
    p.add_argument("--min", type=int, default=1, help="fewest instances (1)")
    p.add_argument("--max", type=int, default=4, help="most instances (4)")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--target", type=float, help="invocations per instance per minute to hold")
    target.add_argument(
        "--throughput",
        type=float,
        metavar="IMG_PER_S",
        help="measured images/s of one instance: target = 60 x 0.7 x this",
    )
    p.add_argument("--scale-in-cooldown", type=int, default=300, help="seconds (300)")
    p.add_argument("--scale-out-cooldown", type=int, default=60, help="seconds (60)")
    p.add_argument("--off", action="store_true", help="remove autoscaling")

    p = command("transform", "Batch Transform over an S3 prefix of images")
    p.add_argument("--input", required=True, help="s3://bucket/prefix/ of images")
    p.add_argument("--output", required=True, help="s3://bucket/prefix/ for the JSON answers")
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

    p = command("status", "show the identity and what is deployed")
    p.add_argument("--json", action="store_true")

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
    spec = endpoints.Spec(
        image=image or "",
        role=args.role or config.role_from_env() or "",
        model_data=model_data,
        environment=_environment(args),
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        startup_timeout=args.startup_timeout,
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
    changes.update(_serverless(args, required_memory=False))
    if "serverless_concurrency" in changes and changes.get("serverless_memory") is None:
        if not current.get("serverless"):
            raise UserError("--serverless-concurrency needs --serverless-memory")
        changes["serverless_memory"] = current["serverless"]["memory_mb"]
    for key, value in changes.items():
        shown = value if key != "environment" else ",".join(f"{k}={v}" for k, v in value.items())
        ctx.log(f"update: {key} -> {shown}")
    if not changes:
        ctx.log("update: nothing changed; redeploying the same model on new instances")
    result = endpoints.update(ctx, changes, wait_poll=_poll(args), timeout=args.timeout)
    print(output.outcome(result, ctx.store.path, ctx.aws.region))
    return EXIT_OK


def cmd_invoke(ctx: Context, args) -> int:
    data, reply, picture = invoke.invoke(
        ctx,
        args.image,
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


def cmd_autoscale(ctx: Context, args) -> int:
    if args.off:
        removed = scaling.remove(ctx)
        print("autoscaling removed" if removed else "autoscaling was off")
        return EXIT_OK
    if args.throughput is not None:
        target = scaling.target_from_throughput(args.throughput)
    else:
        target = args.target if args.target is not None else 200.0
    record = scaling.apply(
        ctx, args.min, args.max, target, args.scale_in_cooldown, args.scale_out_cooldown
    )
    print(
        f"autoscaling {record['resource_id']}: {record['min']}-{record['max']} instances, "
        f"target {record['target']:g} invocations per instance per minute "
        f"(policy {record['policy']})"
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
    print(json.dumps(report, indent=2, default=str) if args.json else output.status(report))
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
    "down": cmd_down,
}


def main(argv: list[str] | None = None, aws=None) -> int:
    """Run one command; `aws` hands in a ready session (tests: Stubber-backed clients)."""
    args = build_parser().parse_args(argv)
    try:
        store = StateFile(args.state)
        ctx = Context(
            store=store,
            state=store.load(),
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
