"""`update`: what the user changed, as a change set, deployed without downtime (deploy/redeploy)."""

from __future__ import annotations

import argparse
from typing import Any

from deploy import capture, config, dry_run, environment, images, output, redeploy, rollout
from deploy.commands import options
from deploy.context import Context
from deploy.errors import EXIT_OK, UserError
from deploy.schema import EndpointRecord

NAME = "update"
HELP = "new model + config, update_endpoint without downtime, remove old"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.variant_options(parser, defaults=False)
    parser.add_argument("--no-capture", action="store_true", help="stop data capture")
    options.network_options(parser, update=True)
    options.rollout_options(parser)
    options.scan_options(parser)
    options.wait_options(parser)
    options.dry_run_options(parser)


def run(ctx: Context, args: argparse.Namespace) -> int:
    dry = options.dry_run(args)
    current = ctx.state.get("endpoint")
    if not current:
        raise UserError("nothing is deployed in this state", "run `up` first")
    changes = change_set(ctx, args, current)
    plan = rollout.plan_from_options(
        args.canary,
        args.linear,
        args.all_at_once,
        args.bake,
        args.step_wait,
        args.rollback_alarms,
        args.latency_p99_ms,
    )
    changes.update(_serverless(args, current))
    for key, value in changes.items():
        shown = value if key != "environment" else ", ".join(sorted(value))  # names, not values
        if key == "data_capture":
            shown = value["DestinationS3Uri"] if value else "off"
        if key in ("vpc_subnets", "security_groups"):
            shown = ",".join(value) or "none"
        ctx.log(f"update: {key} -> {shown}")
    if not changes:
        ctx.log("update: nothing changed; redeploying the same model on new instances")
    if dry:
        calls = redeploy.plan(
            ctx, changes, rollout_plan=plan, allow_vulnerabilities=args.allow_vulnerabilities
        )
        print(dry_run.render(calls, args.json))
        return EXIT_OK
    result = redeploy.update(
        ctx,
        changes,
        wait_poll=options.poll(args),
        timeout=args.timeout,
        rollout_plan=plan,
        allow_vulnerabilities=args.allow_vulnerabilities,
    )
    print(output.outcome(result, ctx.store.path, ctx.aws.region))
    return EXIT_OK


def change_set(ctx: Context, args: argparse.Namespace, current: EndpointRecord) -> dict[str, Any]:
    """Spec fields that differ from the running deployment: what was asked for, and what `push`
    or `package` recorded since (or the role from the environment) when nothing was asked."""
    changes: dict[str, Any] = {}
    instance_type = args.instance_type or current.get("instance_type")
    if current.get("serverless") and not args.instance_type:
        instance_type = None  # serverless runs on x86
    recorded_image = images.for_instance(ctx.state.get("image") or {}, instance_type)
    if args.image:
        changes["image"] = args.image
    elif recorded_image and recorded_image != current.get("image"):
        changes["image"] = recorded_image  # `push` ran since: deploy what it pushed
    elif recorded_image and _pushed_again(ctx, current):
        changes["image"] = recorded_image  # the same tag, another digest (a mutable repository)
    recorded_data = (ctx.state.get("model_data") or {}).get("uri")
    if args.no_model_data:
        changes["model_data"] = None
    elif args.model_data:
        changes["model_data"] = args.model_data
    elif current.get("multi_model"):
        pass  # it loads from the models' prefix (`models add`), not from `package`'s archive
    elif recorded_data and recorded_data != current.get("model_data"):
        changes["model_data"] = recorded_data
    if args.role or (config.role_from_env() and config.role_from_env() != current.get("role")):
        changes["role"] = args.role or config.role_from_env()
    if options.environment_asked(args):
        # the state records names only: the values to change are the running model's
        running = environment.running(ctx.aws.client("sagemaker"), current["model"])
        wanted = options.environment(args, running)
        if wanted != running:
            changes["environment"] = wanted
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
    recorded_network = {
        "vpc_subnets": current.get("vpc_subnets") or [],
        "security_groups": current.get("security_groups") or [],
        "network_isolation": current.get("network_isolation", True),
        "kms_key": current.get("kms_key"),
    }
    for key, value in options.network_fields(args).items():
        if value != recorded_network[key]:
            changes[key] = value
    return changes


def _pushed_again(ctx: Context, current: EndpointRecord) -> bool:
    """`push` recorded another digest for the tag the endpoint runs."""
    digest = (ctx.state.get("image") or {}).get("digest")
    running = current.get("pinned_image")
    return bool(digest and running and not running.endswith(f"@{digest}"))


def _serverless(args: argparse.Namespace, current: EndpointRecord) -> dict[str, Any]:
    """--serverless-concurrency alone keeps the running serverless memory."""
    changes = options.serverless(args, required_memory=False)
    if "serverless_concurrency" in changes and changes.get("serverless_memory") is None:
        running = current.get("serverless")
        if not running:
            raise UserError("--serverless-concurrency needs --serverless-memory")
        changes["serverless_memory"] = running["memory_mb"]
    return changes
