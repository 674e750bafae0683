"""`autoscale`: the deployed variant's autoscaling, of the kind its endpoint needs."""

from __future__ import annotations

import argparse

from deploy import update_steps
from deploy.autoscaling import choose
from deploy.commands import options
from deploy.context import Context
from deploy.errors import EXIT_OK

NAME = "autoscale"
HELP = "target tracking on invocations per instance (async: on the backlog, to 0)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.autoscaling_options(parser)
    parser.add_argument("--off", action="store_true", help="remove autoscaling")


def run(ctx: Context, args: argparse.Namespace) -> int:
    if ctx.state.get("endpoint"):
        # Autoscaling paused by an interrupted `update` is put back (or the update settled) first.
        update_steps.reconcile(ctx, ctx.aws.client("sagemaker"))
    scaler = choose.for_endpoint(ctx)
    if args.off:
        print("autoscaling removed" if scaler.remove() else "autoscaling was off")
        return EXIT_OK
    settings = options.autoscaling_settings(args, scaler)
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
