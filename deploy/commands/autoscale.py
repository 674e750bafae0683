"""`autoscale`: the deployed variant's autoscaling, of the kind its endpoint needs."""

from __future__ import annotations

import argparse

from deploy import update_steps
from deploy.autoscaling import choose
from deploy.autoscaling.backlog import BacklogScaling
from deploy.autoscaling.invocations import (
    DEFAULT_UTILISATION,
    InvocationsScaling,
    target_from_throughput,
)
from deploy.context import Context
from deploy.errors import EXIT_OK, UserError

NAME = "autoscale"
HELP = "target tracking on invocations per instance (async: on the backlog, to 0)"
# The defaults --help states are the ones each kind applies.
REALTIME, BACKLOG = InvocationsScaling.DEFAULTS, BacklogScaling.DEFAULTS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min", type=int, default=1, help="fewest instances (1; 0 for async)")
    parser.add_argument("--max", type=int, default=4, help="most instances (4)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--target",
        type=float,
        help=f"invocations per instance per minute to hold ({REALTIME.target:g}); async: queued "
        f"requests per instance ({BACKLOG.target:g})",
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
        help=f"seconds ({REALTIME.scale_in_cooldown}; async {BACKLOG.scale_in_cooldown})",
    )
    parser.add_argument(
        "--scale-out-cooldown",
        type=int,
        help=f"seconds ({REALTIME.scale_out_cooldown}; async {BACKLOG.scale_out_cooldown})",
    )
    parser.add_argument("--off", action="store_true", help="remove autoscaling")


def run(ctx: Context, args: argparse.Namespace) -> int:
    if ctx.state.get("endpoint"):
        # Autoscaling paused by an interrupted `update` is put back (or the update settled) first.
        update_steps.reconcile(ctx, ctx.aws.client("sagemaker"))
    scaler = choose.for_endpoint(ctx)
    if args.off:
        print("autoscaling removed" if scaler.remove() else "autoscaling was off")
        return EXIT_OK
    backlog = isinstance(scaler, BacklogScaling)
    if backlog and args.throughput is not None:
        raise UserError(
            "an asynchronous endpoint scales on its queue, not on invocations",
            f"pass --target N (queued requests per instance, default {scaler.DEFAULTS.target:g})",
        )
    target = args.target
    if args.throughput is not None:
        target = target_from_throughput(args.throughput)
    settings = scaler.settings(
        args.min, args.max, target, args.scale_in_cooldown, args.scale_out_cooldown
    )
    record = scaler.apply(settings)
    print(
        f"autoscaling {record['resource_id']}: {record['min']}-{record['max']} instances, "
        f"target {record['target']:g} {scaler.UNIT} (policy {record['policy']})"
    )
    if record.get("alarm"):
        print(
            f"scale from zero: alarm {record['alarm']} on HasBacklogWithoutCapacity -> step "
            f"policy {record['step_policy']} (+1 instance)"
        )
    return EXIT_OK
