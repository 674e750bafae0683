"""Option groups that several commands share, and what their values become."""

from __future__ import annotations

import argparse
from typing import Any

from deploy import async_inference, capture, config, images, multi_models, network
from deploy.autoscaling.backlog import BacklogScaling
from deploy.autoscaling.invocations import (
    DEFAULT_UTILISATION,
    InvocationsScaling,
    target_from_throughput,
)
from deploy.autoscaling.variant import Settings, VariantScaling
from deploy.context import Context
from deploy.environment import check_pair
from deploy.errors import UserError
from deploy.schema import AsyncRecord
from deploy.spec import Spec

DEFAULT_POLL_S = 15.0


def wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-wait", action="store_true", help="return once the call is made")
    parser.add_argument(
        "--poll", type=float, default=None, help="seconds between status checks (default 15)"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="give up after this many seconds"
    )


def autoscaling_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`autoscale`'s settings (also `template --autoscale`'s); their defaults are each kind's."""
    realtime, backlog = InvocationsScaling.DEFAULTS, BacklogScaling.DEFAULTS
    parser.add_argument("--min", type=int, default=None, help="fewest instances (1; 0 for async)")
    parser.add_argument("--max", type=int, default=None, help="most instances (4)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--target",
        type=float,
        help=f"invocations per instance per minute to hold ({realtime.target:g}); async: queued "
        f"requests per instance ({backlog.target:g})",
    )
    target.add_argument(
        "--throughput",
        type=float,
        metavar="IMG_PER_S",
        help=f"measured images/s of one instance: target = 60 x {DEFAULT_UTILISATION:g} x this",
    )
    parser.add_argument(
        "--scale-in-cooldown",
        type=int,
        help=f"seconds ({realtime.scale_in_cooldown}; async {backlog.scale_in_cooldown})",
    )
    parser.add_argument(
        "--scale-out-cooldown",
        type=int,
        help=f"seconds ({realtime.scale_out_cooldown}; async {backlog.scale_out_cooldown})",
    )


AUTOSCALING = ("min", "max", "target", "throughput", "scale_in_cooldown", "scale_out_cooldown")


def autoscaling_given(args: argparse.Namespace) -> list[str]:
    """The autoscaling options given, as typed (`--min`, ...)."""
    return [
        f"--{name.replace('_', '-')}" for name in AUTOSCALING if getattr(args, name) is not None
    ]


def autoscaling_settings(args: argparse.Namespace, scaler: VariantScaling) -> Settings:
    """The settings the options ask of this kind of scaling (its defaults for the rest)."""
    if isinstance(scaler, BacklogScaling) and args.throughput is not None:
        raise UserError(
            "an asynchronous endpoint scales on its queue, not on invocations",
            f"pass --target N (queued requests per instance, default {scaler.DEFAULTS.target:g})",
        )
    target = args.target
    if args.throughput is not None:
        target = target_from_throughput(args.throughput)
    return scaler.settings(
        1 if args.min is None else args.min,
        4 if args.max is None else args.max,
        target,
        args.scale_in_cooldown,
        args.scale_out_cooldown,
    )


def scan_options(parser: argparse.ArgumentParser) -> None:
    """`up` / `update`: the ECR scan gate (deploy/image_scan.py)."""
    parser.add_argument(
        "--allow-vulnerabilities",
        action="store_true",
        help="deploy an image whose ECR scan found CRITICAL or HIGH vulnerabilities, or that has "
        "no readable scan (a warning says so)",
    )


def dry_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="run the checks (they only read), print the calls it would make, create nothing",
    )
    parser.add_argument("--json", action="store_true", help="with --dry-run: the calls in full")


def dry_run(args: argparse.Namespace) -> bool:
    if args.json and not args.dry_run:
        raise UserError("--json is for --dry-run", "add --dry-run, or drop --json")
    return bool(args.dry_run)


def thresholds(parser: argparse.ArgumentParser, threads: bool) -> None:
    parser.add_argument("--conf", type=float, help="confidence threshold (0-1)")
    parser.add_argument("--iou", type=float, help="NMS IoU threshold (0-1)")
    parser.add_argument("--max-det", type=int, help="most detections per image")
    if threads:
        parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads")
        parser.add_argument(
            "--env",
            action="append",
            metavar="KEY=VALUE",
            help="extra container environment (no secrets: names like *_TOKEN are refused)",
        )


def variant_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The variant's options; `defaults` False (update): unset means "keep what runs"."""
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
    thresholds(parser, threads=True)
    parser.add_argument("--capture", metavar="S3_URI", help="data capture to s3://BUCKET/PREFIX")
    parser.add_argument(
        "--capture-percent", type=int, metavar="N", help="requests captured, 1-100 (20)"
    )


def network_options(parser: argparse.ArgumentParser, update: bool = False) -> None:
    """VPC, network isolation and the KMS key (deploy/network.py, deploy/encryption.py);
    `update` (update, transform): unset means "as the endpoint runs"."""
    group = parser.add_argument_group("network and encryption")
    group.add_argument("--vpc-subnets", metavar="ID,ID", help="run in these subnets (one VPC)")
    group.add_argument("--security-groups", metavar="ID,ID", help="with these security groups")
    if update:
        group.add_argument("--no-vpc", action="store_true", help="leave the VPC")
    group.add_argument(
        "--network-isolation",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the container gets no network (default on; "
        + ("unset: as the endpoint)" if update else "serverless cannot)"),
    )
    group.add_argument(
        "--kms-key",
        metavar="ARN|alias/NAME",
        help="customer-managed key for the volume, capture, async output"
        + (" (unset: as the endpoint)" if update else ""),
    )


def network_fields(args: argparse.Namespace) -> dict[str, Any]:
    """Spec fields for the network and key options that were given (only those)."""
    fields: dict[str, Any] = {}
    subnets = network.parse_ids(args.vpc_subnets, "--vpc-subnets", network.SUBNET_PREFIX)
    groups = network.parse_ids(args.security_groups, "--security-groups", network.GROUP_PREFIX)
    if getattr(args, "no_vpc", False):
        if subnets or groups:
            raise UserError("--no-vpc contradicts --vpc-subnets/--security-groups")
        fields.update(vpc_subnets=[], security_groups=[])
    elif subnets or groups:
        network.check_shape(subnets, groups)
        fields.update(vpc_subnets=subnets, security_groups=groups)
    if args.network_isolation is not None:
        fields["network_isolation"] = args.network_isolation
    if args.kms_key is not None:
        fields["kms_key"] = args.kms_key
    return fields


def rollout_options(parser: argparse.ArgumentParser) -> None:
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


def async_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("asynchronous inference (S3 in, S3 out, scales to zero)")
    group.add_argument("--async", dest="use_async", action="store_true", help="async endpoint")
    group.add_argument("--output", help="s3://BUCKET/PATH/output for the answers")
    group.add_argument("--failure", help="s3://... for failures (default: beside --output)")
    group.add_argument("--notify-success", metavar="SNS_ARN", help="SNS topic for answers")
    group.add_argument("--notify-error", metavar="SNS_ARN", help="SNS topic for failures")
    group.add_argument(
        "--max-concurrent-per-instance", type=int, metavar="N", help="requests per instance"
    )


def environment(args: argparse.Namespace, base: dict[str, str] | None = None) -> dict[str, str]:
    """The container environment: `base`, then --env pairs, then the threshold options."""
    env = dict(base or {})
    for pair in getattr(args, "env", None) or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            # not echoed: what was typed may be a secret
            raise UserError("an --env value is not KEY=VALUE (it has no '=' or no name)")
        check_pair(key, value)
        env[key] = value
    for option, variable in config.SERVE_ENV.items():
        value = getattr(args, option, None)
        if value is not None:
            env[variable] = str(value)
    return env


def environment_asked(args: argparse.Namespace) -> bool:
    """Whether the options change the container environment at all."""
    options = ("env", *config.SERVE_ENV)
    return any(getattr(args, option, None) is not None for option in options)


def serverless(args: argparse.Namespace, required_memory: bool) -> dict[str, Any]:
    """Spec fields for --serverless-memory/--serverless-concurrency ({} when neither is given)."""
    memory, concurrency = args.serverless_memory, args.serverless_concurrency
    if memory is None and concurrency is not None and required_memory:
        raise UserError("--serverless-concurrency needs --serverless-memory")
    if memory is None and concurrency is None:
        return {}
    return {"serverless_memory": memory, "serverless_concurrency": concurrency or 5}


def poll(args: argparse.Namespace) -> float:
    return DEFAULT_POLL_S if args.poll is None else float(args.poll)


def spec_from_options(ctx: Context, args: argparse.Namespace, remote: bool = True) -> Spec:
    """The Spec that `up`'s options (and what `push` and `package` recorded) describe; `remote`
    False (`template`): without reading AWS (the async buckets and topics are not checked)."""
    # The image `push` recorded for this instance's architecture (Graviton: arm64).
    image = args.image or images.for_instance(ctx.state.get("image") or {}, args.instance_type)
    model_data = None
    multi_model = getattr(args, "multi_model", False)
    if multi_model:  # the S3 prefix of NAME.tar.gz (deploy/multi_models.py)
        model_data = _models_prefix(ctx, args, remote)
    elif getattr(args, "models", None):
        raise UserError("--models is the prefix of a multi-model endpoint", "add --multi-model")
    elif not args.no_model_data:
        model_data = args.model_data or (ctx.state.get("model_data") or {}).get("uri")
    serverless_fields = serverless(args, required_memory=True)
    secured = network_fields(args)
    if serverless_fields and ("vpc_subnets" in secured or args.network_isolation):
        raise UserError(
            "serverless endpoints support neither a VPC nor network isolation",
            "drop --vpc-subnets/--security-groups/--network-isolation, or use instances",
        )
    env = environment(args)
    async_record = _async_record(ctx, args, remote)
    if async_record:
        client = async_record["config"].get("ClientConfig", {})
        env = async_inference.environment(env, client.get("MaxConcurrentInvocationsPerInstance"))
    return Spec(
        image=image or "",
        role=args.role or config.role_from_env() or "",
        model_data=model_data,
        environment=env,
        async_inference=async_record,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        startup_timeout=args.startup_timeout,
        data_capture=capture.from_options(args.capture, args.capture_percent),
        multi_model=multi_model,
        **serverless_fields,
        **secured,
    )


def multi_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("multi-model endpoint (many models, one endpoint)")
    group.add_argument(
        "--multi-model",
        action="store_true",
        help="serve every NAME.tar.gz under --models, chosen per request (invoke --model NAME)",
    )
    group.add_argument(
        "--models",
        metavar="S3_PREFIX",
        help="s3://BUCKET/PREFIX/ of the models (default: `models add`'s, else "
        "PREFIX/multi-models/ in package's bucket)",
    )


def _models_prefix(ctx: Context, args: argparse.Namespace, remote: bool) -> str:
    if args.model_data or args.no_model_data:
        raise UserError(
            "a multi-model endpoint loads from a prefix, not --model-data/--no-model-data",
            "pass --models s3://BUCKET/PREFIX/",
        )
    if remote:
        return multi_models.prefix_for(ctx, args.models)
    return args.models or (ctx.state.get("models") or {}).get("uri") or ""


def _async_record(ctx: Context, args: argparse.Namespace, remote: bool) -> AsyncRecord | None:
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
    wanted = async_inference.AsyncOptions(
        output=args.output,
        failure=args.failure,
        success_topic=args.notify_success,
        error_topic=args.notify_error,
        max_concurrent=args.max_concurrent_per_instance,
    )
    if not remote:
        return async_inference.build(wanted)
    if ctx.state.get("endpoint"):
        return None  # launch.up refuses a second endpoint before anything is checked
    return async_inference.prepare(ctx, wanted)
