"""`up`: create model, endpoint config and endpoint from what `push` and `package` recorded."""

from __future__ import annotations

import argparse

from deploy import dry_run, launch, multi_models, names, output
from deploy.commands import options
from deploy.context import Context
from deploy.errors import EXIT_OK

NAME = "up"
HELP = "create model, endpoint config and endpoint; wait for InService"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.variant_options(parser, defaults=True)
    parser.add_argument("--endpoint-name", help="endpoint name (default PREFIX-TIMESTAMP)")
    parser.add_argument("--tag", action="append", metavar="KEY=VALUE", help="extra resource tags")
    options.network_options(parser)
    options.async_options(parser)
    options.multi_model_options(parser)
    options.scan_options(parser)
    options.wait_options(parser)
    options.dry_run_options(parser)


def run(ctx: Context, args: argparse.Namespace) -> int:
    dry = options.dry_run(args)
    spec = options.spec_from_options(ctx, args)
    if dry:
        calls = launch.plan(
            ctx,
            spec,
            endpoint_name=args.endpoint_name,
            user_tags=names.parse_tags(args.tag),
            allow_vulnerabilities=args.allow_vulnerabilities,
        )
        print(dry_run.render(calls, args.json))
        return EXIT_OK
    result = launch.up(
        ctx,
        spec,
        endpoint_name=args.endpoint_name,
        user_tags=names.parse_tags(args.tag),
        wait=not args.no_wait,
        poll=options.poll(args),
        timeout=args.timeout,
        allow_vulnerabilities=args.allow_vulnerabilities,
    )
    if spec.multi_model and spec.model_data:
        multi_models.record_prefix(ctx, spec.model_data)
    print(output.outcome(result, ctx.store.path, ctx.aws.region))
    return EXIT_OK
