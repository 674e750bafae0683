"""`up`: create model, endpoint config and endpoint from what `push` and `package` recorded."""

from __future__ import annotations

import argparse

from deploy import async_inference, capture, config, dry_run, launch, names, output
from deploy.commands import options
from deploy.context import Context
from deploy.errors import EXIT_OK, UserError
from deploy.schema import AsyncRecord
from deploy.spec import Spec

NAME = "up"
HELP = "create model, endpoint config and endpoint; wait for InService"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.variant_options(parser, defaults=True)
    parser.add_argument("--endpoint-name", help="endpoint name (default PREFIX-TIMESTAMP)")
    parser.add_argument("--tag", action="append", metavar="KEY=VALUE", help="extra resource tags")
    options.async_options(parser)
    options.wait_options(parser)
    options.dry_run_options(parser)


def run(ctx: Context, args: argparse.Namespace) -> int:
    dry = options.dry_run(args)
    spec = spec_from_options(ctx, args)
    if dry:
        calls = launch.plan(
            ctx, spec, endpoint_name=args.endpoint_name, user_tags=names.parse_tags(args.tag)
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
    )
    print(output.outcome(result, ctx.store.path, ctx.aws.region))
    return EXIT_OK


def spec_from_options(ctx: Context, args: argparse.Namespace, remote: bool = True) -> Spec:
    """The Spec that `up`'s options (and what `push` and `package` recorded) describe; `remote`
    False (`template`): without reading AWS (the async buckets and topics are not checked)."""
    image = args.image or (ctx.state.get("image") or {}).get("uri")
    model_data = None
    if not args.no_model_data:
        model_data = args.model_data or (ctx.state.get("model_data") or {}).get("uri")
    serverless = options.serverless(args, required_memory=True)
    environment = options.environment(args)
    async_record = _async_record(ctx, args, remote)
    if async_record:
        environment = async_inference.environment(environment)
    return Spec(
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
