"""`logs`: the endpoint's CloudWatch Logs, our JSON lines made readable (deploy/logs)."""

from __future__ import annotations

import argparse

from deploy import logs
from deploy.context import Context
from deploy.errors import EXIT_OK

NAME = "logs"
HELP = "the endpoint's CloudWatch Logs, JSON lines made readable"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", default="10m", help="how far back: 30s, 10m, 2h, 1d (10m)")
    parser.add_argument(
        "--follow", action="store_true", help="keep printing new lines (Ctrl-C ends)"
    )


def run(ctx: Context, args: argparse.Namespace) -> int:
    logs.show(ctx, logs.parse_since(args.since), follow=args.follow)
    return EXIT_OK
