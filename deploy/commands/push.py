"""`push`: build the image, create its ECR repository if missing, log in, push."""

from __future__ import annotations

import argparse
from pathlib import Path

from deploy import config, images
from deploy.context import Context
from deploy.errors import EXIT_OK

NAME = "push"
HELP = "build the image, create the ECR repository if missing, log in, push"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--context", type=Path, default=Path("."), help="build context (.)")
    parser.add_argument("--dockerfile", type=Path, help="Dockerfile (default CONTEXT/Dockerfile)")
    parser.add_argument("--repository", help="ECR repository (default PREFIX-serve)")
    parser.add_argument("--tag", help="image tag (default: UTC timestamp)")
    parser.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--platform",
        default=config.DEFAULT_PLATFORM,
        help="(linux/amd64); linux/arm64 for Graviton; both comma-separated: TAG-amd64, TAG-arm64",
    )
    parser.add_argument("--no-build", action="store_true", help="push an existing local REPO:TAG")
    parser.add_argument("--cli", choices=images.CLIS, help="container CLI (default: auto)")
    parser.add_argument(
        "--kms-key", metavar="ARN|alias/NAME", help="encrypt a new repository with this key"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the commands; create and run nothing"
    )


def run(ctx: Context, args: argparse.Namespace) -> int:
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
        kms_key=args.kms_key,
    )
    if result.dry_run:
        for command in result.plan.commands:
            print(command.shown())
    for uri in result.image_uris or [result.image_uri]:
        print(uri)
    return EXIT_OK
