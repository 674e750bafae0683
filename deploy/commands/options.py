"""Option groups that several commands share, and what their values become."""

from __future__ import annotations

import argparse
from typing import Any

from deploy import config
from deploy.environment import check_pair
from deploy.errors import UserError

DEFAULT_POLL_S = 15.0


def wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-wait", action="store_true", help="return once the call is made")
    parser.add_argument(
        "--poll", type=float, default=None, help="seconds between status checks (default 15)"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="give up after this many seconds"
    )


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
