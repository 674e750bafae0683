"""`template`: the endpoint `up` would make, written as a CloudFormation template; no AWS call."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from deploy import alarms, image_scan, names
from deploy import template as cfn
from deploy.autoscaling import choose
from deploy.commands import options
from deploy.context import Context
from deploy.errors import EXIT_OK, UserError
from deploy.requests import Call
from deploy.spec import Spec

NAME = "template"
HELP = "write the endpoint (and autoscaling, alarms) as a CloudFormation template; no AWS call"
SUFFIXES = {".json": False, ".yaml": True, ".yml": True}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # --out, as `capture --out`: --output is the async endpoint's S3 folder, as in `up`.
    parser.add_argument(
        "--out", type=Path, metavar="FILE", help="FILE.json, .yaml or .yml (default: stdout, JSON)"
    )
    options.variant_options(parser, defaults=True)
    parser.add_argument("--endpoint-name", help="endpoint name (default PREFIX-TIMESTAMP)")
    parser.add_argument("--tag", action="append", metavar="KEY=VALUE", help="extra resource tags")
    options.network_options(parser)
    options.async_options(parser)
    group = parser.add_argument_group("autoscaling (as `autoscale` sets it up)")
    group.add_argument("--autoscale", action="store_true", help="add autoscaling")
    options.autoscaling_options(group)
    alarm = parser.add_argument_group("rollback alarms (as `update --rollback-alarms auto`)")
    alarm.add_argument(
        "--rollback-alarms",
        action="store_true",
        help="5xx and p99 latency alarms that roll the stack's endpoint updates back",
    )
    alarm.add_argument(
        "--latency-p99-ms", type=float, help="the p99 ModelLatency bound (default: benchmark)"
    )
    alarm.add_argument("--bake", type=int, default=300, help="seconds watched after a shift (300)")


def run(ctx: Context, args: argparse.Namespace) -> int:
    yaml_format = _format(args.out)
    spec = _pinned(ctx, options.spec_from_options(ctx, args, remote=False).check())
    prefix = names.check_prefix(ctx.name_prefix)
    endpoint = names.check_name(
        args.endpoint_name or names.deployment(prefix, names.stamp()).endpoint, "--endpoint-name"
    )
    tags = names.tags_for(prefix, names.parse_tags(args.tag))
    template = cfn.build(
        spec, endpoint, tags, _scaling(ctx, args, spec, endpoint, tags), _rollback(ctx, args, spec)
    )
    text = cfn.render(template, yaml_format)
    if args.out is None:
        sys.stdout.write(text)
        return EXIT_OK
    args.out.write_text(text)
    ctx.log(f"wrote {args.out}: {', '.join(template['Resources'])}")
    return EXIT_OK


def _pinned(ctx: Context, spec: Spec) -> Spec:
    """The image by the digest that `push` or `up` recorded for it: no AWS call here."""
    pinned = image_scan.recorded_pin(ctx.state, spec.image)
    if pinned is None:
        ctx.log(f"note: {spec.image} is named by tag: this state recorded no digest for it")
        return spec
    if pinned == spec.image:
        return spec
    ctx.log(f"template: {spec.image} pinned to {pinned.rpartition('@')[2]} (recorded in the state)")
    return replace(spec, pinned_image=pinned)


def _format(out: Path | None) -> bool:
    """True for YAML; the suffix decides, and an unknown one is refused before any work."""
    if out is None:
        return False
    suffix = out.suffix.lower()
    if suffix not in SUFFIXES:
        raise UserError(f"--out {out}: the suffix says neither JSON nor YAML", "use .json or .yaml")
    return SUFFIXES[suffix]


def _scaling(
    ctx: Context, args: argparse.Namespace, spec: Spec, endpoint: str, tags: dict[str, str]
) -> list[Call]:
    given = options.autoscaling_given(args)
    if not args.autoscale:
        if given:
            raise UserError(f"{given[0]} is for autoscaling", "add --autoscale")
        return []
    if spec.serverless:
        raise UserError(
            "a serverless endpoint scales by itself", "drop --autoscale, or use instances"
        )
    scaler = choose.for_endpoint(ctx, {"name": endpoint, "async_inference": spec.async_inference})
    settings = options.autoscaling_settings(args, scaler)
    scaler.check(endpoint, settings)
    return scaler.requests(endpoint, settings, tags)


def _rollback(ctx: Context, args: argparse.Namespace, spec: Spec) -> cfn.Rollback | None:
    if not args.rollback_alarms:
        if args.latency_p99_ms is not None:
            raise UserError("--latency-p99-ms is for --rollback-alarms", "add --rollback-alarms")
        return None
    if not 0 <= args.bake <= 3600:
        raise UserError("--bake must be between 0 and 3600 seconds")
    if args.latency_p99_ms is not None:
        if args.latency_p99_ms <= 0:
            raise UserError("--latency-p99-ms must be positive")
        bound = alarms.LatencyBound(args.latency_p99_ms, "--latency-p99-ms")
    else:
        # No AWS call: the model's size only when `package` recorded it for this model data.
        recorded = ctx.state.get("model_data") or {}
        size = recorded.get("onnx_bytes") if recorded.get("uri") == spec.model_data else None
        bound = alarms.p99_bound(None if spec.serverless else spec.instance_type, size)
    return cfn.Rollback(bound, args.bake)
