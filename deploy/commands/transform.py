"""`transform`: a Batch Transform job over an S3 prefix of images (deploy/transform)."""

from __future__ import annotations

import argparse

from deploy import transform
from deploy.commands import options
from deploy.context import Context
from deploy.errors import EXIT_OK

NAME = "transform"
HELP = "Batch Transform over an S3 prefix of images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", help="s3://bucket/prefix/ of images (default: the async input/)")
    parser.add_argument(
        "--output", help="s3://bucket/prefix/ for the answers (default: output/ beside)"
    )
    parser.add_argument("--instance-type", help="default: the endpoint's")
    parser.add_argument("--instance-count", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=1, help="requests per instance at once")
    parser.add_argument(
        "--content-type",
        default="image/jpeg",
        help="of every input (image/jpeg); a video type (video/mp4, ...) answers JSON Lines, "
        "one line per frame",
    )
    parser.add_argument("--max-payload", type=int, default=6, help="MB per image (6)")
    options.thresholds(parser, threads=False)
    options.network_options(parser, update=True)
    options.wait_options(parser)


def run(ctx: Context, args: argparse.Namespace) -> int:
    result = transform.start(
        ctx,
        args.input,
        args.output,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        concurrency=args.concurrency,
        content_type=args.content_type,
        environment=options.environment(args),
        max_payload_mb=args.max_payload,
        secured=options.network_fields(args),
        wait=not args.no_wait,
        poll=options.poll(args),
        timeout=args.timeout,
    )
    print(f"transform job {result.name}: {result.status}")
    print(f"input   {result.input} ({result.inputs} objects)")
    print(f"output  {result.output} ({result.outputs} objects)")
    return EXIT_OK
